"""``benchmarks/site_calibration.py``: the demo's models calibrated on other healthy scans."""

import numpy as np
import pytest
from _benchmarks import TINY_DEMO_META, load_benchmark, tiny_demo_folder

META = TINY_DEMO_META


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
    tiny_demo_folder(tmp_path)
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
