"""``benchmarks/map_symmetry.py``: the demo's models with the symmetry prior at each weight."""

import numpy as np
import pytest
from _benchmarks import load_benchmark, tiny_demo_folder

from disyre_sk import CombinedDetector, load_model


@pytest.fixture(scope="module")
def ms():
    return load_benchmark("map_symmetry")


def test_rows_set_every_network_and_calibrate_every_arm_alike(ms, tmp_path, monkeypatch):
    cohort = tiny_demo_folder(tmp_path, window_size="slice")
    calibrated = []
    real = CombinedDetector.calibrate

    def spy(self, X):
        calibrated.append(([d.map_symmetry for _, d in self.detectors_], np.asarray(X).copy()))
        return real(self, X)

    monkeypatch.setattr(CombinedDetector, "calibrate", spy)
    rows = ms.rows_of(tmp_path, n_test=2, weights=(0.0, 1.0))
    assert [(r["test set"], r["map_symmetry"]) for r in rows] == [
        ("demo's, 3", 0.0),
        ("new, 2", 0.0),
        ("demo's, 3", 1.0),
        ("new, 2", 1.0),
    ]
    # Each arm sets both networks, and both calibrate on the demo's training scans.
    assert [w for w, _ in calibrated] == [[0.0, 0.0], [1.0, 1.0]]
    for _, X in calibrated:
        np.testing.assert_array_equal(X, cohort.X_train)
    assert rows[0]["pixel_ap"] != rows[2]["pixel_ap"]  # the prior changes the maps
    assert all(r["seconds"] > 0 and 0 <= r["slice_auroc"] <= 1 for r in rows)
    text = ms.report(rows, [0.0, 1.0], key="map_symmetry")
    assert "| demo's, 3 | 1.0 |" in text and "of 1 up)" in text
    assert ", seed 1 1.0: " in ms.seconds(rows, key="map_symmetry")  # the tiny demo: seed 1
    kept = load_model(tmp_path / "model.disyre").detectors_[0][1]
    assert kept.map_symmetry == 0.0  # the file is kept as the demo wrote it
