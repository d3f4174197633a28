"""Checks of ``benchmarks/lesion_response.py`` on hand-built maps."""

import numpy as np
import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def lr():
    return load_benchmark("lesion_response")


def _set():
    """Two healthy volumes and one stroke volume of 1 x 10 x 10 voxels, brain everywhere
    but the first row; the stroke covers 10 voxels: 2 in the eroded rim, 4 the network
    answers, 4 it does not."""
    fg = np.ones((3, 1, 10, 10), dtype=bool)
    fg[:, :, 0] = False
    masks = np.zeros_like(fg)
    masks[2, 0, 5, :] = True
    plain = np.where(fg, 1.0, 0.0)
    plain[0, 0, 9, 9] = 2.0  # one healthy outlier per volume sets q99 between 1 and 2
    plain[1, 0, 9, 9] = 2.0
    plain[2, 0, 5, :2] = 0.0  # eroded rim
    plain[2, 0, 5, 2:6] = 5.0  # answered
    final = plain.copy()
    final[2, 0, 5, 6:8] = 0.0  # hidden by the last steps though the plain map is not 0
    return plain, final, fg, masks, ["healthy", "healthy", "stroke"]


def test_family_rows_attribute_each_lesion_voxel(lr):
    (row,) = lr.family_rows(*_set())
    assert row["family"] == "stroke"
    assert row["volumes"] == 1 and row["lesion_voxels"] == 10
    assert row["rim"] == pytest.approx(0.2)
    assert row["plain_hot"] == pytest.approx(0.4)
    assert row["final_hot"] == pytest.approx(0.4)
    assert row["hidden"] == pytest.approx(0.2)
    # Lesion values 0, 0, 5 x 4, 1 x 4 (plain): median 1, the healthy median is 1.
    assert row["plain_ratio"] == pytest.approx(1.0)
    # Final map of the stroke volume: 4 lesion voxels at 5, then 2 lesion and 80 healthy
    # voxels tied at 1, then 4 lesion and 0 healthy at 0 (rim and hidden).
    assert row["pixel_ap"] == pytest.approx(0.4 * 1 + 0.2 * 6 / 86 + 0.4 * 10 / 90)


def test_a_lesion_the_final_map_lights_counts_only_there(lr):
    plain, final, fg, masks, fams = _set()
    final[2, 0, 5, 6:] = 9.0  # the last steps raise what the network left flat
    (row,) = lr.family_rows(plain, final, fg, masks, fams)
    assert row["plain_hot"] == pytest.approx(0.4)
    assert row["final_hot"] == pytest.approx(0.8)
    assert row["hidden"] == 0.0


def test_family_rows_need_healthy_volumes(lr):
    plain, final, fg, masks, _ = _set()
    with pytest.raises(ValueError, match="healthy"):
        lr.family_rows(plain, final, fg, masks, ["stroke"] * 3)


def test_report_lists_every_row_by_family(lr):
    (row,) = lr.family_rows(*_set())
    rows = [
        {"seed": 1, "test set": "new, 36", **row},
        {"seed": 0, "test set": "new, 36", **dict(row, family="tumour", plain_ratio=None)},
    ]
    text = lr.report(rows)
    assert "Seeds [0, 1]" in text
    assert "| 0 | new, 36 | tumour | 1 | 10 | 20% | 40% | 40% | 20% | — |" in text
    assert "| 1 | new, 36 | stroke | 1 | 10 | 20% | 40% | 40% | 20% | 1.00 |" in text
    # Families in the cohort's order: tumour before stroke.
    assert text.index("| tumour |") < text.index("| stroke |")
