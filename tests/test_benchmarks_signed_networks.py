"""``benchmarks/signed_networks.py``: one DAG network per sign against one for both."""

import numpy as np
import pytest
from _benchmarks import TINY_DEMO_META, TINY_DEMO_SETTINGS, contrast_row, load_benchmark

from disyre_sk import CombinedDetector, DISYREDetector
from disyre_sk.corruption import DAGCorruption


@pytest.fixture(scope="module")
def sn():
    return load_benchmark("signed_networks")


def _tiny(seed, p_bright=None):
    kw = dict(TINY_DEMO_SETTINGS, random_state=seed)
    if p_bright is not None:
        kw["corruption"] = DAGCorruption(p_bright=p_bright)
    return DISYREDetector(**kw)


def _tiny_model(seed, reference_fraction, combination="max"):
    members = [("bright", _tiny(seed, 1.0)), ("dark", _tiny(seed, 0.0)), ("foci", _tiny(seed))]
    return CombinedDetector(members, weights=[1.0, 1.0, 0.5], combination=combination)


def test_rows_score_every_arm_on_both_test_sets(sn, monkeypatch):
    cohorts = []
    real_cohort = sn.make_brain_cohort

    def cohort_spy(**kw):
        cohorts.append(kw)
        return real_cohort(**kw)

    monkeypatch.setattr(sn, "make_brain_cohort", cohort_spy)
    cohort = dict(TINY_DEMO_META["cohort"], n_healthy=3, n_test=3)
    rows = sn.rows_of(2, "flair", 2, cohort_args=cohort, model=_tiny_model, first=_tiny)
    assert [c["contrast"] for c in cohorts] == ["flair", "flair"]
    assert [c["random_state"] for c in cohorts] == [2, 2002]
    methods = [sn.PREVIOUS, sn.SIGNED, sn.DEMO, "intensity (bright)", "intensity |x - median|"]
    assert [(r["test set"], r["method"]) for r in rows] == [
        (s, m) for s in ("unseen brain, 3", "new, 2") for m in methods
    ]
    assert rows[0]["fit_s"] > 0 and rows[2]["fit_s"] > 0 and "fit_s" not in rows[1]
    assert np.isfinite([r["pixel_ap"] for r in rows]).all()
    text = sn.report(rows)
    assert f"| flair | new, 2 | {sn.DEMO} | 1 |" in text
    assert "| flair | unseen brain, 3 | 2 |" in text  # one comparison row per seed


@pytest.mark.parametrize("combination", ["max", "sum"])
def test_the_arms_are_joined_from_the_members_maps(sn, monkeypatch, combination):
    # The demo's arm is the combined model's own map, however it joins its members'; the
    # others are sums of its members' maps and of the previous recipe's network's.
    cohort = dict(TINY_DEMO_META["cohort"], n_healthy=3, n_test=3)
    seen = {}
    real_evaluate = sn.evaluate

    def spy(maps, test):
        seen.setdefault(len(seen), maps)
        return real_evaluate(maps, test)

    fitted = []

    def model(seed, rf):
        m = _tiny_model(seed, rf, combination)
        fitted.append(m)
        return m

    firsts = []

    def first(seed):
        d = _tiny(seed)
        firsts.append(d)
        return d

    monkeypatch.setattr(sn, "evaluate", spy)
    sn.rows_of(0, "t2", 2, cohort_args=cohort, model=model, first=first)
    test = sn.make_brain_cohort(**dict(cohort, contrast="t2"), random_state=0)
    np.testing.assert_allclose(seen[2], fitted[0].decision_map(test.X_test), rtol=1e-5, atol=1e-5)
    bright, dark, foci = (d.decision_map(test.X_test) for _, d in fitted[0].detectors_)
    np.testing.assert_allclose(seen[1], bright + dark, rtol=1e-5, atol=1e-5)
    previous = firsts[0].decision_map(test.X_test) + sn.PREVIOUS_FOCI_WEIGHT * foci
    np.testing.assert_allclose(seen[0], previous, rtol=1e-5, atol=1e-5)


def test_a_model_of_other_members_is_refused(sn):
    cohort = dict(TINY_DEMO_META["cohort"], n_healthy=3, n_test=3)

    def two(seed, rf):
        return CombinedDetector([("shapes", _tiny(seed)), ("foci", _tiny(seed))])

    with pytest.raises(RuntimeError, match="bright, dark, foci"):
        sn.rows_of(0, "t2", 2, cohort_args=cohort, model=two, first=_tiny)


def test_report_states_what_the_split_won_and_lost(sn):
    rows = [contrast_row(sn.PREVIOUS, 0.05, 0.05, 0.02), contrast_row(sn.DEMO, 0.08, 0.03, 0.04)]
    text = sn.report(rows)
    cells = "0.050 → 0.080 | 0.600 → 0.600 | 0.500 → 0.500 | stroke | tumour"
    assert f"| t1 | new, 36 | 0 | {cells} |" in text
