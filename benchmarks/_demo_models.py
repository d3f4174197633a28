"""What the scripts that map with the demo's trained models share.

A demo folder is what ``disyre demo`` writes (``model.disyre``, ``metrics.json``, whose
settings hold the seed). ``demo_folders`` gives the folders a run reads, either given or
made by a fresh demo per seed; ``demo_model_parser`` and ``run_on_demo_models`` are the
command line and the loop-and-write of ``demo_test_size.py``, ``map_median.py``,
``lesion_response.py`` and ``slice_detection.py``; ``load_demo`` reads one folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record_rows

from disyre_sk import CombinedDetector, DISYREDetector, load_model
from disyre_sk.datasets import make_brain_cohort


def run_demo(seed: int, out: Path) -> Path:
    """Run ``disyre demo`` for ``seed`` into ``out``; return the folder."""
    cmd = [sys.executable, "-m", "disyre_sk.cli", "demo", "--out", str(out), "--seed", str(seed)]
    subprocess.run([*cmd, "--quiet"], check=True)
    return out


def load_demo(folder: Path, whole: bool = False) -> tuple[dict, int, DISYREDetector]:
    """A demo folder's ``metrics.json`` (settings and cohort), its seed, and its model
    loaded quiet (no progress bars).

    A demo model with a small-anomaly network is a ``CombinedDetector``: ``whole=True``
    gives it (the map the demo reports), the default its DAG network alone (the scripts
    that change a network's map settings study that one).
    """
    meta = demo_meta(folder)
    model = load_model(Path(folder) / "model.disyre")
    for _, det in members(model):
        det.set_params(verbose=False)
    if not whole and isinstance(model, CombinedDetector):
        model = model.detectors_[0][1]
    return meta, int(meta["settings"]["random_state"]), model


def first_network(model) -> DISYREDetector:
    """The model itself, or a combination's first member."""
    return model.detectors_[0][1] if isinstance(model, CombinedDetector) else model


def demo_meta(folder: Path) -> dict:
    """A demo folder's ``metrics.json``: its settings (the seed) and its cohort."""
    return json.loads((Path(folder) / "metrics.json").read_text())


def members(model) -> list:
    """``(name, detector)`` of a model's fitted networks: a combination's members, or
    ``("", model)``."""
    return model.detectors_ if isinstance(model, CombinedDetector) else [("", model)]


def demo_cohort(meta: dict, n_test: int | None = None, seed_offset: int = 0, **overrides):
    """The demo's cohort (from its ``metrics.json``), or ``n_test`` test subjects of the
    same kind drawn from the seed plus ``seed_offset`` with no training subjects;
    ``overrides`` go to ``make_brain_cohort`` (e.g. ``bias_field``)."""
    seed = int(meta["settings"]["random_state"])
    c = meta["cohort"]
    common = dict(
        voxel_size=c["voxel_size"],
        contrast=c["contrast"],
        train_bases=tuple(c["train_bases"]),
        test_bases=tuple(c["test_bases"]),
        **overrides,
    )
    if n_test is None:
        return make_brain_cohort(
            n_healthy=c["n_healthy"], n_test=c["n_test"], random_state=seed, **common
        )
    return make_brain_cohort(n_healthy=0, n_test=n_test, random_state=seed + seed_offset, **common)


def demo_folders(demo_dirs, seeds, work: Path) -> list[Path]:
    """The demo folders to read: ``demo_dirs`` as given, or a fresh demo per seed in ``work``."""
    if demo_dirs:
        return [Path(d) for d in demo_dirs]
    return [run_demo(s, work / f"demo{s}") for s in seeds]


def demo_model_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The command line of a script that maps with the demo's models: seeds or demo
    folders, the size of the larger test set, the results file."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--demo-dirs", nargs="+", default=None, help="reuse demo output folders")
    ap.add_argument("--n-test", type=int, default=36)
    ap.add_argument("--out", default=out)
    return ap


def run_on_demo_models(args, title: str, rows_of, report) -> int:
    """``rows_of(folder)`` for each demo folder (``args.demo_dirs``, or a fresh demo per
    seed), then ``report(rows)`` written with the run's provenance and the rows as JSON."""

    def mapped(folder: Path) -> list:
        print(f"mapping with {folder}...", flush=True)
        return rows_of(folder)

    def jobs(tmp: str):
        # A generator: the demos run after record_rows has taken the provenance and time.
        for folder in demo_folders(args.demo_dirs, args.seeds, Path(tmp)):
            yield lambda folder=folder: mapped(folder)

    with tempfile.TemporaryDirectory() as tmp:
        return record_rows(args.out, title, jobs(tmp), report)
