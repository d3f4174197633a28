"""Load a script of ``benchmarks/`` (a folder of scripts, not a package) for its tests."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _bench_on_path() -> None:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their shared _common module


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py``, executed once under ``benchmarks_<name>``."""
    _bench_on_path()
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: dataclasses look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# A demo folder's metrics.json, at the smallest size the cohort renders.
TINY_DEMO_META = {
    "settings": {"random_state": 1},
    "cohort": {
        "n_healthy": 3,
        "n_test": 3,
        "voxel_size": 8.0,
        "contrast": "t2",
        "train_bases": ["mni"],
        "test_bases": ["colin"],
    },
}


# A network of the demo's kind that trains in a second on TINY_DEMO_META's cohort.
TINY_DEMO_SETTINGS = dict(
    patch_size=8,
    widths=(4, 8),
    n_steps=2,
    batch_size=2,
    severities=(1.0,),
    map_standardization="location",
    device="cpu",
    random_state=0,
    verbose=False,
)


def tiny_demo_folder(folder: Path, **detector):
    """Write a demo folder (``model.disyre``, a two-network model as the demo's, trained a
    few steps, and ``metrics.json``) into ``folder``; return its cohort."""
    import json

    from disyre_sk import CombinedDetector, DISYREDetector

    _bench_on_path()
    from _demo_models import demo_cohort  # the cohort a demo folder's metrics.json names

    cohort = demo_cohort(TINY_DEMO_META)
    tiny = DISYREDetector(**{**TINY_DEMO_SETTINGS, **detector})
    CombinedDetector([("shapes", tiny), ("foci", tiny)]).fit(cohort.X_train).save(
        Path(folder) / "model.disyre"
    )
    (Path(folder) / "metrics.json").write_text(json.dumps(TINY_DEMO_META))
    return cohort


def contrast_row(method: str, ap: float, tumour: float, stroke: float) -> dict:
    """One row of the contrast benchmarks' reports (seed 0, T1, the 36 new subjects)."""
    return {
        "seed": 0,
        "contrast": "t1",
        "test set": "new, 36",
        "method": method,
        "pixel_ap": ap,
        "tumour": tumour,
        "stroke": stroke,
        "foci": None,
        "cavity": None,
        "infarct": None,
        "slice_auroc": 0.6,
        "volume_auroc": 0.5,
    }
