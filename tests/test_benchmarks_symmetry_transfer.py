"""``benchmarks/symmetry_transfer.py``: the symmetry prior on other brains and contrasts."""

import pytest
from _benchmarks import TINY_DEMO_SETTINGS, load_benchmark

from disyre_sk import CombinedDetector, DISYREDetector
from disyre_sk.datasets import make_brain_cohort


@pytest.fixture(scope="module")
def st():
    return load_benchmark("symmetry_transfer")


def test_split_cohort_holds_out_the_named_brain_in_the_named_contrast(st):
    cohort = st.split_cohort("itk", "t1", 2, seed=0)
    assert set(cohort.bases_train) == {"mni", "colin"} and set(cohort.bases_test) == {"itk"}
    assert cohort.contrast == "t1" and len(cohort.X_train) == 16 and len(cohort.X_test) == 2


def test_rows_train_once_and_score_every_weight(st, monkeypatch):
    fits = []

    def tiny_cohort(held, contrast, n_test, seed):
        return make_brain_cohort(
            n_healthy=3, n_test=3, voxel_size=8.0, contrast=contrast,
            random_state=seed, **st.cohort_bases(held),
        )  # fmt: skip

    def tiny_pair(seed, reference_fraction):
        assert reference_fraction is None  # references on the training scans, as the demo
        det = DISYREDetector(**{**TINY_DEMO_SETTINGS, "window_size": "slice"})
        pair = CombinedDetector([("shapes", det), ("foci", det)])
        real_fit = pair.fit

        def fit(X):
            fits.append(len(X))
            return real_fit(X)

        pair.fit = fit
        return pair

    monkeypatch.setattr(st, "split_cohort", tiny_cohort)
    rows = st.rows_of(1, "itk:t1", 3, [0.0, 1.0], pair=tiny_pair)
    assert fits == [3]  # one training for both weights
    assert [(r["test set"], r["map_symmetry"]) for r in rows] == [
        ("itk t1, 3", 0.0),
        ("itk t1, 3", 1.0),
    ]
    assert rows[0]["pixel_ap"] != rows[1]["pixel_ap"]  # only the prior differs
    assert all(r["seconds"] > 0 and 0 <= r["slice_auroc"] <= 1 for r in rows)
