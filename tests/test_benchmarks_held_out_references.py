"""``benchmarks/held_out_references.py``: references on held-out healthy scans."""

import numpy as np
import pytest
from _benchmarks import TINY_DEMO_META, TINY_DEMO_SETTINGS, load_benchmark

from disyre_sk import CombinedDetector, DISYREDetector


@pytest.fixture(scope="module")
def hr():
    return load_benchmark("held_out_references")


def _tiny_pair(seed, reference_fraction):
    tiny = DISYREDetector(
        **dict(TINY_DEMO_SETTINGS, reference_fraction=reference_fraction, random_state=seed)
    )
    return CombinedDetector([("shapes", tiny), ("foci", tiny)])


def test_three_arms_differ_in_references_or_training_data(hr, monkeypatch):
    fits = []
    real = CombinedDetector.fit

    def spy(self, X, y=None, **kw):
        out = real(self, X, y, **kw)
        fits.append((self.detectors_[0][1].reference_fraction, len(X), out))
        return out

    monkeypatch.setattr(CombinedDetector, "fit", spy)
    cohort = dict(TINY_DEMO_META["cohort"], n_healthy=4, n_test=3)
    rows = hr.rows_of(1, n_test=2, cohort_args=cohort, pair=_tiny_pair)
    assert [(r["test set"], r["references"]) for r in rows] == [
        (s, arm) for arm in hr.ARMS for s in ("unseen brain, 3", "new, 2")
    ]
    # Two trainings on all 4 subjects: half held out for the references, then none.
    assert [(f, n) for f, n, _ in fits] == [(0.5, 4), (None, 4)]
    held = fits[0][2].detectors_[0][1].history_["reference_samples"]
    assert len(held) == 2
    # The first arm is the third arm's network with references from its training half:
    # the same weights, other references, so other maps.
    assert rows[0]["pixel_ap"] != rows[4]["pixel_ap"]
    assert all(0 <= r["slice_auroc"] <= 1 and r["fit_s"] > 0 for r in rows)
    text = hr.report(rows, list(hr.ARMS), key="references")
    assert "| new, 2 | 16 trained, references on the other 16 |" in text
    assert np.isfinite([r["pixel_ap"] for r in rows]).all()


def test_fit_seconds_name_both_fits_of_each_seed_once(hr):
    rows = [
        {"seed": 0, "test set": t, "references": arm, "fit_s": s}
        for arm, s in zip(hr.ARMS, (150.4, 160.0, 150.4))
        for t in ("unseen brain, 12", "new, 36")
    ]
    assert hr.fit_seconds(rows) == (f"seed 0 {hr.ARMS[1]}: 160, seed 0 {hr.ARMS[2]}: 150")
