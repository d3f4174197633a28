"""``benchmarks/bias_field.py``: the demo's maps on uncorrected and bias-corrected scans."""

import numpy as np
import pytest
from _benchmarks import TINY_DEMO_META, TINY_DEMO_SETTINGS, load_benchmark, tiny_demo_folder

from disyre_sk import CombinedDetector, DISYREDetector


@pytest.fixture(scope="module")
def bf():
    return load_benchmark("bias_field")


def test_arms_change_the_bias_field_alone_and_retrain_on_corrected_scans(bf, tmp_path, monkeypatch):
    from _demo_models import demo_cohort

    cohort = tiny_demo_folder(tmp_path, window_size="slice")
    fitted = []

    def tiny_pair(seed, reference_fraction):
        assert reference_fraction is None
        tiny = DISYREDetector(**{**TINY_DEMO_SETTINGS, "random_state": seed})
        pair = CombinedDetector([("shapes", tiny), ("foci", tiny)])
        real = pair.fit

        def fit(X):
            fitted.append(np.asarray(X).copy())
            return real(X)

        pair.fit = fit
        return pair

    monkeypatch.setattr(bf, "demo_model", tiny_pair)
    rows = bf.rows_of(tmp_path, n_test=2)
    disyre = [(r["scans"], r["test set"]) for r in rows if r["method"] == "DISYRE"]
    assert disyre == [(arm, s) for arm in bf.ARMS for s in ("demo's, 3", "new, 2")]
    # The retrained arm trains once, on the corrected renderings of the demo's subjects.
    corrected = demo_cohort(TINY_DEMO_META, bias_field=0.0)
    assert len(fitted) == 1
    np.testing.assert_array_equal(fitted[0], corrected.X_train)
    assert not np.array_equal(corrected.X_train, cohort.X_train)

    def pick(scans, method, test_set="demo's, 3"):
        (row,) = [
            r for r in rows if (r["scans"], r["method"], r["test set"]) == (scans, method, test_set)
        ]
        return row

    # Same lesions, other intensities: the thresholds score the two renderings differently.
    bright = "intensity (bright)"
    assert (
        pick("uncorrected", bright)["pixel_ap"] != pick("corrected test scans", bright)["pixel_ap"]
    )
    assert not any(r["scans"] == "corrected throughout" and r["method"] != "DISYRE" for r in rows)
    assert all(r["seconds"] > 0 for r in rows if r["method"] == "DISYRE")
    text = bf.full_report(rows)
    assert "| demo's, 3 | corrected throughout |" in text and "of 1 up)" in text
    assert "| new, 2 | corrected | intensity (bright) |" in text
    assert "seed 1 corrected throughout: " in text


def test_no_retrain_keeps_the_two_mapping_arms(bf, tmp_path, monkeypatch):
    tiny_demo_folder(tmp_path, window_size="slice")
    monkeypatch.setattr(bf, "demo_model", lambda *a: pytest.fail("retrained"))
    rows = bf.rows_of(tmp_path, n_test=2, retrain=False)
    assert {r["scans"] for r in rows} == {"uncorrected", "corrected test scans"}
