"""``benchmarks/demo_contrasts.py``: the demo's recipe trained and mapped on T1 and FLAIR."""

import numpy as np
import pytest
from _benchmarks import TINY_DEMO_META, TINY_DEMO_SETTINGS, contrast_row, load_benchmark

from disyre_sk import CombinedDetector, DISYREDetector


@pytest.fixture(scope="module")
def dc():
    return load_benchmark("demo_contrasts")


def _tiny_pair(seed, reference_fraction):
    tiny = DISYREDetector(
        **dict(TINY_DEMO_SETTINGS, reference_fraction=reference_fraction, random_state=seed)
    )
    return CombinedDetector([("shapes", tiny), ("foci", tiny)], weights=[1.0, 0.5])


def test_rows_train_on_the_contrast_asked_and_score_every_method(dc, monkeypatch):
    cohorts, specialists = [], []
    real_cohort, real_specialist = dc.make_brain_cohort, dc.small_anomaly_specialist

    def cohort_spy(**kw):
        cohorts.append(kw)
        return real_cohort(**kw)

    def specialist_spy(det, **kw):
        specialists.append(kw)
        return real_specialist(det, **kw)

    monkeypatch.setattr(dc, "make_brain_cohort", cohort_spy)
    monkeypatch.setattr(dc, "small_anomaly_specialist", specialist_spy)
    cohort = dict(TINY_DEMO_META["cohort"], n_healthy=3, n_test=3)
    rows = dc.rows_of(
        2, "t1", 2, cohort_args=cohort, pair=_tiny_pair, specialist=dict(patch_size=16, n_steps=2)
    )
    assert [c["contrast"] for c in cohorts] == ["t1", "t1"]
    assert [c["random_state"] for c in cohorts] == [2, 2002]
    assert specialists == [dict(patch_size=16, n_steps=2, p_bright=0.5)]
    methods = [dc.DEMO, dc.FIRST, dc.EITHER, "intensity (bright)", "intensity |x - median|"]
    assert [(r["test set"], r["method"]) for r in rows] == [
        (s, m) for s in ("unseen brain, 3", "new, 2") for m in methods
    ]
    assert all(r["contrast"] == "t1" and r["seed"] == 2 for r in rows)
    assert rows[0]["fit_s"] > 0 and rows[0]["fit_either_s"] > 0 and "fit_s" not in rows[1]
    assert np.isfinite([r["pixel_ap"] for r in rows]).all()
    text = dc.report(rows)
    assert f"| t1 | new, 2 | {dc.DEMO} | 1 |" in text
    assert "| t1 | unseen brain, 3 | 2 |" in text  # the ratio table, one row per seed
    assert "seed 2 t1 " in text


def test_report_compares_the_demo_with_the_stronger_threshold_per_family(dc):
    rows = [
        dict(contrast_row(dc.DEMO, 0.06, 0.05, 0.02), fit_s=150.0, fit_either_s=40.0),
        contrast_row("intensity (bright)", 0.01, 0.03, 0.004),
        contrast_row("intensity |x - median|", 0.02, 0.02, 0.03),
    ]
    text = dc.report(rows)
    # 0.06 against the stronger pooled threshold (0.02); ahead on tumours only.
    assert "| t1 | new, 36 | 0 | 3.0x | 1 of 2: tumour |" in text
    assert "seed 0 t1 40" in text
