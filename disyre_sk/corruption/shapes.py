"""Random soft masks for synthetic anomalies: ellipses, rotated rectangles, smooth blobs.

A mask is drawn in a square box of side about ``box_fraction * min(H, W)`` centred on a
random foreground pixel, blurred with a random Gaussian sigma (sharp to diffuse edges) and
multiplied by the foreground. Everything is batched: one set of tensor operations renders
the whole batch, whatever mix of shapes it holds.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Corruption, _check_generator, _rand

__all__ = ["RandomShape"]

_KINDS = ("ellipse", "rectangle", "blob")


class RandomShape:
    """Sampler and renderer of random soft lesion masks, batched.

    Each sample gets one shape, picked uniformly from ``shapes``:

    * ``"ellipse"``: random semi-axes and rotation (a disc when the axes are equal);
    * ``"rectangle"``: random sides and rotation, scaled by 1/sqrt(2) so that the
      rotated rectangle fits the box;
    * ``"blob"``: a thresholded smooth random field (Gaussian bumps with random weights
      on a 7x7 knot grid over the box) under an elliptical envelope: an irregular,
      compact lesion that always contains the centre.

    The shape is drawn on the box's pixel grid (``2 * floor(box_fraction * min(H, W) / 2)
    + 1`` pixels wide, centred on a random foreground pixel), blurred with a per-sample
    Gaussian sigma drawn uniformly in ``sigma_range`` (zero padding at the image border),
    and multiplied by the foreground. Blur and placement are one separable linear map, so
    the whole batch costs two small batched matmuls.

    Parameters
    ----------
    box_fraction : float, default=0.5
        Side of the box holding the shape, as a fraction of the image side
        (``min(H, W)``); 0.5 gives 64 px boxes in 128 px patches.
    sigma_range : tuple of float, default=(0.0, 5.0)
        Range of the blur sigma in pixels; 0 keeps a hard edge.
    shapes : tuple of str, default=("ellipse", "rectangle", "blob")
        Shapes to draw from.
    size_range : tuple of float, default=(0.25, 1.0)
        Range of the semi-axes, as fractions of half the box side.
    blob_roughness : float, default=0.8
        Amplitude of the random field of blobs relative to their envelope; 0 makes
        them ellipses.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(2, 1, 32, 32)
    >>> x[:, :, 4:28, 4:28] = 0.5
    >>> shape = RandomShape()
    >>> p = shape.sample_params(x > 0, torch.Generator().manual_seed(0))
    >>> m = shape.render(p, x > 0)
    >>> m.shape, bool((m[x == 0] == 0).all())
    (torch.Size([2, 1, 32, 32]), True)
    """

    def __init__(
        self,
        box_fraction: float = 0.5,
        sigma_range: tuple[float, float] = (0.0, 5.0),
        shapes: tuple[str, ...] = _KINDS,
        size_range: tuple[float, float] = (0.25, 1.0),
        blob_roughness: float = 0.8,
    ) -> None:
        self.box_fraction = box_fraction
        self.sigma_range = tuple(sigma_range)
        self.shapes = (shapes,) if isinstance(shapes, str) else tuple(shapes)
        self.size_range = tuple(size_range)
        self.blob_roughness = blob_roughness
        _validate_shape_args(self)

    def __repr__(self) -> str:
        return (
            f"RandomShape(box_fraction={self.box_fraction!r}, sigma_range={self.sigma_range!r}, "
            f"shapes={self.shapes!r}, size_range={self.size_range!r}, "
            f"blob_roughness={self.blob_roughness!r})"
        )

    def sample_params(self, foreground: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw centres, shape kinds, sizes, angles, blur sigmas and blob noise.

        Parameters
        ----------
        foreground : torch.Tensor
            Boolean tensor ``(B, 1, H, W)``; the centre is a uniformly drawn foreground
            pixel (pixel ``(0, 0)`` for a sample without foreground, whose mask is empty).
        generator : torch.Generator
            Source of every random number, on ``foreground.device``.

        Returns
        -------
        dict of str to torch.Tensor
            ``center`` ``(B, 2)`` long (row, column), ``kind`` ``(B,)`` long (index into
            ``("ellipse", "rectangle", "blob")``), ``axes`` ``(B, 2)`` pixels, ``angle``
            ``(B,)`` radians, ``sigma`` ``(B,)`` pixels, ``blob_noise`` ``(B, 1, r, r)``.

        Examples
        --------
        >>> import torch
        >>> p = RandomShape().sample_params(torch.ones(3, 1, 16, 16, dtype=torch.bool),
        ...                                 torch.Generator().manual_seed(0))
        >>> p["center"].shape, p["sigma"].shape
        (torch.Size([3, 2]), torch.Size([3]))
        """
        _check_generator(generator, foreground.device)
        fg = foreground if foreground.dtype == torch.bool else foreground != 0
        b, _, h, w = fg.shape
        dev = fg.device
        half = _box_half(self.box_fraction, h, w)
        # One fixed order of draws, so that a seed always gives the same parameters.
        center = sample_foreground_pixel(fg, _rand(generator, b, device=dev))
        codes = torch.tensor([_KINDS.index(s) for s in self.shapes], device=dev)
        pick = (_rand(generator, b, device=dev) * len(codes)).long().clamp_(max=len(codes) - 1)
        lo, hi = self.size_range
        axes = half * (lo + (hi - lo) * _rand(generator, b, 2, device=dev))
        angle = math.pi * _rand(generator, b, device=dev)
        s_lo, s_hi = self.sigma_range
        sigma = s_lo + (s_hi - s_lo) * _rand(generator, b, device=dev)
        r = _NOISE_KNOTS
        noise = torch.randn((b, 1, r, r), generator=generator, device=dev)
        return {
            "center": center,
            "kind": codes[pick],
            "axes": axes,
            "angle": angle,
            "sigma": sigma,
            "blob_noise": noise,
        }

    def render(
        self, params: dict[str, Tensor], foreground: Tensor, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Render the soft masks of ``params``; deterministic.

        Parameters
        ----------
        params : dict of str to torch.Tensor
            Output of :meth:`sample_params`.
        foreground : torch.Tensor
            Boolean tensor ``(B, 1, H, W)``; the mask is zero outside it.
        dtype : torch.dtype, default=torch.float32
            Floating dtype of the mask.

        Returns
        -------
        torch.Tensor
            Soft masks ``(B, 1, H, W)`` in [0, 1].

        Examples
        --------
        >>> import torch
        >>> fg = torch.ones(1, 1, 16, 16, dtype=torch.bool)
        >>> shape = RandomShape(sigma_range=(0.0, 0.0))
        >>> m = shape.render(shape.sample_params(fg, torch.Generator().manual_seed(1)), fg)
        >>> float(m.max())
        1.0
        """
        b, _, h, w = foreground.shape
        dev = foreground.device
        dt = dtype
        # The shape is drawn on the box's own pixel grid (offsets -hb..hb from the centre,
        # shared by the whole batch), then blurred and placed in the image in one step.
        hb = _box_half(self.box_fraction, h, w)
        t = torch.arange(-hb, hb + 1, device=dev, dtype=dt)
        dy, dx = t.view(1, 1, -1, 1), t.view(1, 1, 1, -1)
        kind = params["kind"].view(b, 1, 1, 1)
        angle = params["angle"].to(dt)
        # Shrink rectangles (half-diagonal) and blobs (boundary pushed out by the noise) so
        # that, like ellipses, they mostly fit the box instead of being cut by it.
        fit = torch.ones(b, device=dev, dtype=dt)
        fit = torch.where(params["kind"] == 1, 2**-0.5, fit)
        fit = torch.where(params["kind"] == 2, (1 + self.blob_roughness) ** -0.5, fit)
        axes = (params["axes"].to(dt) * fit.unsqueeze(1)).clamp_min(0.5)
        # Fold the semi-axes into the rotation: the (u, v) below are already normalised.
        cos_a = (angle.cos() / axes[:, 0]).view(b, 1, 1, 1)
        sin_a = (angle.sin() / axes[:, 0]).view(b, 1, 1, 1)
        cos_b = (angle.cos() / axes[:, 1]).view(b, 1, 1, 1)
        sin_b = (angle.sin() / axes[:, 1]).view(b, 1, 1, 1)
        u2 = (dx * cos_a + dy * sin_a).square()
        v2 = (dy * cos_b - dx * sin_b).square()
        # Ellipse: u² + v² < 1; rectangle: max(u², v²) < 1.
        rho2 = torch.where(kind == 1, torch.maximum(u2, v2), u2 + v2)
        field = 1.0 - rho2
        with _no_autocast(dev):
            if "blob" in self.shapes and self.blob_roughness > 0:
                noise = _smooth_noise(params["blob_noise"].to(dt), t, hb)
                # Zero at the centre: the centre pixel is always inside, no blob is empty.
                noise = noise - noise[..., hb : hb + 1, hb : hb + 1]
                amp = (self.blob_roughness * (kind == 2).to(dt)).view(b, 1, 1, 1)
                field = field + amp * noise
            hard = (field > 0).to(dt)
            radius = math.ceil(3.0 * self.sigma_range[1])
            soft = _blur_and_place(hard, params["center"], params["sigma"].to(dt), h, w, radius)
        return soft.clamp_(0, 1) * foreground


def sample_foreground_pixel(foreground: Tensor, u: Tensor) -> Tensor:
    """Map uniform numbers to foreground pixels, one per sample, without a batch loop.

    Parameters
    ----------
    foreground : torch.Tensor
        Boolean tensor ``(B, 1, H, W)``.
    u : torch.Tensor
        Uniform numbers in [0, 1), shape ``(B,)``; ``u`` picks the ``floor(u * n)``-th
        foreground pixel in raster order, ``n`` being the sample's foreground size.

    Returns
    -------
    torch.Tensor
        Long tensor ``(B, 2)`` of (row, column); ``(0, 0)`` for a sample without foreground.

    Examples
    --------
    >>> import torch
    >>> fg = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    >>> fg[0, 0, 2, 1] = fg[0, 0, 3, 3] = True
    >>> sample_foreground_pixel(fg, torch.tensor([0.9])).tolist()
    [[3, 3]]
    """
    b, _, h, w = foreground.shape
    # Inverse-CDF sampling on the cumulative foreground count (cheaper than multinomial).
    itype = torch.int32 if h * w < 2**31 else torch.int64
    cum = foreground.reshape(b, h * w).cumsum(1, dtype=itype)
    n = cum[:, -1].long()
    k = torch.minimum((u * n.to(u.dtype)).floor().long(), n - 1)
    target = (k + 1).to(itype).unsqueeze(1)
    idx = torch.searchsorted(cum, target).squeeze(1).clamp_(max=h * w - 1)
    return torch.stack((idx // w, idx % w), dim=1)


def _box_half(box_fraction: float, h: int, w: int) -> int:
    """Half side of the shape box in whole pixels (the box is ``2 * hb + 1`` pixels wide)."""
    return max(1, int(0.5 * box_fraction * min(h, w)))


def _blur_and_place(
    box: Tensor, center: Tensor, sigma: Tensor, h: int, w: int, radius: int
) -> Tensor:
    """Blur box-sized images with per-sample Gaussian sigmas and place them in ``(H, W)``.

    Both steps are linear and separable, so one matrix per axis does them together:
    ``out = My @ box @ Mx^T`` with ``My[b, y, s] = g_b(y - (cy_b - hb + s))``, ``g_b`` the
    normalised Gaussian kernel of radius ``radius`` (zero padding at the image border).
    Two small batched matmuls (``(H, n) @ (n, n) @ (n, W)``) are cheaper than blurring
    whole images with a grouped convolution, on CPU and GPU. ``sigma = 0`` (or
    ``radius = 0``) places the box exactly.
    """
    b, _, n, _ = box.shape
    hb = (n - 1) // 2
    dev, dt = box.device, box.dtype
    # sigma -> 0 gives a unit impulse (exp(-inf) = 0 off the centre): an exact copy.
    taps = torch.arange(-radius, radius + 1, device=dev, dtype=dt)
    kern = torch.exp(-0.5 * (taps / sigma.clamp_min(1e-6).view(b, 1)).square())
    kern = F.pad(kern / kern.sum(1, keepdim=True), (0, 1))  # index 2R+1 holds a zero

    def matrix(size: int, c: Tensor) -> Tensor:
        # M[y, s] = g(y - s + hb - c) depends on y - s only (Toeplitz): build the diagonal
        # values v[q] = g(q - (n - 1) + hb - c) once and unfold them; columns come out in
        # reverse order (s' = n - 1 - s), which the caller undoes by flipping the box.
        q = torch.arange(size + n - 1, device=dev).unsqueeze(0)
        d = q - (n - 1) + hb - c.unsqueeze(1)  # (B, size + n - 1)
        idx = torch.where(d.abs() <= radius, d + radius, 2 * radius + 1)
        return kern.gather(1, idx).unfold(1, n, 1).contiguous()  # (B, size, n)

    my, mx = matrix(h, center[:, 0]), matrix(w, center[:, 1])
    return (my @ box.view(b, n, n).flip(1, 2) @ mx.transpose(1, 2)).unsqueeze(1)


def _no_autocast(device: torch.device):
    # The matmuls above must stay in full precision even inside a caller's autocast region.
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


# Knots per side of the blob noise grid, spanning the box: blobs with a few lobes.
_NOISE_KNOTS = 7


def _smooth_noise(noise: Tensor, t: Tensor, half: int) -> Tensor:
    """Smooth random field of about unit variance on the box grid ``t = -half..half``.

    ``field = P @ noise @ P^T`` with ``P[i, k] = phi(t_i - knot_k)``, ``phi`` a Gaussian
    bump as wide as the knot spacing: separable, smooth, and two tiny matmuls.
    """
    b, _, r, _ = noise.shape
    knots = torch.linspace(-half, half, r, device=t.device, dtype=t.dtype)
    spacing = 2 * half / (r - 1)
    width = 0.7 * spacing
    p = torch.exp(-0.5 * ((t.view(-1, 1) - knots) / width).square())  # (n, r)
    field = p @ noise.view(b, r, r) @ p.T
    # A row of phi² sums to about width * sqrt(pi) / spacing: unit variance inside the box.
    return (field / (width * math.sqrt(math.pi) / spacing)).unsqueeze(1)


def _validate_shape_args(obj) -> None:
    if not 0 < obj.box_fraction <= 1:
        raise ValueError(f"box_fraction must be in (0, 1]; got {obj.box_fraction!r}")
    if len(obj.sigma_range) != 2 or not 0 <= obj.sigma_range[0] <= obj.sigma_range[1]:
        raise ValueError(
            f"sigma_range must be (low, high) with 0 <= low <= high; got {obj.sigma_range!r}"
        )
    if len(obj.size_range) != 2 or not 0 < obj.size_range[0] <= obj.size_range[1]:
        raise ValueError(
            f"size_range must be (low, high) with 0 < low <= high; got {obj.size_range!r}"
        )
    if not obj.shapes or any(s not in _KINDS for s in obj.shapes):
        raise ValueError(f"shapes must be a non-empty subset of {_KINDS}; got {obj.shapes!r}")
    if obj.blob_roughness < 0:
        raise ValueError(f"blob_roughness must be >= 0; got {obj.blob_roughness!r}")


class _ShapedCorruption(Corruption):
    """Shared parameters and shape sampling of the corruptions built on a random mask."""

    def __init__(
        self,
        box_fraction: float = 0.5,
        sigma_range: tuple[float, float] = (0.0, 5.0),
        shapes: tuple[str, ...] = _KINDS,
        size_range: tuple[float, float] = (0.25, 1.0),
        blob_roughness: float = 0.8,
    ) -> None:
        self.box_fraction = box_fraction
        self.sigma_range = tuple(sigma_range)
        self.shapes = (shapes,) if isinstance(shapes, str) else tuple(shapes)
        self.size_range = tuple(size_range)
        self.blob_roughness = blob_roughness
        _validate_shape_args(self)

    def _shape(self) -> RandomShape:
        # Built on demand: the corruption's own attributes stay the single source of truth.
        return RandomShape(
            self.box_fraction, self.sigma_range, self.shapes, self.size_range, self.blob_roughness
        )
