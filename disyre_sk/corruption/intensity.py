"""Intensity bias: brighten or darken chosen tissue classes under a random mask.

The bias step of DISYRE's disentangled anomaly generation (the method page's step 3). Foreground
intensities are quantised into a few tissue classes by per-sample quantiles; a random
non-empty subset of the classes (always including the class at the mask centre, so that
the bias touches the lesion) gets ``sign * a_bias * m`` added under the soft mask ``m``,
then the image is clipped to [0, 1]. This makes the hypo- and hyper-intense lesions that
foreign patch interpolation alone rarely makes.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from .base import Corrupted, _check_input, _finish, _rand, _resolve_severity, _work_dtype
from .shapes import _KINDS, _ShapedCorruption

__all__ = ["IntensityBiasCorruption"]

# Histogram resolution of the per-sample quantiles: a full sort of every image costs ~10x
# more on a CPU, and tissue classes need no finer thresholds than 1/64 of the range.
_N_BINS = 64


class IntensityBiasCorruption(_ShapedCorruption):
    """Additive intensity bias on random tissue classes under a random soft shape.

    Foreground intensities of each sample are split into ``k`` classes at the ``j / k``
    quantiles (``k`` drawn uniformly in ``n_classes``). A random non-empty subset of the
    classes — always including the class of the mask centre — gets ``sign * a * m``
    added, with ``a ~ U(0, 1)``, ``sign = +1`` with probability ``p_bright`` (else
    ``-1``) and ``m`` the soft mask; the image is then
    clipped to [0, 1]. The severity is the largest actual absolute change, which is at
    most ``a`` (less where clipping bites).

    Parameters
    ----------
    box_fraction : float, default=0.5
        Side of the box holding the shape, as a fraction of ``min(H, W)``.
    sigma_range : tuple of float, default=(0.0, 5.0)
        Range of the mask blur sigma in pixels.
    shapes : tuple of str, default=("ellipse", "rectangle", "blob")
        Shapes to draw the mask from.
    size_range : tuple of float, default=(0.25, 1.0)
        Range of the shape's semi-axes, as fractions of half the box side.
    blob_roughness : float, default=0.8
        Boundary irregularity of blobs.
    n_classes : tuple of int, default=(3, 5)
        Inclusive range of the number of intensity classes.
    p_bright : float, default=0.5
        Probability that the bias brightens (else it darkens). ``1`` makes only
        hyper-intense anomalies, ``0`` only hypo-intense ones.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(4, 1, 32, 32)
    >>> x[:, :, 4:28, 4:28] = torch.rand(4, 1, 24, 24)
    >>> out = IntensityBiasCorruption()(x, torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(out.severity, (out.image - x).abs().flatten(1).amax(1)))
    True
    """

    def __init__(
        self,
        box_fraction: float = 0.5,
        sigma_range: tuple[float, float] = (0.0, 5.0),
        shapes: tuple[str, ...] = _KINDS,
        size_range: tuple[float, float] = (0.25, 1.0),
        blob_roughness: float = 0.8,
        n_classes: tuple[int, int] = (3, 5),
        p_bright: float = 0.5,
    ) -> None:
        super().__init__(box_fraction, sigma_range, shapes, size_range, blob_roughness)
        self.n_classes = _check_n_classes(n_classes)
        self.p_bright = _check_p_bright(p_bright)

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw the mask, the class count and subset, the sign and ``a_bias``.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        generator : torch.Generator
            Source of every random number, on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0``.
        severity : float, torch.Tensor or None, default=None
            Forces ``a_bias`` to this value; the reported severity is then at most this
            (clipping can make the actual change smaller).

        Returns
        -------
        dict of str to torch.Tensor
            The shape parameters plus ``a_bias`` ``(B,)``, ``bias_sign`` ``(B,)``,
            ``n_classes`` ``(B,)`` and ``class_bits`` ``(B, max_classes)``.

        Examples
        --------
        >>> import torch
        >>> p = IntensityBiasCorruption().sample_params(torch.rand(2, 1, 16, 16),
        ...                                             torch.Generator().manual_seed(0))
        >>> p["bias_sign"].abs().tolist()
        [1.0, 1.0]
        """
        fg = _check_input(x, foreground, generator)
        params = self._shape().sample_params(fg, generator)
        params.update(
            _sample_bias_params(x.shape[0], generator, x.device, self.n_classes, self.p_bright)
        )
        forced = _resolve_severity(severity, x.shape[0], x.device)
        if forced is not None:
            params["a_bias"] = forced
        return params

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Render the mask and add the bias to the chosen classes; deterministic.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        params : dict of str to torch.Tensor
            Output of :meth:`sample_params`.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0``.

        Returns
        -------
        Corrupted
            ``(image, mask, severity)``, severity = largest absolute change.

        Examples
        --------
        >>> import torch
        >>> c, x = IntensityBiasCorruption(), torch.rand(2, 1, 16, 16)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0), severity=0.0)
        >>> bool(torch.equal(c.apply(x, p).image, x))
        True
        """
        fg = _check_input(x, foreground)
        dt = _work_dtype(x)
        xw = x.to(dt)
        mask = self._shape().render(params, fg, dtype=dt)
        out, change = _apply_bias(xw, fg, mask, params, max(self.n_classes))
        return _finish(x, out, mask, change)


# --------------------------------------------------------------------------- internals


def _check_n_classes(n_classes: int | tuple[int, int]) -> tuple[int, int]:
    lo, hi = (n_classes, n_classes) if isinstance(n_classes, int) else tuple(n_classes)
    if not 1 <= lo <= hi:
        raise ValueError(f"n_classes must be (low, high) with 1 <= low <= high; got {n_classes!r}")
    return (int(lo), int(hi))


def _check_p_bright(p_bright: float) -> float:
    if isinstance(p_bright, bool) or not isinstance(p_bright, numbers.Real):
        raise TypeError(f"p_bright must be a number in [0, 1]; got {p_bright!r}")
    if not 0.0 <= p_bright <= 1.0:  # also refuses NaN
        raise ValueError(
            f"p_bright must be in [0, 1] (the probability that the bias brightens); "
            f"got {p_bright!r}"
        )
    return float(p_bright)


def _sample_bias_params(
    b: int,
    generator: torch.Generator,
    device: torch.device,
    n_classes: tuple[int, int],
    p_bright: float = 0.5,
) -> dict[str, Tensor]:
    """Draw the number of classes, the class subset bits, the sign and ``a_bias ~ U(0, 1)``."""
    lo, hi = n_classes
    u_k = _rand(generator, b, device=device)
    bits = _rand(generator, b, hi, device=device) < 0.5
    u_sign = _rand(generator, b, device=device)
    a_bias = _rand(generator, b, device=device)
    k = lo + (u_k * (hi - lo + 1)).long().clamp_(max=hi - lo)
    # One uniform draw per sample whatever p_bright is: the default (0.5) keeps the
    # historical random stream, so seeded corruptions are unchanged.
    sign = torch.where(u_sign < 1.0 - p_bright, -1.0, 1.0)
    return {"a_bias": a_bias, "bias_sign": sign, "n_classes": k, "class_bits": bits}


def _apply_bias(
    x: Tensor, fg: Tensor, mask: Tensor, params: dict[str, Tensor], max_classes: int
) -> tuple[Tensor, Tensor]:
    """Add the class-selective bias under ``mask``; return (image, largest |change|)."""
    b, _, h, w = x.shape
    dev = x.device
    bins = (x * _N_BINS).long().clamp_(0, _N_BINS - 1).view(b, h, w)
    # Per-sample foreground histogram -> CDF -> the bins where the j/k quantiles fall. Every
    # second pixel along each axis gives the same tissue thresholds at a quarter of the cost.
    hist = torch.zeros(b, _N_BINS, dtype=x.dtype, device=dev)
    hist.scatter_add_(
        1, bins[:, ::2, ::2].reshape(b, -1), fg[:, 0, ::2, ::2].reshape(b, -1).to(x.dtype)
    )
    cdf = hist.cumsum(1) / hist.sum(1, keepdim=True).clamp_min(1)
    k = params["n_classes"].to(dev)
    j = torch.arange(1, max_classes, device=dev, dtype=x.dtype).unsqueeze(0)
    # Unused thresholds (j >= k) sit above the CDF's top: no bin passes them.
    q = torch.where(j < k.unsqueeze(1), j / k.unsqueeze(1).to(x.dtype), 2.0)
    edges = torch.searchsorted(cdf.contiguous(), q.contiguous())  # (B, max_classes - 1)
    bin_ids = torch.arange(_N_BINS, device=dev).view(1, _N_BINS, 1)
    bin_class = (bin_ids > edges.unsqueeze(1)).sum(2)  # (B, N_BINS): class of each bin
    # The class under the mask centre is always biased, so the bias reaches the lesion.
    c = params["center"]
    c_bin = bins.view(b, h * w).gather(1, (c[:, 0] * w + c[:, 1]).unsqueeze(1))
    c_class = bin_class.gather(1, c_bin)  # (B, 1)
    cls = torch.arange(max_classes, device=dev).unsqueeze(0)
    chosen = (params["class_bits"].to(dev) & (cls < k.unsqueeze(1))) | (cls == c_class)
    # A per-sample lookup table bin -> biased or not, read once per pixel.
    bin_on = chosen.gather(1, bin_class)  # (B, N_BINS)
    on = bin_on.gather(1, bins.view(b, h * w)).view(b, 1, h, w)
    amp = (params["bias_sign"] * params["a_bias"]).to(x.dtype).view(b, 1, 1, 1)
    weight = torch.where(on, mask, 0.0)
    out = torch.addcmul(x, amp, weight).clamp_(0, 1)
    # Measured only where the bias acts: an input slightly outside [0, 1] elsewhere must
    # not count as a change (those pixels are restored from the input anyway).
    change = torch.where(weight > 0, (out - x).abs_(), 0.0).flatten(1).amax(1)
    return out, change
