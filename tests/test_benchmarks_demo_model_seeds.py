"""Checks of ``benchmarks/demo_model_seeds.py``: the demo's detector, and its table."""

import numpy as np
import pytest
from _benchmarks import load_benchmark

from disyre_sk import CombinedDetector
from disyre_sk._demo import QUICK


@pytest.fixture(scope="module")
def dms():
    return load_benchmark("demo_model_seeds")


def test_the_model_is_the_demos_with_only_its_seed_changed(dms):
    model = dms.detector(7)
    # The demo's three networks at the demo's weights.
    assert isinstance(model, CombinedDetector)
    (_, bright), (_, dark), (_, foci) = model.detectors
    weights = [1.0, QUICK["dark"]["weight"], QUICK["specialist"]["weight"]]
    assert model.weights == weights
    params = bright.get_params()
    assert params["random_state"] == 7 and params["device"] == "cpu"
    for name, value in QUICK["detector"].items():
        if name != "corruption":  # split by sign: brightening only
            assert params[name] == value, name
    assert bright.corruption.p_bright == 1.0 and dark.corruption.p_bright == 0.0
    assert dark.random_state == 7 and dark.n_steps == QUICK["dark"]["n_steps"]
    assert foci.random_state == 7
    assert foci.patch_size == QUICK["specialist"]["patch_size"]
    assert foci.n_steps == QUICK["specialist"]["n_steps"]


def _row(test_set, method, ap, model_seed=None):
    row = {
        "test set": test_set,
        "method": method,
        "pixel_ap": ap,
        "slice_auroc": 0.7,
        "volume_auroc": 0.8,
        "tumour": 0.5,
        "stroke": None,
        "foci": 0.01,
        "cavity": 0.4,
        "infarct": None,
    }
    if model_seed is not None:
        row.update({"model seed": model_seed, "fit_s": 190.4, "stroke": 0.3})
    return row


def test_report_spreads_disyre_over_model_seeds_per_test_set(dms):
    rows = [
        _row("demo's, 12", "intensity (bright)", 0.05),
        _row("new, 36", "intensity (bright)", 0.02),
        _row("demo's, 12", "DISYRE", 0.5, 0),
        _row("new, 36", "DISYRE", 0.1, 0),
        _row("demo's, 12", "DISYRE", 0.3, 1),
        _row("new, 36", "DISYRE", 0.4, 1),
    ]
    text = dms.report(rows)
    # min / mean / max over the two networks, baselines left out of the spread.
    assert "| demo's, 12 | DISYRE | 2 | 0.300 / 0.400 / 0.500 |" in text
    assert "| new, 36 | DISYRE | 2 | 0.100 / 0.250 / 0.400 |" in text
    assert "mean of two models" not in text  # no pairs asked for, no pair rows
    # Every row listed; baselines carry no model seed or fit time; a missing family is a
    # dash, a family no row holds gets no column.
    row = "| new, 36 | 1 | DISYRE | 0.400 | 0.700 | 0.800 | 0.500 | 0.300 | 0.010 | 0.400 | 190 |"
    assert row in text
    assert "| demo's, 12 |  | intensity (bright) | 0.050 | 0.700 | 0.800 | 0.500 | — |" in text
    assert "infarct" not in text


def test_pairs_average_the_last_two_models_maps(dms):
    from _benchmarks import TINY_DEMO_META
    from _demo_models import demo_cohort

    cohort = demo_cohort(TINY_DEMO_META)
    sets = {"demo's, 3": cohort}
    rng = np.random.default_rng(0)
    shape = cohort.X_test.shape
    maps = {s: {"demo's, 3": rng.random(shape).astype(np.float32)} for s in (4, 5, 6)}
    rows = dms.pair_rows([4, 5, 6], maps, sets, {4: 1.0, 5: 2.0, 6: 4.0})
    (row,) = rows
    assert row["model seed"] == "5+6" and row["method"] == dms.PAIR and row["fit_s"] == 6.0
    expected = dms.evaluate((maps[5]["demo's, 3"] + maps[6]["demo's, 3"]) / 2, cohort)
    assert row["pixel_ap"] == expected["pixel_ap"]
    single = dms.evaluate(maps[6]["demo's, 3"], cohort)
    assert row["pixel_ap"] != single["pixel_ap"]  # an average, not the last model alone
    text = dms.report([*rows, {**row, "method": "DISYRE", "model seed": 5}])
    assert f"| demo's, 3 | {dms.PAIR} | 1 |" in text
