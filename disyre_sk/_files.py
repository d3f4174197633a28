"""File helpers every writer shares: atomic writes, JSON-safe values, content digests.

A leaf module: it imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

_TMP = ".tmp"


def jsonable(value):
    """``value`` with tuples, arrays, NumPy scalars, devices and paths made JSON-safe."""
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, os.PathLike):  # checkpoint_dir=Path(...): stored as its string
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def temp_files(path) -> list[Path]:
    """Temporary files that :func:`atomic_write` leaves beside ``path`` if killed."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*{_TMP}"))


def atomic_write(path, write: Callable[[BinaryIO], None], *, fsync: bool = False) -> Path:
    """Write ``path`` through ``write(handle)`` into a temporary file, then rename.

    A crash or a kill leaves either the previous file or the new one, never a half
    written one. Temporary files that an interrupted earlier write left behind are
    removed first. The file gets ordinary permissions (the umask's), not the 0600 of
    :func:`tempfile.mkstemp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in temp_files(path):
        stale.unlink(missing_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{_TMP}"
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_writable(folder, what: str) -> Path:
    """Make sure files can be created in ``folder`` (created if missing) before work starts.

    Raises
    ------
    PermissionError or NotADirectoryError or OSError
        With a message that names ``what`` and the folder, and says what to do.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{secrets.token_hex(6)}{_TMP}"
        probe.open("xb").close()
        probe.unlink()
    except OSError as exc:
        raise type(exc)(
            exc.errno,
            f"{what}: cannot write in {str(folder)!r} ({exc.strerror or exc}); choose a "
            "folder you can write to",
        ) from exc
    return folder


def _feed(h, value) -> None:
    # A tag and a length before each item: different structures never feed equal bytes.
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        data = value.encode()
        h.update(f"S{len(data)}|".encode() + data)
    elif isinstance(value, bytes):
        h.update(f"B{len(value)}|".encode() + value)
    elif value is None or isinstance(value, (bool, int, float)):
        h.update(f"{type(value).__name__}:{value!r}|".encode())
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")


def digest(value) -> str:
    """SHA-256 of nested dicts, lists, strings, numbers and tensors (their exact bytes)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()
