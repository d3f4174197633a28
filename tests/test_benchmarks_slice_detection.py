"""Checks of ``benchmarks/slice_detection.py`` on hand-built maps."""

import numpy as np
import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def sd():
    return load_benchmark("slice_detection")


def _set():
    """Three volumes of 4 slices of 4 x 4 brain voxels; the last volume's first slice
    holds 12 lesion voxels, its second 2. Every slice is uniform, so its score is its
    value: the negatives score 1 to 10, the large positive 20, the small one 5.5."""
    fg = np.ones((3, 4, 4, 4), dtype=bool)
    masks = np.zeros_like(fg)
    masks[2, 0].flat[:12] = True
    masks[2, 1].flat[:2] = True
    maps = np.zeros(fg.shape)
    negatives = [(v, z) for v in range(3) for z in range(4) if not masks[v, z].any()]
    for value, (v, z) in enumerate(negatives, start=1):
        maps[v, z] = value
    maps[2, 0] = 20.0
    maps[2, 1] = 5.5
    return maps, fg, masks


def test_slice_row_splits_the_positives_by_size(sd):
    row = sd.slice_row(*_set(), small=10)
    assert (row["positives"], row["small"], row["negatives"]) == (2, 1, 10)
    assert row["auroc_large"] == pytest.approx(1.0)
    assert row["auroc_small"] == pytest.approx(0.5)  # above 1-5, below 6-10
    assert row["auroc_all"] == pytest.approx((10 + 5) / 20)
    assert row["ceiling"] == pytest.approx((1 + 0.5) / 2)


def test_a_slice_at_the_threshold_is_small(sd):
    maps, fg, masks = _set()
    row = sd.slice_row(maps, fg, masks, small=12)
    assert row["small"] == 2 and row["auroc_large"] is None
    assert row["ceiling"] == pytest.approx(0.5)
    assert sd.slice_row(maps, fg, masks, small=1)["small"] == 0


def test_slices_with_little_brain_are_not_scored(sd):
    maps, fg, masks = _set()
    fg[0, 3] = False  # a negative slice with no brain drops out
    assert sd.slice_row(maps, fg, masks, small=10)["negatives"] == 9


def test_slice_row_needs_both_kinds(sd):
    maps, fg, masks = _set()
    with pytest.raises(ValueError, match="positive and negative"):
        sd.slice_row(maps, fg, np.zeros_like(masks), small=10)


def test_other_slice_scores(sd):
    maps, fg, masks = _set()
    maps[2, 1].flat[0] = 30.0  # one hot voxel makes the small positive the top slice by max
    row = sd.slice_row(maps, fg, masks, small=10, reduction="max", k=None)
    assert row["auroc_small"] == pytest.approx(1.0)
    # The mean of the top 3 of 16 voxels: (30 + 5.5 + 5.5) / 3 > 10.
    assert sd.slice_row(maps, fg, masks, small=10, reduction="topk", k=3)["auroc_small"] == 1.0
    # The mean of all 16: (30 + 15 x 5.5) / 16 = 7.03, above the negatives 1 to 7.
    row = sd.slice_row(maps, fg, masks, small=10, reduction="mean", k=None)
    assert row["auroc_small"] == pytest.approx(0.7)


def test_volume_row_scores_each_family_against_the_healthy_volumes(sd):
    # Five volumes of 100 brain voxels; a volume's score is its top voxel (top 1 %).
    fg = np.ones((5, 1, 10, 10), dtype=bool)
    maps = np.zeros(fg.shape)
    for i, top in enumerate([2.0, 4.0, 5.0, 1.0, 3.0]):
        maps[i, 0, 0, 0] = top
    families = ["healthy", "healthy", "tumour", "foci", "foci"]
    row = sd.volume_row(maps, fg, families)
    assert row["volume_tumour"] == pytest.approx(1.0)  # 5 above 2 and 4
    assert row["volume_foci"] == pytest.approx(0.25)  # 1 below both, 3 above 2 only
    assert row["volume_auroc"] == pytest.approx(3 / 6)
    assert row["volume_stroke"] is None
    with pytest.raises(ValueError, match="healthy and lesioned"):
        sd.volume_row(maps, fg, ["foci"] * 5)
