"""``benchmarks/scan_scores.py``: scan-level reductions of the demo's maps."""

import numpy as np
import pytest
from _benchmarks import load_benchmark, tiny_demo_folder


@pytest.fixture(scope="module")
def ss():
    return load_benchmark("scan_scores")


def test_reductions_read_the_foreground_only(ss):
    m = np.zeros((1, 6, 6))
    f = np.zeros((1, 6, 6), bool)
    f[0, 1:5, 1:5] = True
    m[0, 1, 1:3] = 6.0  # a cluster of two voxels, 3 above t=3 each
    m[0, 4, 4] = 4.0  # a lone voxel, 1 above
    m[0, 0, 0] = 99.0  # outside the foreground: never counted
    assert ss.blob_mass(m, f, 3.0) == pytest.approx(6.0)
    assert ss.REDUCTIONS["max"](m, f) == 6.0
    assert ss.REDUCTIONS["excess > 3"](m, f) == pytest.approx(7.0)
    assert ss.blob_mass(m, f, 10.0) == 0.0
    assert ss.top_mean(np.arange(10.0), 0.2) == pytest.approx(8.5)
    assert ss.top_mean(np.arange(10.0), 0.01) == 9.0  # at least one value


def test_rows_score_every_reduction_on_both_sets(ss, tmp_path):
    tiny_demo_folder(tmp_path, window_size="slice")
    rows = ss.rows_of(tmp_path, n_test=2)
    assert [r["test set"] for r in rows] == ["demo's, 3", "new, 2"]
    for r in rows:
        assert all(0 <= r[k] <= 1 for k in ss.REDUCTIONS)
    text = ss.report(rows)
    assert "| top 1 % |" in text and "up," in text and "| max |" in text
