"""Checks of ``benchmarks/demo.py``'s tables on hand-built ``metrics.json`` contents."""

import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def demo():
    return load_benchmark("demo")


def _row(method, intervals=None):
    row = dict(
        method=method,
        pixel_ap=0.5,
        best_dice=0.4,
        dice_at_1pct_fpr=0.3,
        slice_auroc=0.8,
        volume_auroc=0.9375,
    )
    if intervals:
        row["auroc_intervals"] = intervals
    return row


def test_per_seed_rows_give_the_intervals_the_demo_recorded(demo):
    intervals = {"slice_auroc": [0.7, 0.9], "volume_auroc": [0.25, 1.0]}
    runs = {
        0: {"results": [_row("DISYRE", intervals), _row("intensity")]},
        1: {"results": [_row("DISYRE")]},  # a metrics.json written before intervals
    }
    rows = demo.per_seed_rows(runs)
    assert rows[0] == [
        0,
        "DISYRE",
        "0.500",
        "0.400",
        "0.300",
        "0.800 (0.700-0.900)",
        "0.938 (0.250-1.000)",
    ]
    assert rows[1][-2:] == ["0.800", "0.938"]
    assert rows[2][0] == 1 and rows[2][-1] == "0.938"


def test_the_note_says_how_the_intervals_were_drawn(demo):
    m = {"bootstrap": {"n_resamples": 1000, "confidence": 0.95, "resampled": "test volumes"}}
    assert demo.interval_note(m) == (
        " Per seed, slice and volume AUROC carry the demo's 95% bootstrap interval "
        "(1000 resamples of the test volumes)."
    )
    assert demo.interval_note({}) == ""
