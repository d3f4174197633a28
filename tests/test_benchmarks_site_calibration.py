"""``benchmarks/site_calibration.py``: the demo's models calibrated on other healthy scans."""

import json

import numpy as np
import pytest
from _benchmarks import load_benchmark

from disyre_sk import CombinedDetector, DISYREDetector
from disyre_sk.datasets import make_brain_cohort

META = {
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


@pytest.fixture(scope="module")
def sc():
    return load_benchmark("site_calibration")


def test_calibration_scans_come_from_the_training_or_the_test_brain(sc, monkeypatch):
    calls = []

    class Cohort:
        X_train = "scans"

    monkeypatch.setattr(sc, "make_brain_cohort", lambda **kw: calls.append(kw) or Cohort())
    assert sc.calibration_scans(META, "as fitted", 16) is None
    assert sc.calibration_scans(META, "calibrated: training brains", 16) == "scans"
    assert sc.calibration_scans(META, "calibrated: test brain", 4) == "scans"
    train, test = calls
    assert train["train_bases"] == ("mni",) and test["train_bases"] == ("colin",)
    assert train["n_healthy"] == 16 and test["n_healthy"] == 4
    assert train["n_test"] == test["n_test"] == 0
    # Subjects drawn apart from the demo's (seed) and the larger test set's (seed + 2000).
    assert train["random_state"] == test["random_state"] == 1 + sc.CALIBRATION_OFFSET
    assert sc.CALIBRATION_OFFSET not in (0, 2000)


def test_rows_map_each_test_set_three_ways_and_calibration_changes_the_maps(sc, tmp_path):
    c = META["cohort"]
    cohort = make_brain_cohort(
        n_healthy=c["n_healthy"],
        n_test=c["n_test"],
        voxel_size=c["voxel_size"],
        contrast=c["contrast"],
        train_bases=tuple(c["train_bases"]),
        test_bases=tuple(c["test_bases"]),
        random_state=1,
    )
    tiny = DISYREDetector(
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
    CombinedDetector([("shapes", tiny), ("foci", tiny)]).fit(cohort.X_train).save(
        tmp_path / "model.disyre"
    )
    (tmp_path / "metrics.json").write_text(json.dumps(META))
    rows = sc.rows_of(tmp_path, n_calibration=2, n_test=2)
    assert [(r["test set"], r["way"]) for r in rows][:2] == [
        ("demo's, 3", "as fitted"),
        ("new, 2", "as fitted"),
    ]
    assert len(rows) == 6 and {r["way"] for r in rows} == set(sc.WAYS)
    for r in rows:
        assert 0 <= r["healthy_flagged"] <= 1 and 0 <= r["slice_auroc"] <= 1
        assert (r["calibration_s"] is None) == (r["way"] == "as fitted")
    by = {(r["test set"], r["way"]): r for r in rows}
    fitted, own = by[("demo's, 3", "as fitted")], by[("demo's, 3", "calibrated: test brain")]
    assert fitted["pixel_ap"] != own["pixel_ap"] or fitted["slice_auroc"] != own["slice_auroc"]
    text = sc.report(rows, 2)
    assert "| demo's, 3 | calibrated: test brain |" in text and "healthy flagged" in text
    assert np.isfinite([r["pixel_ap"] for r in rows]).all()
