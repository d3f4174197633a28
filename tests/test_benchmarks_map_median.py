"""Checks of ``benchmarks/map_median.py``'s table on hand-built rows."""

import sys

import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def mm():
    return load_benchmark("map_median")


def _row(seed, test_set, size, ap, slice_auroc):
    return {
        "seed": seed,
        "test set": test_set,
        "map_median": size,
        "pixel_ap": ap,
        "slice_auroc": slice_auroc,
        "volume_auroc": 0.7,
        "tumour": 0.5,
        "stroke": None,
        "foci": 0.01,
        "cavity": None,
        "infarct": None,
    }


def test_report_counts_the_seeds_a_size_lifts_above_the_first(mm):
    rows = [
        dict(_row(0, "new, 36", 0, 0.10, 0.60), stroke=0.2),
        _row(0, "new, 36", 3, 0.12, 0.65),
        _row(1, "new, 36", 0, 0.40, 0.70),
        _row(1, "new, 36", 3, 0.38, 0.72),
    ]
    text = mm.report(rows, [0, 3])
    assert "| new, 36 | 0 | 0.100 / 0.250 / 0.400 | 0.600 / 0.650 / 0.700 |" in text
    assert (
        "| new, 36 | 3 | 0.120 / 0.250 / 0.380 (1 of 2 up) | 0.650 / 0.685 / 0.720 (2 of 2 up) |"
        in (text)
    )
    # Volume AUROC did not move: no seed counts as up.
    assert "0.700 / 0.700 / 0.700 (0 of 2 up)" in text
    # Per seed: every row, a missing family is a dash, an absent one has no column.
    assert "| 1 | new, 36 | 3 | 0.380 | 0.720 | 0.700 | 0.500 | — | 0.010 |" in text
    assert "cavity" not in text and "infarct" not in text


def test_evaluation_sets_are_the_demos_and_the_larger_draw(mm, monkeypatch):
    calls = []
    # The cohorts are built by the shared demo_cohort of _demo_models.
    demo_models = sys.modules["_demo_models"]
    monkeypatch.setattr(demo_models, "make_brain_cohort", lambda **kw: calls.append(kw) or kw)
    meta = {
        "settings": {"random_state": 2},
        "cohort": {
            "n_healthy": 16,
            "n_test": 12,
            "voxel_size": 3.0,
            "contrast": "t2",
            "train_bases": ["mni", "itk"],
            "test_bases": ["colin"],
        },
    }
    sets = mm.evaluation_sets(meta, 36)
    assert list(sets) == ["demo's, 12", "new, 36"]
    demo, larger = calls
    assert demo["random_state"] == 2 and demo["n_healthy"] == 16 and demo["n_test"] == 12
    assert larger["random_state"] == 2002 and larger["n_healthy"] == 0 and larger["n_test"] == 36
    assert demo["train_bases"] == ("mni", "itk") and larger["test_bases"] == ("colin",)
