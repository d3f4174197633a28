"""``benchmarks/map_flip.py``: the demo's models with and without mirrored restorations."""

import numpy as np
import pytest
from _benchmarks import load_benchmark, tiny_demo_folder

from disyre_sk import CombinedDetector, load_model


@pytest.fixture(scope="module")
def mf():
    return load_benchmark("map_flip")


def test_rows_set_every_network_and_calibrate_both_arms_alike(mf, tmp_path, monkeypatch):
    cohort = tiny_demo_folder(tmp_path, window_size="slice")
    calibrated = []
    real = CombinedDetector.calibrate

    def spy(self, X):
        calibrated.append(([d.map_flip for _, d in self.detectors_], np.asarray(X).copy()))
        return real(self, X)

    monkeypatch.setattr(CombinedDetector, "calibrate", spy)
    rows = mf.rows_of(tmp_path, n_test=2)
    assert [(r["test set"], r["map_flip"]) for r in rows] == [
        ("demo's, 3", False),
        ("new, 2", False),
        ("demo's, 3", True),
        ("new, 2", True),
    ]
    # Each arm sets both networks, and both calibrate on the demo's training scans.
    assert [flips for flips, _ in calibrated] == [[False, False], [True, True]]
    np.testing.assert_array_equal(calibrated[0][1], cohort.X_train)
    np.testing.assert_array_equal(calibrated[1][1], cohort.X_train)
    assert rows[0]["pixel_ap"] != rows[2]["pixel_ap"]  # the mirrored maps differ
    assert all(r["seconds"] > 0 and 0 <= r["slice_auroc"] <= 1 for r in rows)
    text = mf.report(rows, [False, True], key="map_flip")
    assert "| demo's, 3 | True |" in text and "of 1 up)" in text
    assert load_model(tmp_path / "model.disyre").detectors_[0][1].map_flip is False  # file kept


def test_seconds_name_each_arm_once_whatever_the_number_of_sets(mf):
    rows = [
        {"seed": 0, "map_flip": False, "seconds": 10.2},
        {"seed": 0, "map_flip": False, "seconds": 10.2},
        {"seed": 0, "map_flip": False, "seconds": 10.2},
        {"seed": 0, "map_flip": True, "seconds": 17.0},
    ]
    assert mf.seconds(rows) == "seed 0 False: 10, seed 0 True: 17"
    # Grouped by seed and test set: one entry per set when each set is its own run.
    sets = [dict(rows[0], **{"test set": "a"}), dict(rows[3], **{"test set": "b"})]
    assert mf.seconds(sets, group=("seed", "test set")) == "seed 0 a False: 10, seed 0 b True: 17"
