"""``benchmarks/fast_inference.py``: the earlier one-box-for-all-slices mapping, rebuilt
from public parameters, behaves as it did."""

import numpy as np
import pytest
from _benchmarks import load_benchmark

from disyre_sk import DISYREDetector


@pytest.fixture(scope="module")
def fast():
    return load_benchmark("fast_inference")


@pytest.fixture(scope="module")
def volumes():
    rng = np.random.default_rng(0)
    x = np.zeros((3, 6, 24, 24), np.float32)
    x[:, :, 4:20, 5:19] = rng.uniform(0.2, 0.8, (3, 6, 16, 14))
    return x


@pytest.fixture(scope="module")
def det(volumes):
    return DISYREDetector(
        patch_size=16,
        widths=(8, 16),
        n_steps=2,
        batch_size=2,
        window_size="slice",
        validation_fraction=0,
        random_state=0,
    ).fit(volumes)


def test_one_brain_box_for_all_slices_is_the_whole_slice_map(fast, det, volumes):
    # Every slice's brain has the same box: the union box is each slice's own.
    np.testing.assert_array_equal(
        fast.union_box_maps(det, volumes[:1]), det.decision_map(volumes[:1])
    )
    assert det.background == 0.0  # restored


def test_a_small_slice_sees_the_union_box(fast, det, volumes):
    vol = volumes[:1].copy()
    vol[0, 0] = 0
    vol[0, 0, 10:14, 8:12] = 0.5  # a slice whose brain is far smaller than the others'
    vol[0, 1] = 0  # and one without brain
    own, union = det.decision_map(vol), fast.union_box_maps(det, vol)
    brain = vol != 0
    assert not union[~brain].any() and not union[0, 1].any()
    # Other slices are mapped alike; the small one's input holds the union box, so its
    # map changes.
    np.testing.assert_array_equal(union[0, 2:], own[0, 2:])
    assert not np.array_equal(union[0, 0], own[0, 0])
