"""Restoration-based anomaly maps: ensemble and multistep modes, sliding windows.

A slice is cut into overlapping windows of the training patch size (``F.unfold``),
windows that hold no foreground are skipped, the rest go through the network in large
batches, and the restorations are fused back with Gaussian weights (``F.fold``), so the
centre of a window, where the network sees the most context, counts the most.

In whole-slice mode the network, which is fully convolutional, sees each slice's own
foreground box at once, padded to a multiple of its size step: one network input per
slice and severity, no overlap, no fusion. Slices whose padded boxes have the same size
share batches; a slice's map is what it would be if it were mapped alone.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._data import foreground_boxes, union_box
from .._device import autocast_for
from ..schedule import cold_diffusion_step, multistep_severities

# Upper bound on windows held at once per chunk of slices: bounds device memory.
_MAX_WINDOWS_PER_CHUNK = 4096


def gaussian_window(size: int, device=None, sigma_fraction: float = 0.125) -> torch.Tensor:
    """Separable Gaussian fusion weights of a square window, strictly positive."""
    t = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / (sigma_fraction * size)) ** 2)
    w = g[:, None] * g[None, :]
    w = w / w.max()
    # A floor keeps the fusion well defined at image corners covered by one window edge.
    return w.clamp(min=1e-3)


def smooth_maps(maps: torch.Tensor, foreground: torch.Tensor, sigma: float) -> torch.Tensor:
    """In-plane Gaussian smoothing of ``(N, 1, H, W)`` maps inside their foreground.

    A normalised convolution: background pixels neither dilute the brain's edge nor
    receive a value, so the map stays 0 outside ``foreground``. The kernel reaches
    ``4 * sigma`` pixels, as ``scipy.ndimage.gaussian_filter``'s does.
    """
    # Below a tenth of a pixel the neighbours' weights (exp(-50) and less) vanish in
    # float32: the map is unchanged, and 1 / sigma would overflow for tinier sigmas.
    if sigma < 0.1:
        return maps * foreground
    # No pixel lies farther than the image's side: a longer kernel changes nothing.
    radius = max(1, math.ceil(min(4 * sigma, max(maps.shape[-2:]) - 1)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=maps.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    both = torch.cat([maps * foreground, foreground]).float()
    both = F.conv2d(both, g.reshape(1, 1, -1, 1), padding=(radius, 0))
    both = F.conv2d(both, g.reshape(1, 1, 1, -1), padding=(0, radius))
    value, weight = both.split(maps.shape[0])
    return value / weight.clamp(min=1e-6) * foreground


def erode_foreground(foreground: torch.Tensor, pixels: int) -> torch.Tensor:
    """In-plane erosion of ``(N, 1, H, W)`` masks by ``pixels`` (city-block distance).

    ``pixels`` passes of the 3 x 3 cross, as ``scipy.ndimage.binary_erosion`` with
    ``iterations=pixels`` and its default structure; outside the image is background.
    """
    # Past half the image's side nothing is left: more passes change nothing.
    for _ in range(min(pixels, max(foreground.shape[-2:]))):
        p = F.pad(foreground, (1, 1, 1, 1))
        foreground = (
            foreground * p[..., :-2, 1:-1] * p[..., 2:, 1:-1] * p[..., 1:-1, :-2] * p[..., 1:-1, 2:]
        )
    return foreground


def intensity_bins(x: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Index of each ``[0, 1]`` intensity's bin among ``n_bins`` equal bins."""
    return (x * n_bins).long().clamp_(0, n_bins - 1)


def normalize_residuals(residual: torch.Tensor, x: torch.Tensor, profile) -> torch.Tensor:
    """Divide each pixel's residual by the healthy residual expected at its intensity.

    ``profile[k]`` is the mean residual of healthy tissue whose intensity falls in bin
    ``k`` of ``len(profile)`` equal bins of [0, 1] (learned in ``fit``). Restorations
    are less certain in some tissues than others (bright CSF, the brain's edge, noisy
    texture); dividing by what is usual there turns "changed a lot" into "changed more
    than healthy tissue of this intensity does", which carries to anatomy the network
    never saw because it does not depend on where the pixel is.
    """
    table = torch.as_tensor(profile, dtype=residual.dtype, device=residual.device)
    return residual / table[intensity_bins(x, table.numel())]


def padded_size(size: int, patch: int, stride: int) -> int:
    """Smallest size >= ``size`` and ``patch`` that windows of ``stride`` tile exactly."""
    size = max(size, patch)
    return patch + math.ceil((size - patch) / stride) * stride


def _places(shape: tuple[int, int], members) -> list:
    """``(slice index, source box, destination)`` of each member cut into a ``shape`` input.

    Each box is centred, as ``Restorer._chunk``'s padding centres a lone slice.
    """
    places = []
    for i, (z, (r0, r1, c0, c1)) in enumerate(members):
        top, left = (shape[0] - (r1 - r0)) // 2, (shape[1] - (c1 - c0)) // 2
        dst = (i, slice(top, top + r1 - r0), slice(left, left + c1 - c0))
        places.append((z, (slice(r0, r1), slice(c0, c1)), dst))
    return places


def _cut(shape: tuple[int, int], places, *sources) -> list[np.ndarray]:
    """Each member's box cut into a zero ``shape`` batch, for each ``(images, dtype)``."""
    outs = [np.zeros((len(places), *shape), dtype=dtype) for _, dtype in sources]
    for z, src, dst in places:
        for out, (images, _) in zip(outs, sources):
            out[dst] = images[z][src]
    return outs


class Restorer:
    """Compute anomaly maps of ``[0, 1]``-scaled slices with a trained network.

    Parameters
    ----------
    network : nn.Module
        ``network(x, severity)`` predicting the clean image.
    patch_size : int
        Window side, the training patch size.
    stride : int
        Step between windows.
    severities : tuple of float
        Severities of the ensemble, or the steps of the multistep sampler.
    mode : {'ensemble', 'multistep'}
        ``'ensemble'``: restore the same input once per severity and average
        ``|x - restoration|``. ``'multistep'``: cold-diffusion sampling from the
        highest severity down, averaging ``|x_s - x0_hat|`` over the steps.
    batch_size : int
        Windows per network call.
    device : torch.device
        Where the network runs.
    precision : {'fp32', 'bf16'}
        Autocast setting.
    verbose : bool, default=False
        Show a progress bar over chunks of slices.
    whole_slice : bool, default=False
        Map each slice in one network input instead of windows: the slice's own
        foreground box, at least ``patch_size`` on each side, padded up to a multiple
        of ``size_multiple`` (rectangular; ``stride`` is then unused). The slice's map
        then does not depend on the other slices given with it.
    size_multiple : int, default=1
        The network's input-size step, ``2 ** (levels - 1)`` for a UNet.
    smoothing : float, default=0.0
        Standard deviation, in pixels, of the in-plane Gaussian applied to each map
        inside the foreground (:func:`smooth_maps`); 0 leaves the map as it is.
    residual_profile : sequence of float, optional
        Expected residual of healthy tissue per intensity bin (``len(profile)`` equal
        bins of [0, 1]); each pixel's residual is divided by the value of its
        intensity's bin before smoothing (:func:`normalize_residuals`).
    erosion : int, default=0
        Pixels of the foreground's in-plane rim whose map is set to 0 after smoothing
        (:func:`erode_foreground`); 0 keeps the whole foreground.
    flip : bool, default=False
        Restore each network input also mirrored along its last axis and average the
        two restorations (test-time augmentation).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        patch_size: int,
        stride: int,
        severities,
        mode: str,
        batch_size: int,
        device: torch.device,
        precision: str,
        verbose: bool = False,
        whole_slice: bool = False,
        size_multiple: int = 1,
        smoothing: float = 0.0,
        residual_profile=None,
        erosion: int = 0,
        flip: bool = False,
    ):
        self.network = network
        self.patch_size = patch_size
        self.stride = stride
        self.severities = tuple(severities)
        self.mode = mode
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.verbose = verbose
        self.whole_slice = whole_slice
        self.size_multiple = size_multiple
        self.smoothing = smoothing
        self.erosion = erosion
        self.flip = flip
        # A device tensor once here, not a host-to-device copy per chunk.
        self.residual_profile = (
            None
            if residual_profile is None
            else torch.as_tensor(residual_profile, dtype=torch.float32, device=device)
        )

    def whole_slice_shape(self, h: int, w: int) -> tuple[int, int]:
        """Network input size for a ``(h, w)`` foreground box in whole-slice mode."""
        m = self.size_multiple
        return (
            m * math.ceil(max(h, self.patch_size) / m),
            m * math.ceil(max(w, self.patch_size) / m),
        )

    def maps(self, slices: np.ndarray, foreground: np.ndarray) -> np.ndarray:
        """Anomaly maps of ``(N, H, W)`` slices; float32, 0 outside the foreground."""
        return self._maps(slices, foreground, None)

    def restorations(self, slices: np.ndarray, foreground: np.ndarray):
        """Maps and the restorations behind them, for inspection.

        Returns ``(maps, restored, severities)``: ``restored[k]`` is the ``(N, H, W)``
        restoration at ``severities[k]`` (ensemble mode: of the input; multistep mode:
        the clean-image estimate of step ``k``), 0 outside the foreground.
        """
        steps = self.steps
        restored = np.zeros((len(steps), *slices.shape), dtype=np.float32)
        return self._maps(slices, foreground, restored), restored, steps

    def _maps(self, slices, foreground, restored) -> np.ndarray:
        n = slices.shape[0]
        out = np.zeros(slices.shape, dtype=np.float32)
        has_fg = foreground.reshape(n, -1).any(axis=1)
        if not has_fg.any():
            return out
        todo = np.flatnonzero(has_fg)
        chunks = self._plan(todo, foreground_boxes(foreground)[todo])
        self.network.eval()
        bar = tqdm(chunks, desc="DISYRE mapping", unit="chunk", disable=not self.verbose)
        for shape, members in bar:
            # Each chunk's copy is made only when its turn comes: host memory holds one.
            places = _places(shape, members)
            x, fg = _cut(shape, places, (slices, np.float32), (foreground, bool))
            kept: list | None = None if restored is None else []
            values = self._chunk(
                torch.from_numpy(x).to(self.device), torch.from_numpy(fg).to(self.device), kept
            )
            pairs = [(out, values)] if restored is None else [(out, values), *zip(restored, kept)]
            for target, image in pairs:
                image = image.cpu().numpy()
                for z, src, dst in places:
                    target[z][src] = image[dst]
        return out

    def _plan(self, todo: np.ndarray, boxes: np.ndarray) -> list:
        """Chunks ``(input shape, [(slice index, box), ...])`` of the slices ``todo``.

        ``boxes`` are their foreground boxes. Windowed mode tiles one box, the union of
        all: outside it the input is background, like the padding, and the map is 0 (on
        a 240 x 240 grid this halves the windows; windows without foreground are skipped
        later). Whole-slice mode gives each slice its own box, so that it is mapped as it
        would be alone: its map does not depend on the other slices, and a small slice
        near the top of the head costs a small input.
        """
        if not self.whole_slice:
            boxes = np.broadcast_to(union_box(boxes), boxes.shape)
        return self._group(todo, boxes)

    def _group(self, todo: np.ndarray, boxes: np.ndarray) -> list:
        """Batch the slices whose network inputs have the same shape, a chunk at a time."""
        p, s = self.patch_size, self.stride
        groups: dict[tuple[int, int], list] = {}
        for z, box in zip(todo, boxes):
            h, w = int(box[1] - box[0]), int(box[3] - box[2])
            shape = self.whole_slice_shape(h, w) if self.whole_slice else (h, w)
            groups.setdefault(shape, []).append((z, box))
        chunks = []
        for (h, w), members in groups.items():
            if self.whole_slice:
                # As many pixels per chunk as the windowed mode would hold.
                chunk = _MAX_WINDOWS_PER_CHUNK * p**2 // (h * w)
            else:
                per_slice = ((padded_size(h, p, s) - p) // s + 1) * (
                    (padded_size(w, p, s) - p) // s + 1
                )
                chunk = _MAX_WINDOWS_PER_CHUNK // per_slice
            chunk = max(1, chunk)
            chunks += [((h, w), members[i : i + chunk]) for i in range(0, len(members), chunk)]
        return chunks

    @property
    def steps(self) -> tuple:
        """Severities each input is restored at: the ensemble's, or the multistep steps."""
        if self.mode == "ensemble":
            return self.severities
        return tuple(multistep_severities(self.severities))

    def _geometry(self, h: int, w: int) -> tuple[int, int, tuple[int, int, int, int]]:
        """Padded input size of an ``(h, w)`` chunk and the ``F.pad`` that centres it."""
        p, s = self.patch_size, self.stride
        if self.whole_slice:
            hp, wp = self.whole_slice_shape(h, w)
        else:
            hp, wp = padded_size(h, p, s), padded_size(w, p, s)
        top, left = (hp - h) // 2, (wp - w) // 2
        return hp, wp, (left, wp - w - left, top, hp - h - top)

    def _active_windows(self, fg: torch.Tensor) -> torch.Tensor:
        """Which windows of padded ``(n, 1, hp, wp)`` foreground hold foreground: the
        only ones the network is given."""
        fg_windows = F.unfold(fg, self.patch_size, stride=self.stride)
        return (fg_windows > 0).any(dim=1).reshape(-1)

    def plan(self, foreground: np.ndarray) -> list:
        """The network inputs :meth:`maps` would make for ``(N, H, W)`` foreground.

        One entry per slice with foreground, in slice order: ``(slice index, box,
        input shape, windows)``, with ``box = (row0, row1, col0, col1)`` the region of
        the slice the input holds, ``input shape`` the padded ``(height, width)`` the
        network tiles (whole-slice mode: sees), and ``windows`` the network inputs per
        restoration step (whole-slice mode: 1; windowed mode: the windows with
        foreground). Nothing runs on the network.
        """
        n = foreground.shape[0]
        todo = np.flatnonzero(foreground.reshape(n, -1).any(axis=1))
        entries = []
        for shape, members in self._plan(todo, foreground_boxes(foreground)[todo]):
            hp, wp, pad = self._geometry(*shape)
            places = _places(shape, members)
            if self.whole_slice:
                windows = [1] * len(places)
            else:
                (fg,) = _cut(shape, places, (foreground, np.float32))
                fg = F.pad(torch.from_numpy(fg[:, None]), pad)
                windows = self._active_windows(fg).reshape(len(places), -1).sum(1).tolist()
            for (z, src, _), n_windows in zip(places, windows):
                box = (src[0].start, src[0].stop, src[1].start, src[1].stop)
                entries.append((int(z), box, (hp, wp), int(n_windows)))
        return sorted(entries)

    @torch.inference_mode()
    def _chunk(self, x: torch.Tensor, fg: torch.Tensor, kept=None) -> torch.Tensor:
        n, h, w = x.shape
        p, s = self.patch_size, self.stride
        hp, wp, pad = self._geometry(h, w)
        top, left = pad[2], pad[0]
        x = F.pad(x[:, None].float(), pad)
        fg = F.pad(fg[:, None].float(), pad)

        if self.whole_slice:

            def restore(image: torch.Tensor, severity: float) -> torch.Tensor:
                return self._run(image, severity) * fg

        else:
            active = self._active_windows(fg)
            weight = gaussian_window(p, x.device).reshape(1, p * p, 1)
            per_input = active.numel() // n
            norm = F.fold(weight.expand(1, -1, per_input), (hp, wp), p, stride=s)

            def restore(image: torch.Tensor, severity: float) -> torch.Tensor:
                cols = F.unfold(image, p, stride=s)
                n_windows = cols.shape[-1]
                windows = cols.transpose(1, 2).reshape(-1, 1, p, p)
                restored = windows.clone()
                restored[active] = self._run(windows[active], severity)
                restored = restored.reshape(n, n_windows, p * p).transpose(1, 2)
                return F.fold(restored * weight, (hp, wp), p, stride=s) / norm * fg

        def crop(image: torch.Tensor) -> torch.Tensor:
            return image[:, 0, top : top + h, left : left + w]

        total = torch.zeros_like(x)
        if self.mode == "ensemble":
            for severity in self.steps:
                restored = restore(x, severity)
                if kept is not None:
                    kept.append(crop(restored))
                total += (x - restored).abs()
            total /= len(self.steps)
        else:
            steps = self.steps
            x_s = x
            for k, severity in enumerate(steps):
                x0_hat = restore(x_s, severity)
                if kept is not None:
                    kept.append(crop(x0_hat))
                total += (x_s - x0_hat).abs()
                following = steps[k + 1] if k + 1 < len(steps) else 0.0
                x_s = cold_diffusion_step(x_s, x0_hat, severity, following) * fg
            total /= len(steps)
        if self.residual_profile is not None:
            total = normalize_residuals(total, x, self.residual_profile)
        total = smooth_maps(total, fg, self.smoothing)
        if self.erosion:
            total = total * erode_foreground(fg, self.erosion)
        return crop(total)

    def _run(self, windows: torch.Tensor, severity: float) -> torch.Tensor:
        outs = []
        start = 0
        while start < windows.shape[0]:
            batch = windows[start : start + self.batch_size]
            sev = torch.full((batch.shape[0],), severity, device=batch.device)
            try:
                with autocast_for(self.device, self.precision):
                    out = self.network(batch, sev).float()
                    if self.flip:
                        # Mirrored back, the second restoration is of the same pixels.
                        mirrored = self.network(batch.flip(-1), sev).float().flip(-1)
                        out = 0.5 * (out + mirrored)
                    outs.append(out)
            except torch.cuda.OutOfMemoryError:
                # Out of GPU memory: retry this batch, and the rest, at half the size.
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                torch.cuda.empty_cache()
                warnings.warn(
                    f"GPU out of memory at inference; continuing with batches of "
                    f"{self.batch_size} windows (set inference_batch_size to avoid this).",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            start += batch.shape[0]
        if not outs:
            return windows
        return torch.cat(outs).clamp(0, 1)
