import numpy as np
import pytest
from scipy import ndimage as ndi

from disyre_sk._engine.symmetry import (
    N_QUANTILES,
    asymmetry,
    mirror_shift,
    reference_quantiles,
    symmetry,
)


def _symmetric(shape, seed=0, noise=0.0):
    """A mirror-symmetric smooth 'brain' (left-right along the last axis), background 0."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), 2)
    field = 0.5 + 0.15 * field / field.std()
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    inside = sum((g / (0.42 * n)) ** 2 for g, n in zip(grids, shape)) <= 1
    image = np.where(inside, (field + field[..., ::-1]) / 2, 0.0)
    if noise:
        image = np.where(inside, image + rng.normal(0, noise, shape), 0.0)
    return image.astype(np.float32)


def _moved(image, k):
    out = np.zeros_like(image)
    if k >= 0:
        out[..., k:] = image[..., : image.shape[-1] - k]
    else:
        out[..., :k] = image[..., -k:]
    return out


@pytest.mark.parametrize("shape", [(32, 32), (8, 24, 24)])
@pytest.mark.parametrize("k", [0, 3, -2])
def test_mirror_shift_finds_the_midline_of_a_head_off_centre(shape, k):
    image = _moved(_symmetric(shape, seed=1), k)
    # Moved by k, the head's midline lies at (W - 1) / 2 + k: the mirror moves by 2k.
    assert mirror_shift(image) == 2 * k


def test_asymmetry_is_zero_on_a_mirror_image_and_high_on_one_side_only():
    image = _symmetric((32, 32), seed=2)
    np.testing.assert_allclose(asymmetry(image), 0.0, atol=1e-6)
    # Off the centre, the mirror is found again: still symmetric.
    assert float(asymmetry(_moved(image, 3)).max()) < 1e-6
    lesion = image.copy()
    lesion[12:17, 6:11] = 1.0  # bright, on one side
    a = asymmetry(lesion)
    assert a[14, 8] > 0.2
    assert a[14, 8] > 10 * np.median(a[image > 0])


def test_asymmetry_forgives_one_voxel_of_misalignment_not_more():
    image = _symmetric((32, 32), seed=3)
    tilted = image.copy()
    tilted[:, 16:] = np.roll(image[:, 16:], 1, axis=0)  # one half one row lower
    loose = asymmetry(tilted, shift=0)
    tilted[:, 16:] = np.roll(image[:, 16:], 3, axis=0)  # three rows lower
    far = asymmetry(tilted, shift=0)
    inside = image > 0
    assert np.median(loose[inside]) < 0.5 * np.median(far[inside])


def test_reference_quantiles_are_101_non_decreasing_values_from_the_foreground():
    healthy = np.stack([_symmetric((24, 24), seed=s, noise=0.03) for s in range(3)])
    q = reference_quantiles(healthy, healthy > 0)
    assert q.shape == (N_QUANTILES,) and np.all(np.diff(q) >= 0) and q[0] >= 0
    pooled = np.concatenate([asymmetry(x)[x > 0] for x in healthy])
    np.testing.assert_allclose(q[[0, 50, 100]], np.quantile(pooled, [0, 0.5, 1]), rtol=1e-6)
    assert reference_quantiles(healthy[:0], healthy[:0] > 0).shape == (N_QUANTILES,)


def test_symmetry_is_the_share_of_healthy_voxels_at_least_as_asymmetric():
    healthy = np.stack([_symmetric((24, 24), seed=s, noise=0.03) for s in range(4)])
    q = reference_quantiles(healthy, healthy > 0)
    fresh = _symmetric((24, 24), seed=9, noise=0.03)
    s = symmetry(fresh, q)
    assert s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1
    # A new healthy scan: about half its voxels above the healthy median, half below.
    assert 0.35 < np.median(s[fresh > 0]) < 0.65
    # By the definition: the share of the pooled healthy values >= this voxel's.
    a = asymmetry(fresh)
    pooled = np.sort(np.concatenate([asymmetry(x)[x > 0] for x in healthy]))
    i = np.unravel_index(np.argmax(np.where(fresh > 0, a, 0)), a.shape)
    share = 1 - np.searchsorted(pooled, a[i]) / pooled.size
    assert abs(float(s[i]) - share) < 0.02
    lesion = fresh.copy()
    lesion[8:13, 4:9] = 1.0
    assert symmetry(lesion, q)[10, 6] == 0.0
    # The background mirrors itself exactly: as symmetric as anything healthy.
    assert symmetry(fresh, q)[0, 0] == 1.0


def test_reference_quantiles_of_large_scans_come_from_an_even_share(monkeypatch):
    import disyre_sk._engine.symmetry as sym

    healthy = np.stack([_symmetric((32, 32), seed=s, noise=0.03) for s in range(3)])
    full = reference_quantiles(healthy, healthy > 0)
    monkeypatch.setattr(sym, "_VALUES_PER_SCAN", 100)  # a stride of several voxels
    share = sym.reference_quantiles(healthy, healthy > 0)
    assert not np.array_equal(share, full)
    # An even stride through each scan keeps the distribution, not one corner of it.
    spread = full[95] - full[5]
    np.testing.assert_allclose(share[[10, 25, 50, 75, 90]], full[[10, 25, 50, 75, 90]],
                               atol=0.15 * spread)  # fmt: skip
