"""CombinedDetector model files: each member's payload, as a single model file holds it.

The members keep their own checksum tables (verified as a single file's are); the outer
table covers the combination's own entries and each member's table, so no byte of the
file goes unchecked. Like a single model file, it holds only strings and tensors and is
read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .._files import atomic_write, digest
from .._version import __version__
from .persist import (
    _DAMAGED,
    COMBINED_FORMAT_NAME,
    _fail,
    _json_entry,
    check_payload,
    checked_version,
)

COMBINED_VERSION = 1
_OWN = ("format", "format_version", "package_version", "torch_version", "params", "state")


def _checksums(payload: dict) -> dict:
    sums = {k: digest(payload[k]) for k in _OWN}
    for name, member in payload["members"].items():
        sums[f"members/{name}"] = digest(member.get("checksums"))
    return sums


def save_combined(path, params: dict, state: dict, members: dict[str, dict]) -> Path:
    """Write a combination atomically: its JSON ``params`` and ``state`` and the members'
    payloads (name -> ``persist.detector_payload``), in order."""
    payload = {
        "format": COMBINED_FORMAT_NAME,
        "format_version": COMBINED_VERSION,
        "package_version": __version__,
        "torch_version": str(torch.__version__),
        "params": json.dumps(params),
        "state": json.dumps(state),
        "members": dict(members),
    }
    payload["checksums"] = json.dumps(_checksums(payload))
    return atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def read_combined(path, payload) -> tuple[dict, dict, dict[str, dict]]:
    """Verify a combination's payload; return its ``params``, ``state`` and members."""
    if not isinstance(payload, dict) or payload.get("format") != COMBINED_FORMAT_NAME:
        raise _fail(path, "is not a CombinedDetector model file", "Save one with its save method")
    checked_version(path, payload, COMBINED_VERSION, "combined-model")
    expected = {*_OWN, "members", "checksums"}
    if set(payload) != expected:
        extra, missing = sorted(set(payload) - expected), sorted(expected - set(payload))
        raise _fail(path, f"has unexpected entries {extra} and lacks {missing}", _DAMAGED)
    members = payload["members"]
    if not (
        isinstance(members, dict)
        and members
        and all(isinstance(k, str) and isinstance(v, dict) for k, v in members.items())
    ):
        raise _fail(path, "holds no members, or members that are not model payloads", _DAMAGED)
    try:
        stored = json.loads(payload["checksums"])
    except (TypeError, ValueError):
        stored = None
    if not isinstance(stored, dict) or set(stored) != set(_checksums(payload)):
        raise _fail(path, "has a malformed checksum table", _DAMAGED)
    bad = sorted(k for k, v in _checksums(payload).items() if stored[k] != v)
    if bad:
        raise _fail(path, f"fails its SHA-256 check in {', '.join(bad[:5])}", _DAMAGED)
    for name, member in members.items():
        check_payload(f"{path} (member {name!r})", member)
    return _json_entry(path, payload, "params"), _json_entry(path, payload, "state"), members
