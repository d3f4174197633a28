import numpy as np
import pytest
import torch
from torch import nn

from disyre_sk._data import foreground_boxes, union_box
from disyre_sk._engine.inference import (
    Restorer,
    erode_foreground,
    gaussian_window,
    padded_size,
    smooth_maps,
)


class Identity(nn.Module):
    def forward(self, x, severity):
        return x


class Flatten(nn.Module):
    """Restores every window to a constant: changes equal |x - c|."""

    def __init__(self, value=0.5):
        super().__init__()
        self.value = value
        self.seen = []

    def forward(self, x, severity):
        self.seen.append(severity.clone())
        return torch.full_like(x, self.value)


def _restorer(net, **kw):
    base = dict(
        patch_size=8,
        stride=4,
        severities=(0.25, 0.5),
        mode="ensemble",
        batch_size=7,
        device=torch.device("cpu"),
        precision="fp32",
    )
    return Restorer(net, **{**base, **kw})


def test_padded_size():
    assert padded_size(8, 8, 4) == 8
    assert padded_size(5, 8, 4) == 8
    assert padded_size(9, 8, 4) == 12
    assert padded_size(17, 8, 3) == 17


def test_foreground_boxes_and_their_union():
    fg = np.zeros((3, 10, 12), dtype=bool)
    fg[0, 2:5, 3:4] = True
    fg[1, 0, 11] = True
    fg[2, 4:10, 0:6] = True
    fg[2, 6, 6] = False  # holes do not change the box
    boxes = foreground_boxes(fg)
    np.testing.assert_array_equal(boxes, [[2, 5, 3, 4], [0, 1, 11, 12], [4, 10, 0, 6]])
    np.testing.assert_array_equal(union_box(boxes), [0, 10, 0, 12])


def test_gaussian_window_positive_and_peaked():
    w = gaussian_window(16)
    assert w.shape == (16, 16) and torch.all(w > 0)
    assert w[7, 7] == w.max() and w[0, 0] == w.min()


@pytest.mark.parametrize("mode", ["ensemble", "multistep"])
def test_identity_network_gives_zero_map(mode):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1, size=(3, 13, 21)).astype(np.float32)
    maps = _restorer(Identity(), mode=mode).maps(x, x > 0.3)
    assert maps.shape == x.shape
    np.testing.assert_allclose(maps, 0, atol=1e-6)


def test_ensemble_map_is_mean_abs_change_inside_foreground():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2, 19, 10)).astype(np.float32)
    fg = x > 0.2
    net = Flatten(0.5)
    maps = _restorer(net).maps(x, fg)
    # Gaussian fusion of constant restorations is the constant itself.
    np.testing.assert_allclose(maps[fg], np.abs(x - 0.5)[fg], atol=1e-5)
    assert np.all(maps[~fg] == 0)
    assert {round(float(s[0]), 2) for s in net.seen} == {0.25, 0.5}


def test_multistep_follows_cold_diffusion():
    x = np.full((1, 8, 8), 0.9, dtype=np.float32)
    maps = _restorer(Flatten(0.5), mode="multistep", severities=(0.5, 0.25)).maps(x, x > 0)
    # step 1 at 0.5: |0.9 - 0.5| = 0.4, x -> 0.5 + 0.5 * 0.4 = 0.7; step 2: |0.7 - 0.5| = 0.2.
    np.testing.assert_allclose(maps, 0.3, atol=1e-6)


def test_background_windows_are_skipped():
    x = np.zeros((1, 32, 32), dtype=np.float32)
    x[0, :8, :8] = 0.7
    net = Flatten()
    maps = _restorer(net, severities=(0.5,), batch_size=1000).maps(x, x > 0)
    assert sum(len(s) for s in net.seen) == 1  # one window over the 8×8 foreground box
    assert np.all(maps[0, 8:, :] == 0)


def test_empty_slices_give_zero_maps_without_network_calls():
    net = Flatten()
    maps = _restorer(net).maps(np.zeros((2, 8, 8), np.float32), np.zeros((2, 8, 8), bool))
    assert np.all(maps == 0) and not net.seen


class OutOfMemoryAbove(nn.Module):
    """Raises CUDA's out-of-memory error for batches larger than ``limit``."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.sizes = []

    def forward(self, x, severity):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.sizes.append(x.shape[0])
        return x * 0.5


def test_out_of_memory_retries_with_smaller_batches():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1, size=(4, 16, 16)).astype(np.float32)
    net = OutOfMemoryAbove(limit=5)
    restorer = _restorer(net, severities=(0.5,), batch_size=32)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        maps = restorer.maps(x, x > 0)
    assert max(net.sizes) <= 5 and sum(net.sizes) == 4 * 9
    reference = _restorer(OutOfMemoryAbove(limit=1000), severities=(0.5,)).maps(x, x > 0)
    np.testing.assert_allclose(maps, reference, atol=1e-6)


class ShapeRecorder(nn.Module):
    """A position-dependent 'restoration' that records the input sizes it sees."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x, severity):
        self.shapes.append(tuple(x.shape))
        return self.restore(x, severity)

    def restore(self, x, severity):
        return (x * (1 - severity[:, None, None, None]) + 0.1).clamp(0, 1)


def test_whole_slice_uses_one_rectangular_input_per_slice():
    rng = np.random.default_rng(0)
    x = np.zeros((3, 40, 50), dtype=np.float32)
    x[:, 5:30, 3:20] = rng.uniform(0.2, 1, size=(3, 25, 17))  # box 25 x 17
    fg = x > 0
    net = ShapeRecorder()
    r = _restorer(net, whole_slice=True, size_multiple=4, batch_size=64, severities=(0.3, 0.6))
    maps = r.maps(x, fg)
    # Box 25 x 17 -> at least the patch (8), padded up to multiples of 4: 28 x 20.
    assert set(net.shapes) == {(3, 1, 28, 20)}
    assert len(net.shapes) == 2  # one call per severity, all slices batched
    expected = np.mean([np.abs(x - np.clip(x * (1 - s) + 0.1, 0, 1)) for s in (0.3, 0.6)], 0)
    np.testing.assert_allclose(maps[fg], expected[fg], atol=1e-6)
    assert np.all(maps[~fg] == 0)


class ExtentDependent(ShapeRecorder):
    """Output depends on the whole input (its mean), as GroupNorm makes a UNet's do."""

    def restore(self, x, severity):
        return (x - 0.5 * x.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)


def _slices_of_different_boxes():
    rng = np.random.default_rng(3)
    x = np.zeros((4, 40, 50), dtype=np.float32)
    x[0, 5:30, 3:20] = rng.uniform(0.2, 1, size=(25, 17))  # box 25 x 17 -> 28 x 20
    x[1, 20:26, 30:47] = rng.uniform(0.2, 1, size=(6, 17))  # 6 x 17 -> 8 x 20
    x[3, 2:38, 1:49] = rng.uniform(0.2, 1, size=(36, 48))  # 36 x 48, a multiple already
    x[3, 10:20, 10:20] = 0  # a hole: background inside the box
    return x, x > 0  # slice 2 holds no foreground


@pytest.mark.parametrize("mode", ["ensemble", "multistep"])
def test_whole_slice_maps_each_slice_as_if_alone(mode):
    x, fg = _slices_of_different_boxes()
    kw = dict(whole_slice=True, size_multiple=4, batch_size=64, mode=mode)
    net = ExtentDependent()
    maps, restored, _ = _restorer(net, **kw).restorations(x, fg)
    # Each slice gets its own box, padded to the size step; the empty slice is skipped.
    assert {shape[2:] for shape in net.shapes} == {(28, 20), (8, 20), (36, 48)}
    assert all(shape[0] == 1 for shape in net.shapes)
    for z in range(len(x)):
        alone, alone_restored, _ = _restorer(ExtentDependent(), **kw).restorations(
            x[z : z + 1], fg[z : z + 1]
        )
        np.testing.assert_allclose(maps[z], alone[0], atol=1e-6)
        np.testing.assert_allclose(restored[:, z], alone_restored[:, 0], atol=1e-6)
    assert np.all(maps[~fg] == 0) and np.all(restored[:, ~fg] == 0)
    assert np.all(maps[2] == 0)
    # The extent matters to this network: mapped within another slice's box, a slice's
    # map would differ.
    padded = np.zeros((1, 40, 50), dtype=np.float32)
    padded[0, :36, :48] = 1e-3  # a faint frame widens slice 1's box to 36 x 48
    padded[0, 20:26, 30:47] = x[1, 20:26, 30:47]
    wide = _restorer(ExtentDependent(), **kw).maps(padded, padded > 0)
    assert not np.allclose(wide[0][fg[1]], maps[1][fg[1]], atol=1e-3)


def test_whole_slice_batches_slices_of_the_same_padded_size():
    x, fg = _slices_of_different_boxes()
    x = np.concatenate([x, x[:1], x[:1]])  # three slices with the 28 x 20 box
    fg = x > 0
    net = ShapeRecorder()
    _restorer(net, whole_slice=True, size_multiple=4, batch_size=64, severities=(0.5,)).maps(x, fg)
    assert sorted(net.shapes) == [(1, 1, 8, 20), (1, 1, 36, 48), (3, 1, 28, 20)]


def test_whole_slice_is_at_least_the_patch_and_matches_windows_for_pointwise_nets():
    x = np.zeros((2, 6, 6), dtype=np.float32)
    x[:, 1:5, 2:5] = 0.8
    net = ShapeRecorder()
    whole = _restorer(net, whole_slice=True, size_multiple=4, patch_size=8).maps(x, x > 0)
    assert set(net.shapes) == {(2, 1, 8, 8)}
    windowed = _restorer(ShapeRecorder(), patch_size=8, stride=4).maps(x, x > 0)
    # A pixel-wise network gives the same map whatever the tiling.
    np.testing.assert_allclose(whole, windowed, atol=1e-6)


def test_whole_slice_multistep():
    x = np.full((1, 8, 8), 0.9, dtype=np.float32)
    r = _restorer(Flatten(0.5), mode="multistep", severities=(0.5, 0.25), whole_slice=True)
    np.testing.assert_allclose(r.maps(x, x > 0), 0.3, atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_smooth_maps_is_scipys_normalised_convolution(sigma):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    m = rng.uniform(0, 1, size=(2, 23, 17)).astype(np.float32)
    fg = np.zeros_like(m, dtype=bool)
    fg[:, 3:20, 2:15] = True
    fg[1, 10:, :8] = False
    m = m * fg
    out = smooth_maps(torch.from_numpy(m)[:, None], torch.from_numpy(fg)[:, None].float(), sigma)
    out = out[:, 0].numpy()

    def blur(a):
        return np.stack([ndi.gaussian_filter(v, sigma, mode="constant", truncate=4.0) for v in a])

    expected = blur(m) / np.maximum(blur(fg.astype(np.float32)), 1e-6) * fg
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.all(out[~fg] == 0)
    # Smoothing lowers the pixel noise of the map.
    assert out[fg].std() < 0.6 * m[fg].std()


def test_smooth_maps_keeps_a_constant_map_up_to_the_brain_edge():
    fg = torch.zeros(1, 1, 16, 16)
    fg[..., 4:12, 2:9] = 1
    out = smooth_maps(0.3 * fg, fg, 2.0)
    torch.testing.assert_close(out[fg > 0], torch.full_like(out[fg > 0], 0.3))
    assert torch.all(out[fg == 0] == 0)
    assert torch.equal(smooth_maps(0.3 * fg, fg, 0.0), 0.3 * fg)


@pytest.mark.parametrize("whole_slice", [False, True])
def test_restorer_smoothing_is_applied_to_the_fused_map(whole_slice):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 1, size=(3, 16, 24)).astype(np.float32)
    fg = x > 0.3
    kw = dict(whole_slice=whole_slice, size_multiple=4)
    raw = _restorer(Flatten(0.5), **kw).maps(x, fg)
    smooth = _restorer(Flatten(0.5), smoothing=1.5, **kw).maps(x, fg)
    expected = smooth_maps(
        torch.from_numpy(raw)[:, None], torch.from_numpy(fg)[:, None].float(), 1.5
    )[:, 0].numpy()
    np.testing.assert_allclose(smooth, expected, atol=1e-5)
    assert np.all(smooth[~fg] == 0) and not np.allclose(smooth, raw)


def test_normalize_residuals_divides_by_the_bin_of_each_intensity():
    from disyre_sk._engine.inference import intensity_bins, normalize_residuals

    x = torch.tensor([[[[0.0, 0.24, 0.25, 0.5], [0.74, 0.75, 0.99, 1.0]]]])
    np.testing.assert_array_equal(intensity_bins(x, 4).flatten().tolist(), [0, 0, 1, 2, 2, 3, 3, 3])
    residual = torch.full_like(x, 6.0)
    out = normalize_residuals(residual, x, (1.0, 2.0, 3.0, 6.0))
    expected = [6.0, 6.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0]
    assert out.flatten().tolist() == expected


def test_erode_foreground_matches_scipy_binary_erosion():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((3, 20, 24)) > 0.3, iterations=1)
    mask[0, :, 0] = True  # foreground touching the image border is eroded there too
    for pixels in (0, 1, 2, 3):
        ours = erode_foreground(torch.from_numpy(mask[:, None].astype(np.float32)), pixels)
        ref = np.stack(
            [ndimage.binary_erosion(m, iterations=pixels) if pixels else m for m in mask]
        )
        np.testing.assert_array_equal(ours[:, 0].numpy().astype(bool), ref)


def test_erosion_zeroes_the_rim_and_keeps_the_interior():
    x = np.zeros((1, 16, 16), np.float32)
    x[0, 3:13, 3:13] = 0.6
    kw = dict(severities=(0.5,), patch_size=8, stride=4)
    full = _restorer(Flatten(0.5), **kw).maps(x, x > 0)
    eroded = _restorer(Flatten(0.5), erosion=2, **kw).maps(x, x > 0)
    inner = np.zeros_like(x, dtype=bool)
    inner[0, 5:11, 5:11] = True
    np.testing.assert_array_equal(eroded[inner], full[inner])
    assert (eroded[~inner] == 0).all() and (full[~inner & (x > 0)] > 0).all()


def test_smooth_maps_extreme_sigmas_stay_finite_and_exact():
    rng = np.random.default_rng(1)
    fg = torch.from_numpy(rng.random((2, 1, 10, 12)) > 0.3).float()
    m = torch.from_numpy(rng.random((2, 1, 10, 12)).astype(np.float32)) * fg
    # Below 0.1 px the neighbours' weights underflow: the map is returned as it is.
    assert torch.equal(smooth_maps(m, fg, 1e-300), m)
    assert torch.equal(smooth_maps(m, fg, 0.05), m)
    # A sigma far beyond the image is a plain mean over each slice's foreground.
    wide = smooth_maps(m, fg, 1e300)
    means = (m.sum(dim=(2, 3)) / fg.sum(dim=(2, 3)))[:, :, None, None]
    torch.testing.assert_close(wide, means * fg, rtol=1e-5, atol=1e-6)


class ShiftRight(nn.Module):
    """Restores each pixel to its left neighbour: an error that does not mirror."""

    def forward(self, x, severity):
        return torch.cat([x[..., :1], x[..., :-1]], dim=-1)


@pytest.mark.parametrize("whole_slice", [False, True])
def test_flip_averages_the_restoration_of_the_mirrored_input(whole_slice):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 1, size=(2, 8, 8)).astype(np.float32)
    fg = np.ones_like(x, dtype=bool)
    kw = dict(severities=(0.5,), whole_slice=whole_slice, stride=8)
    plain = _restorer(ShiftRight(), **kw).maps(x, fg)
    flipped = _restorer(ShiftRight(), flip=True, **kw).maps(x, fg)
    t = torch.from_numpy(x)[:, None]
    net = ShiftRight()
    by_hand = 0.5 * (net(t, None) + net(t.flip(-1), None).flip(-1))
    np.testing.assert_allclose(plain, np.abs(x - net(t, None)[:, 0].numpy()), atol=1e-6)
    np.testing.assert_allclose(flipped, np.abs(x - by_hand[:, 0].numpy()), atol=1e-6)
    # The averaged restoration mirrors with its input; one restoration does not.
    mirrored = _restorer(ShiftRight(), flip=True, **kw).maps(x[..., ::-1].copy(), fg)
    np.testing.assert_allclose(mirrored[..., ::-1], flipped, atol=1e-6)
    assert not np.allclose(
        _restorer(ShiftRight(), **kw).maps(x[..., ::-1].copy(), fg)[..., ::-1], plain
    )
