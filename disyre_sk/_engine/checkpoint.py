"""Training checkpoints: atomic writes, resume, and clean stops on Ctrl-C or SIGTERM.

A checkpoint holds the network, optimiser, schedule, step, loss history and the state of
the training random generator, so a resumed run continues the very same random stream:
on a CPU it ends with the same weights as an uninterrupted run.

Under torchrun, rank 0 alone writes the file, holding every rank's generator state; all
ranks wait for the write to finish, and read the file back on resume (the folder must be
on a filesystem every rank sees).
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write, digest
from .distributed import World

CHECKPOINT_NAME = "checkpoint.pt"
# Format 2 adds a SHA-256 of the whole content, verified before resuming.
CHECKPOINT_FORMAT = 2


def fingerprint(params: dict, data: np.ndarray) -> str:
    """Identify a training run: its settings and a digest of its data."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(params, sort_keys=True, default=repr).encode())
    digest.update(str((data.shape, data.dtype.str)).encode())
    digest.update(np.ascontiguousarray(data).data)
    return digest.hexdigest()


class Checkpointer:
    """Save and restore a :class:`~disyre_sk._engine.training.Trainer` in one folder.

    Parameters
    ----------
    folder : path-like
        Where ``checkpoint.pt`` lives.
    every : int
        Save after this many steps (at the next loss check).
    run_id : str
        Fingerprint of the run; resuming from a checkpoint of another run is refused.
    """

    def __init__(self, folder, every: int, run_id: str):
        self.folder = Path(folder)
        self.every = int(every)
        self.run_id = run_id
        self.last_saved = -1
        self.failed = False

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    def save(self, trainer) -> None:
        """Write the trainer's state atomically (a crash keeps the previous file).

        A write that fails (disk full, folder made read-only mid-run) warns and stops
        checkpointing for the rest of the run instead of ending it: the training in
        memory is worth more than the next checkpoint.
        """
        world = _world_of(trainer)
        state = trainer.state_dict()  # a collective under torchrun: every rank calls it
        if world.is_main and not self.failed:
            try:
                self._write(state)
            except OSError as exc:
                self.failed = True
                warnings.warn(
                    f"could not write the checkpoint {str(self.path)!r} ({exc}); training "
                    "goes on without checkpoints, so an interruption from here on loses "
                    f"the steps since the last good checkpoint (step {self.last_saved}).",
                    RuntimeWarning,
                    stacklevel=2,
                )
        # Nobody reads or replaces the file before it is complete.
        world.barrier()
        if not self.failed:
            self.last_saved = trainer.step

    def _write(self, state: dict) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "run_id": self.run_id,
            "trainer": state,
        }
        payload["checksum"] = digest(payload)
        atomic_write(self.path, lambda handle: torch.save(payload, handle), fsync=True)

    def maybe_save(self, trainer) -> None:
        """Save when ``every`` steps have passed since the last save."""
        if trainer.step // self.every > max(self.last_saved, 0) // self.every:
            self.save(trainer)

    def restore(self, trainer) -> bool:
        """Load the folder's checkpoint into ``trainer``; False when there is none."""
        world = _world_of(trainer)
        world.barrier()
        exists = self.path.exists()
        world.check_same(
            exists,
            f"whether {str(self.path)!r} exists (checkpoint_dir must be on a filesystem "
            "that every process sees)",
        )
        if not exists:
            return False
        payload = self._read()
        if payload.get("run_id") != self.run_id:
            raise ValueError(
                f"the checkpoint in {str(self.folder)!r} belongs to another training run "
                "(different training data or parameters). Use a new checkpoint_dir, or "
                "delete the old checkpoint to start afresh."
            )
        try:
            trainer.load_state_dict(payload["trainer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"the checkpoint {str(self.path)!r} does not fit this training run "
                f"({type(exc).__name__}: {exc}); delete it to start afresh."
            ) from exc
        self.last_saved = trainer.step
        return True

    def _read(self) -> dict:
        """The checkpoint's payload, read without unpickling and checked."""
        where = repr(str(self.path))
        fresh = "delete it to start afresh, or put back an intact copy"
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"cannot read the checkpoint {where}: it is truncated, damaged or not a "
                f"checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                f"{fresh}."
            ) from exc
        if not isinstance(payload, dict):
            raise ValueError(f"{where} is not a disyre_sk checkpoint; {fresh}.")
        version = payload.get("format")
        if version == 1 and set(payload) == {"format", "run_id", "trainer"}:
            warnings.warn(
                f"{where} is a format 1 checkpoint without a checksum: damage to it cannot "
                "be detected.",
                UserWarning,
                stacklevel=3,
            )
            return payload
        if version != CHECKPOINT_FORMAT or set(payload) != {
            "format",
            "run_id",
            "trainer",
            "checksum",
        }:
            raise ValueError(
                f"{where} has checkpoint format {version!r} or unexpected entries; this "
                f"version writes format {CHECKPOINT_FORMAT}. Use another checkpoint_dir, or "
                f"{fresh}."
            )
        content = {k: v for k, v in payload.items() if k != "checksum"}
        try:
            intact = digest(content) == payload["checksum"]
        except TypeError:
            intact = False
        if not intact:
            raise ValueError(
                f"the checkpoint {where} fails its SHA-256 check: it was damaged (a disk "
                f"error, an incomplete copy) or edited; {fresh}."
            )
        return payload


def _world_of(trainer) -> World:
    # Any object with state_dict/step can be saved; without a world it is one process.
    return getattr(trainer, "world", None) or World()


class StopRequested(KeyboardInterrupt):
    """Raised between steps after Ctrl-C or SIGTERM, once the checkpoint is saved."""


@contextmanager
def stop_on_signals(flag: dict):
    """Turn SIGINT and SIGTERM into a flag checked between training steps.

    A signal never lands in the middle of an optimiser step, so the checkpoint saved on
    stopping is consistent. Only the main thread can install handlers; elsewhere the
    default behaviour is kept.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        flag["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
