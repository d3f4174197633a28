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
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ._distributed import World

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def fingerprint(params: dict, data: np.ndarray) -> str:
    """Identify a training run: its settings and a digest of its data."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(params, sort_keys=True, default=repr).encode())
    digest.update(str((data.shape, data.dtype.str)).encode())
    digest.update(np.ascontiguousarray(data).data)
    return digest.hexdigest()


class Checkpointer:
    """Save and restore a :class:`~disyre_sk._training.Trainer` in one folder.

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

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    def save(self, trainer) -> None:
        """Write the trainer's state atomically (a crash keeps the previous file)."""
        world = _world_of(trainer)
        state = trainer.state_dict()  # a collective under torchrun: every rank calls it
        if world.is_main:
            self._write(state)
        # Nobody reads or replaces the file before it is complete.
        world.barrier()
        self.last_saved = trainer.step

    def _write(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "run_id": self.run_id,
            "trainer": state,
        }
        fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"cannot read the checkpoint {str(self.path)!r} ({type(exc).__name__}: "
                f"{exc}); delete it to start afresh."
            ) from exc
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{str(self.path)!r} has checkpoint format {payload.get('format')}, this "
                f"version writes {CHECKPOINT_FORMAT}; use another checkpoint_dir."
            )
        if payload.get("run_id") != self.run_id:
            raise ValueError(
                f"the checkpoint in {str(self.folder)!r} belongs to another training run "
                "(different training data or parameters). Use a new checkpoint_dir, or "
                "delete the old checkpoint to start afresh."
            )
        trainer.load_state_dict(payload["trainer"])
        self.last_saved = trainer.step
        return True


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
