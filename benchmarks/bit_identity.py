"""Same behaviour, bit for bit: fingerprints of what a fixed-seed fit produces.

    python benchmarks/bit_identity.py [--out benchmarks/results/bit_identity_cpu.json]
    python benchmarks/bit_identity.py --check benchmarks/results/bit_identity_cpu.json

A reorganisation of the package must not change a single bit of what users get. For a
fixed seed on the CPU, each case below fits a small ``DISYREDetector`` on a tiny cohort
of real anatomy and records the SHA-256 of

- the maps of the test subjects (``decision_map``, float32 bytes),
- their scores (``score_samples``, float64 bytes) and ``offset_``,
- ``history_`` (canonical JSON, floats written exactly with ``float.hex``),
- the bytes of the saved model file.

Run it before a change (writes the reference), then ``--check`` after: every case must
match, or the script lists what changed and exits 1. Both runs need the same installed
numpy, scipy and torch: their builds change the last bits of the arithmetic. The cases
cover windowed and whole-slice mapping, the ensemble and multistep inference, volumes,
and the map options (normalisation, smoothing, erosion, location standardisation). Only
public API is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results

from disyre_sk import DISYREDetector
from disyre_sk.datasets import make_brain_cohort

BASE = dict(
    patch_size=16,
    widths=(8, 16),
    attention_levels=(),
    n_steps=12,
    batch_size=4,
    warmup_steps=2,
    validation_fraction=0.0,
    device="cpu",
    random_state=0,
    verbose=False,
)
CASES = {
    "windowed, ensemble": dict(window_size=16, stride=8),
    "whole slice, ensemble": dict(window_size="slice"),
    "windowed, multistep": dict(window_size=16, stride=8, inference="multistep"),
    "whole slice, map options": dict(
        window_size="slice", map_normalization="intensity", map_smoothing=1.0, map_erosion=1
    ),
    "fpi, whole slice": dict(window_size="slice", corruption="fpi"),
    "whole slice, location standardisation": dict(
        window_size="slice",
        map_normalization="intensity",
        map_smoothing=1.0,
        map_erosion=1,
        map_standardization="location",
    ),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def exact(value):
    """``value`` with every float written exactly, for a canonical JSON."""
    if isinstance(value, float):
        return float(value).hex()
    if isinstance(value, dict):
        return {str(k): exact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [exact(v) for v in value]
    if isinstance(value, np.ndarray):
        return exact(value.tolist())
    if isinstance(value, np.generic):
        return exact(value.item())
    return value


def fingerprint(params: dict, cohort, tmp: Path) -> dict[str, str]:
    det = DISYREDetector(**params).fit(cohort.X_train)
    maps = det.decision_map(cohort.X_test).astype(np.float32)
    scores = det.score_samples(cohort.X_test).astype(np.float64)
    path = det.save(tmp / "model.disyre")
    again = det.save(tmp / "again.disyre")
    model = path.read_bytes()
    if model != again.read_bytes():
        raise RuntimeError("saving the same model twice gave different bytes")
    history = json.dumps(exact(det.history_), sort_keys=True).encode()
    return {
        "maps": sha(maps.tobytes()),
        "scores": sha(scores.tobytes()),
        "offset": float(det.offset_).hex(),
        "history": sha(history),
        "model file": sha(model),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/bit_identity_cpu.json")
    ap.add_argument("--check", default=None, help="compare with this reference; no writing")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cohort = make_brain_cohort(4, 4, voxel_size=8.0, contrast="t2", random_state=0)
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in CASES.items():
            found[name] = fingerprint({**BASE, **extra}, cohort, Path(tmp))
            print(f"{name}: {found[name]['maps'][:12]}", flush=True)
    if args.check:
        reference = json.loads(Path(args.check).read_text())["cases"]
        bad = [
            f"{case}: {key} changed"
            for case in sorted(set(reference) | set(found))
            for key in sorted(set(reference.get(case, {})) | set(found.get(case, {})))
            if reference.get(case, {}).get(key) != found.get(case, {}).get(key)
        ]
        print("\n".join(bad) if bad else f"all {len(found)} cases identical to {args.check}")
        return 1 if bad else 0
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    Path(args.out).write_text(json.dumps({**info, "cases": found}, indent=1))
    rows = [[name, *(v[:16] for k, v in fp.items() if k != "offset")] for name, fp in found.items()]
    body = "\n\n".join(
        [
            "SHA-256 (first 16 hex digits) of what a fixed-seed CPU fit produces on "
            "`make_brain_cohort(4, 4, voxel_size=8.0, contrast='t2', random_state=0)`; "
            f"detector {BASE} plus each case's settings. Full digests: the JSON beside. "
            "`--check` compares a later tree against it.",
            md_table(["case", "maps", "scores", "history_", "model file"], rows),
            f"Run time: {time.perf_counter() - t0:.0f} s.",
        ]
    )
    write_results(Path(args.out).with_suffix(".md"), "Bit-identity reference", info, body)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
