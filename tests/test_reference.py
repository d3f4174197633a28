"""Location standardisation against healthy maps, checked against direct numpy."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from disyre_sk._engine.reference import location_reference, reference_sums, standardize


@pytest.fixture
def healthy_maps():
    rng = np.random.default_rng(0)
    centre = rng.uniform(0.5, 2.0, (6, 7))
    spread = rng.uniform(0.1, 0.4, (6, 7))
    return centre + spread * rng.standard_normal((400, 6, 7))


def test_sums_add_over_shards(healthy_maps):
    fg = healthy_maps > 1.0
    whole = reference_sums(healthy_maps, fg)
    parts = reference_sums(healthy_maps[:150], fg[:150]) + reference_sums(
        healthy_maps[150:], fg[150:]
    )
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    # Outside the foreground nothing is counted, whatever the map holds there.
    assert whole[2].tolist() == fg.sum(0).tolist()
    np.testing.assert_allclose(whole[0], np.where(fg, healthy_maps, 0).sum(0), rtol=1e-12)


def test_without_pooling_mean_and_spread_are_the_per_voxel_ones(healthy_maps):
    fg = np.ones(healthy_maps.shape, bool)
    mean, scale = location_reference(reference_sums(healthy_maps, fg), sigma=0)
    n = len(healthy_maps)
    # The count carries 1e-3 against 0 / 0: a relative bias of 1e-3 / n on the mean.
    np.testing.assert_allclose(mean, healthy_maps.mean(0), rtol=1e-5)
    sd = healthy_maps.std(0)
    floor = np.median(sd)
    # The 1e-3 in the count shifts each variance by about 2.5e-6 * E[x^2] <= 2e-5 here,
    # i.e. the spread by at most 2e-5 / (2 * min sd) < 1e-4.
    np.testing.assert_allclose(scale - floor, sd, atol=1e-4)
    np.testing.assert_allclose(floor, np.median(scale - floor), rtol=1e-3)
    assert mean.dtype == scale.dtype == np.float32 and n == 400


def test_pooling_is_a_gaussian_weighted_average_of_neighbours():
    maps = np.zeros((3, 9, 9))
    maps[:, 4, 4] = 2.0
    fg = np.ones(maps.shape, bool)
    mean, _ = location_reference(reference_sums(maps, fg), sigma=1.0)
    delta = np.zeros((9, 9))
    delta[4, 4] = 2.0
    count = ndi.gaussian_filter(np.ones((9, 9)), 1.0)
    expected = ndi.gaussian_filter(delta, 1.0) / (count + 1e-3 / 3)
    np.testing.assert_allclose(mean, expected, rtol=1e-5)
    assert mean[4, 5] > 0 and mean[4, 4] < 2.0


def test_uncovered_voxels_keep_the_floor_and_zero_maps_stay_finite():
    maps = np.zeros((4, 5, 5))
    fg = np.zeros(maps.shape, bool)
    fg[:, 1:4, 1:4] = True
    mean, scale = location_reference(reference_sums(maps, fg), sigma=0)
    # All-zero healthy maps: no spread anywhere, the floor keeps the scale positive.
    assert np.isfinite(scale).all() and (scale > 0).all()
    assert mean.max() == 0.0
    z = standardize(np.full((1, 5, 5), 1e-3), np.ones((1, 5, 5), bool), mean, scale)
    assert np.isfinite(z).all() and z.min() > 0


def test_standardize_counts_only_excess_inside_the_foreground():
    mean = np.array([[1.0, 1.0, 1.0]])
    scale = np.array([[0.5, 0.5, 2.0]])
    maps = np.array([[[2.5, 0.2, 5.0]], [[1.0, 9.0, 3.0]]])
    fg = np.array([[[True, True, True]], [[True, False, True]]])
    z = standardize(maps, fg, mean, scale)
    assert z.tolist() == [[[3.0, 0.0, 2.0]], [[0.0, 0.0, 1.0]]]
    assert z.dtype == np.float32
