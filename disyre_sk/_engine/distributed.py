"""Data-parallel training under ``torchrun``: process group, ranks, seeds, collectives.

``torchrun --nproc-per-node N ...`` starts N copies of a program and tells each its
place through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). :func:`join_world` reads them, joins the process group
(gloo on a CPU, NCCL on CUDA), gives each process the device of its local rank and
returns a :class:`World`, through which training does everything that involves the
other processes. Outside ``torchrun`` it returns a single-process :class:`World` whose
every method is the identity, so a plain run is exactly what it was before.

What the processes share and what they do not:

* every rank holds the whole training set and draws its own patches, augmentation and
  corruptions from a generator seeded by :func:`rank_seed` (``random_state`` and rank);
* a step's ``batch_size`` is the *global* batch: each rank draws ``batch_size / N``
  patches, and ``DistributedDataParallel`` averages the gradients, so the same
  ``batch_size`` means the same optimisation problem whatever N is;
* the network starts identical on every rank (rank 0's weights are broadcast) and stays
  identical, since every rank applies the same averaged gradient;
* the losses recorded in ``history_`` are averaged over the ranks (the loss of the
  global batch);
* only rank 0 writes checkpoints, and it stores every rank's generator state, so a
  resumed run continues each rank's random stream exactly; all ranks read the checkpoint
  after a barrier (``checkpoint_dir`` must be on a filesystem every rank sees).
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import os
import warnings
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

_ENV_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_LAUNCH_HELP = (
    "Launch with torchrun (for example 'torchrun --nproc-per-node 4 -m disyre_sk.cli fit "
    "...'), which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, or unset "
    "them all for a single process."
)
# How long a collective may wait for the slowest rank before the run fails (instead of
# hanging); long enough for rank 0 to write a large checkpoint to a slow disk.
_TIMEOUT = datetime.timedelta(minutes=30)
_OWNED_GROUP = {"created": False}


def launch_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's variables; ``(0, 1, 0)`` without.

    Parameters
    ----------
    environ : mapping, optional
        The environment; ``os.environ`` by default.

    Returns
    -------
    rank, world_size, local_rank : int
        This process's place among the processes of the run.

    Raises
    ------
    ValueError
        If only some of ``RANK``/``WORLD_SIZE`` are set, or a value is not a valid
        integer (a rank outside ``[0, WORLD_SIZE)``, for instance).

    Examples
    --------
    >>> from disyre_sk._engine.distributed import launch_from_env
    >>> launch_from_env({})
    (0, 1, 0)
    >>> launch_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    (1, 2, 1)
    """
    env = os.environ if environ is None else environ
    present = [name for name in ("RANK", "WORLD_SIZE") if env.get(name, "") != ""]
    if not present:
        return 0, 1, 0
    if len(present) == 1:
        missing = ({"RANK", "WORLD_SIZE"} - set(present)).pop()
        raise ValueError(f"{present[0]} is set but {missing} is not. {_LAUNCH_HELP}")
    values = {}
    for name in _ENV_NAMES:
        raw = env.get(name, "")
        if raw == "" and name == "LOCAL_RANK" and values["WORLD_SIZE"] == 1:
            raw = "0"  # one process: its local rank can only be 0
        try:
            values[name] = int(raw)
        except ValueError:
            detail = "is not set" if raw == "" else f"is {raw!r}, not an integer"
            raise ValueError(f"{name} {detail}. {_LAUNCH_HELP}") from None
    rank, size, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ValueError(
            f"inconsistent launch variables RANK={rank}, WORLD_SIZE={size}, "
            f"LOCAL_RANK={local}: need WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE and "
            f"LOCAL_RANK >= 0. {_LAUNCH_HELP}"
        )
    return rank, size, local


def launch_rank() -> int:
    """This process's rank under torchrun (0 for a plain run): rank 0 alone writes files.

    Returns
    -------
    rank : int
        ``torch.distributed.get_rank()`` in an initialised process group, else ``RANK``.

    Examples
    --------
    >>> from disyre_sk._engine.distributed import launch_rank
    >>> launch_rank()  # a plain process
    0
    """
    if _group_ready():
        return torch.distributed.get_rank()
    return launch_from_env()[0]


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """Seed of one rank's training generator, derived from the run's seed and the rank.

    A single process keeps ``seed`` itself, so a plain run is unchanged. With several
    processes every rank gets its own stream (``numpy.random.SeedSequence`` with the rank
    as spawn key): distinct, well mixed and the same on every rerun.

    Parameters
    ----------
    seed : int
        The run's training seed (drawn from ``random_state``).
    rank, world_size : int
        The process's rank and the number of processes.

    Returns
    -------
    seed : int
        A non-negative seed for ``torch.Generator.manual_seed``.

    Examples
    --------
    >>> from disyre_sk._engine.distributed import rank_seed
    >>> rank_seed(42, 0, 1)
    42
    >>> rank_seed(42, 0, 2) != rank_seed(42, 1, 2)
    True
    """
    if world_size == 1:
        return int(seed)
    state = np.random.SeedSequence(int(seed), spawn_key=(int(rank),)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def _group_ready() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def _device_for(device: torch.device, local_rank: int) -> torch.device:
    """The device of a rank: the GPU of its local rank unless an index was given."""
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if count == 1:
        # One visible GPU per process (a scheduler that sets CUDA_VISIBLE_DEVICES per rank).
        return torch.device("cuda", 0)
    if local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but only {count} CUDA device(s) are visible: start at "
            f"most {count} processes per node (torchrun --nproc-per-node {count})."
        )
    return torch.device("cuda", local_rank)


def _shutdown_owned() -> None:
    if _OWNED_GROUP["created"] and _group_ready():
        torch.distributed.destroy_process_group()
    _OWNED_GROUP["created"] = False


def shutdown() -> None:
    """Leave the process group that :func:`join_world` created (no-op otherwise).

    A group created by the caller is left alone.

    Examples
    --------
    >>> from disyre_sk._engine.distributed import shutdown
    >>> shutdown()  # nothing to do in a plain process
    """
    _shutdown_owned()


def join_world(device: torch.device) -> World:
    """The processes of this run, joining torchrun's process group if needed.

    Outside torchrun (no ``RANK``/``WORLD_SIZE``, or ``WORLD_SIZE=1``) and without an
    initialised process group, a single-process :class:`World` on ``device``. Otherwise
    the group is joined (gloo for CPU training, NCCL for CUDA) unless the caller already
    did, and CUDA ranks take the GPU of their local rank (``cuda:LOCAL_RANK``, or
    ``cuda:0`` when each process sees one GPU). The group stays up for the rest of the
    program (``torch.distributed.get_rank()`` then works) and is left at exit.

    Parameters
    ----------
    device : torch.device
        The resolved ``device`` parameter (``cuda`` without index picks the local GPU).

    Returns
    -------
    world : World

    Examples
    --------
    >>> import torch
    >>> from disyre_sk._engine.distributed import join_world
    >>> join_world(torch.device("cpu")).size  # a plain process
    1
    """
    dist = torch.distributed
    if _group_ready():
        rank, size = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        backend = dist.get_backend()
        if device.type == "cpu" and backend == "nccl":
            raise ValueError(
                "the process group uses the NCCL backend, which cannot train on the CPU; "
                "use device='cuda' (or 'auto'), or initialise the group with 'gloo'."
            )
    else:
        rank, size, local = launch_from_env()
        if size == 1:
            return World(device=device)
        missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
        if missing:
            raise ValueError(f"WORLD_SIZE={size} but {', '.join(missing)} not set. {_LAUNCH_HELP}")
        if not dist.is_available():
            raise ValueError("this torch build has no torch.distributed; train in one process.")
        backend = "nccl" if device.type == "cuda" else "gloo"
    device = _device_for(device, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not _group_ready():
        dist.init_process_group(
            backend=backend, init_method="env://", rank=rank, world_size=size, timeout=_TIMEOUT
        )
        if not _OWNED_GROUP["created"]:
            atexit.register(_shutdown_owned)
        _OWNED_GROUP["created"] = True
    if size == 1:
        return World(device=device)
    return World(rank=rank, size=size, local_rank=local, device=device)


class World:
    """The processes that train one model together; one process by default.

    Every method is a collective in a process group (each rank must call it, in the
    same order) and the identity for a single process.

    Parameters
    ----------
    rank, size, local_rank : int
        Place of this process, number of processes, place on its node.
    device : torch.device, optional
        This process's training device; the CPU by default.

    Examples
    --------
    >>> import torch
    >>> from disyre_sk._engine.distributed import World
    >>> world = World(device=torch.device("cpu"))
    >>> world.is_main, world.local_batch(96), world.agree((1, 2))
    (True, 96, (1, 2))
    """

    def __init__(self, rank=0, size=1, local_rank=0, device=None):
        self.rank = int(rank)
        self.size = int(size)
        self.local_rank = int(local_rank)
        self.device = torch.device("cpu") if device is None else device

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, device={self.device})"

    @property
    def is_distributed(self) -> bool:
        """Whether other processes take part."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    # ------------------------------------------------------------------ training setup
    def rank_seed(self, seed: int) -> int:
        """This rank's generator seed (see :func:`rank_seed`)."""
        return rank_seed(seed, self.rank, self.size)

    def local_batch(self, batch_size: int) -> int:
        """Patches per rank for a global ``batch_size``."""
        if batch_size % self.size:
            raise ValueError(
                f"batch_size={batch_size} is the global batch, split evenly over the "
                f"{self.size} processes; it must be a multiple of {self.size} (for example "
                f"{max(self.size, batch_size - batch_size % self.size)})."
            )
        return batch_size // self.size

    def wrap(self, network: nn.Module) -> nn.Module:
        """``DistributedDataParallel`` around the network (the network itself alone)."""
        if not self.is_distributed:
            return network
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=ids)

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.is_distributed:
            if self.device.type == "cuda":
                torch.distributed.barrier(device_ids=[self.device.index])
            else:
                torch.distributed.barrier()

    def all_gather(self, obj) -> list:
        """Every rank's ``obj`` (any picklable value), in rank order."""
        if not self.is_distributed:
            return [obj]
        out: list = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def agree(self, obj):
        """Rank 0's ``obj`` on every rank (settings drawn from ``random_state=None``)."""
        if not self.is_distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean of a tensor over the ranks."""
        if not self.is_distributed:
            return values
        out = values.detach().clone().to(self.device)
        torch.distributed.all_reduce(out)
        return out / self.size

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one."""
        if not self.is_distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def should_stop(self, stop: Mapping, synced: bool) -> bool:
        """Whether to stop training now after Ctrl-C or SIGTERM.

        One process stops at once. Several stop together at the next loss sync (every
        rank reaches it at the same step) when any of them got the signal, so none is
        left waiting in a gradient exchange for a rank that has stopped.
        """
        if not self.is_distributed:
            return bool(stop)
        return self.any(bool(stop)) if synced else False

    def check_same(self, value, what: str) -> None:
        """Raise the same ``ValueError`` on every rank if ranks see different ``value``."""
        if not self.is_distributed:
            return
        values = self.all_gather(value)
        if any(v != values[0] for v in values[1:]):
            shown = ", ".join(f"rank {r}: {v!r:.60}" for r, v in enumerate(values))
            raise ValueError(f"the processes disagree on {what} ({shown}).")

    def check_same_data(self, images: np.ndarray) -> None:
        """Refuse to train when ranks were given different training data."""
        if not self.is_distributed:
            return
        flat = images.reshape(-1)
        # A strided sample: reading all of a large cohort twice would cost minutes.
        sample = np.ascontiguousarray(flat[:: max(1, flat.size // 1_000_003)])
        digest = hashlib.blake2b(sample.tobytes(), digest_size=8).hexdigest()
        self.check_same(
            (tuple(images.shape), str(images.dtype), digest),
            "the training data (every rank must load the same scans, in the same order)",
        )

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` samples (all of them for one process)."""
        bounds = np.linspace(0, n, self.size + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def gather_shards(self, fn: Callable[[slice], np.ndarray], n: int) -> np.ndarray:
        """``fn(slice(0, n))`` computed in contiguous shards, one per rank, concatenated.

        ``fn`` maps a slice of samples to one value per sample.
        """
        if not self.is_distributed:
            return fn(slice(0, n))
        part = self.shard(n)
        mine = fn(part) if part.stop > part.start else np.empty(0)
        return np.concatenate([np.asarray(p) for p in self.all_gather(mine)])


def resume_generators(state: dict, world: World, generator: torch.Generator, seed: int) -> None:
    """Set this rank's generator from a checkpoint's trainer state.

    A checkpoint written by as many processes as now resumes it holds each rank's state,
    and each rank continues its own stream exactly. With another number of processes the
    streams cannot be matched: each rank restarts a stream derived from the seed, its
    rank and the step, with a warning (the result then differs from an uninterrupted run).
    """
    saved_size = int(state.get("world_size", 1))
    if saved_size == world.size:
        states = state.get("rank_generators")
        generator.set_state(states[world.rank] if states is not None else state["generator"])
        return
    if world.is_main:
        warnings.warn(
            f"the checkpoint was written by {saved_size} process(es) and is resumed by "
            f"{world.size}: weights, optimiser and schedule continue, but the random "
            "streams of patches and corruptions restart, so the result will differ from an "
            "uninterrupted run. Resume with the same number of processes to continue exactly.",
            RuntimeWarning,
            stacklevel=3,
        )
    derived = np.random.SeedSequence(int(seed), spawn_key=(world.rank, int(state["step"])))
    generator.manual_seed(int(derived.generate_state(1, np.uint64)[0] >> np.uint64(1)))
