"""``benchmarks/map_erosion.py``: the demo's models with each rim erosion."""

import numpy as np
import pytest
from _benchmarks import load_benchmark, tiny_demo_folder

from disyre_sk import CombinedDetector


@pytest.fixture(scope="module")
def me():
    return load_benchmark("map_erosion")


def test_rows_set_every_network_and_calibrate_every_arm_alike(me, tmp_path, monkeypatch):
    cohort = tiny_demo_folder(tmp_path, window_size="slice")
    calibrated = []
    real = CombinedDetector.calibrate

    def spy(self, X):
        calibrated.append(([d.map_erosion for _, d in self.detectors_], np.asarray(X).copy()))
        return real(self, X)

    monkeypatch.setattr(CombinedDetector, "calibrate", spy)
    rows = me.rows_of(tmp_path, n_test=2, sizes=(0, 3))
    assert [(r["test set"], r["map_erosion"]) for r in rows] == [
        ("demo's, 3", 0),
        ("new, 2", 0),
        ("demo's, 3", 3),
        ("new, 2", 3),
    ]
    assert [sizes for sizes, _ in calibrated] == [[0, 0], [3, 3]]
    for _, X in calibrated:
        np.testing.assert_array_equal(X, cohort.X_train)
    assert rows[0]["pixel_ap"] != rows[2]["pixel_ap"]  # the rim's pixels change the maps


def _row(test_set, size, tumour, stroke):
    return {
        "test set": test_set,
        "map_erosion": size,
        "tumour": tumour,
        "stroke": stroke,
        "foci": None,
        "cavity": None,
        "infarct": None,
    }


def test_family_table_averages_each_family_over_the_seeds(me):
    rows = [
        _row("new, 36", 2, 0.4, 0.2),
        _row("new, 36", 2, 0.6, None),
        _row("new, 36", 0, 0.5, 0.3),
        _row("new, 36", 0, 0.7, 0.1),
    ]
    text = me.family_table(rows, [2, 0])
    assert "| new, 36 | 2 | 0.500 | 0.200 |" in text  # a missing seed is left out
    assert "| new, 36 | 0 | 0.600 | 0.200 |" in text
    assert "foci" not in text and "infarct" not in text  # absent families: no column
