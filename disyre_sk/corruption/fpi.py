"""Foreign patch interpolation (FPI): blend tissue from another image under a random mask.

The texture step of DISYRE (the user guide's method page, step 2): under a soft mask
``m``, the target ``x`` is blended with a foreign patch ``fp`` taken from another image
of the batch, ``x_c = x * (1 - a * m) + fp' * a * m``, where ``fp'`` is ``fp`` rescaled
to the min–max of ``x`` under the mask, so that the texture is foreign but the intensity
range is not.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Corrupted, _check_input, _finish, _rand, _resolve_severity, _work_dtype
from .shapes import _ShapedCorruption, sample_foreground_pixel

__all__ = ["FPICorruption"]


class FPICorruption(_ShapedCorruption):
    """Foreign patch interpolation under a random soft shape (the ISBI DISYRE corruption).

    For each sample: a soft mask ``m`` from :class:`~disyre_sk.corruption.shapes.RandomShape`,
    placed on a random foreground pixel; a foreign patch from another image of the batch;
    its intensities under the mask rescaled to the min–max of the target under the mask;
    and the blend ``x_c = x * (1 - a * m) + fp' * a * m`` with ``a ~ U(0, 1)``. The
    severity is ``a`` (0 where the mask is empty).

    The foreign image of sample ``b`` is sample ``(b + k) % B`` with a random
    ``k in [1, B - 1]``; the patch is cut around a random foreground pixel of that image
    and moved onto the target's mask centre, so that it holds tissue rather than
    background. With ``B = 1`` the foreign image is the sample itself rotated by 180°
    (flipped along both axes), cut around a random foreground pixel.

    Parameters
    ----------
    box_fraction : float, default=0.5
        Side of the box holding the shape, as a fraction of ``min(H, W)``.
    sigma_range : tuple of float, default=(0.0, 5.0)
        Range of the mask blur sigma in pixels (sharp to diffuse edges).
    shapes : tuple of str, default=("ellipse", "rectangle", "blob")
        Shapes to draw the mask from.
    size_range : tuple of float, default=(0.25, 1.0)
        Range of the shape's semi-axes, as fractions of half the box side.
    blob_roughness : float, default=0.8
        Boundary irregularity of blobs.

    See Also
    --------
    DAGCorruption : FPI followed by an intensity bias.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(4, 1, 32, 32)
    >>> x[:, :, 4:28, 4:28] = torch.rand(4, 1, 24, 24)
    >>> c = FPICorruption()
    >>> out = c(x, torch.Generator().manual_seed(0))
    >>> out.image.shape, bool(((out.severity >= 0) & (out.severity <= 1)).all())
    (torch.Size([4, 1, 32, 32]), True)
    >>> same = c(x, torch.Generator().manual_seed(0), severity=0.0)
    >>> bool(torch.equal(same.image, x))
    True
    """

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw the mask, the foreign source and the blend amplitude ``a_tex``.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        generator : torch.Generator
            Source of every random number, on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0``.
        severity : float, torch.Tensor or None, default=None
            Forces ``a_tex`` (hence the severity) to this value.

        Returns
        -------
        dict of str to torch.Tensor
            The shape parameters (see ``RandomShape.sample_params``) plus ``a_tex``
            ``(B,)``, ``source`` ``(B,)`` and ``source_center`` ``(B, 2)``.

        Examples
        --------
        >>> import torch
        >>> p = FPICorruption().sample_params(torch.rand(2, 1, 16, 16),
        ...                                   torch.Generator().manual_seed(0), severity=0.3)
        >>> p["a_tex"].tolist()
        [0.30000001192092896, 0.30000001192092896]
        """
        fg = _check_input(x, foreground, generator)
        params = self._shape().sample_params(fg, generator)
        params.update(_sample_texture_params(fg, generator))
        forced = _resolve_severity(severity, x.shape[0], x.device)
        if forced is not None:
            params["a_tex"] = forced
        return params

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Render the mask and blend the rescaled foreign patch; deterministic.

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
            ``(image, mask, severity)`` with ``severity = a_tex`` where the mask is
            non-empty, else 0.

        Examples
        --------
        >>> import torch
        >>> c, x = FPICorruption(), torch.rand(2, 1, 16, 16)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0))
        >>> bool(torch.equal(c.apply(x, p).image, c(x, torch.Generator().manual_seed(0)).image))
        True
        """
        fg = _check_input(x, foreground)
        dt = _work_dtype(x)
        xw = x.to(dt)
        mask = self._shape().render(params, fg, dtype=dt)
        out, nonempty = _apply_texture(xw, mask, params)
        return _finish(x, out, mask, params["a_tex"].to(dt) * nonempty)


# --------------------------------------------------------------------------- internals


def _foreign_pool(t: Tensor) -> Tensor:
    """Images that foreign patches are cut from: the batch itself, or a 180° copy if B = 1."""
    return t if t.shape[0] > 1 else t.flip(-2, -1)


def _sample_texture_params(fg: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
    """Draw the foreign source index, the foreign patch centre and ``a_tex ~ U(0, 1)``."""
    b, _, h, w = fg.shape
    dev = fg.device
    u_src = _rand(generator, b, device=dev)
    u_center = _rand(generator, b, device=dev)
    a_tex = _rand(generator, b, device=dev)
    # A random foreground pixel of every image; the source's one is the patch centre.
    pixel = sample_foreground_pixel(fg, u_center)
    if b > 1:
        # A random non-zero offset per sample: never the sample itself.
        k = 1 + (u_src * (b - 1)).long().clamp_(max=b - 2)
        source = (torch.arange(b, device=dev) + k) % b
        source_center = pixel[source]
    else:
        source = torch.zeros(1, dtype=torch.long, device=dev)
        # The same pixel in the 180°-rotated copy that serves as the foreign image.
        source_center = torch.tensor([h - 1, w - 1], device=dev) - pixel
    return {"a_tex": a_tex, "source": source, "source_center": source_center}


def _foreign_patch(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Source image of each sample, shifted so that its patch centre lands on the mask centre."""
    _, _, h, w = x.shape
    dev = x.device
    pool = _foreign_pool(x).reshape(-1)
    off = params["source_center"] - params["center"]  # (B, 2)
    yy = torch.arange(h, device=dev).unsqueeze(0) + off[:, :1]  # (B, H)
    xx = torch.arange(w, device=dev).unsqueeze(0) + off[:, 1:]  # (B, W)
    valid = ((yy >= 0) & (yy < h)).unsqueeze(2) & ((xx >= 0) & (xx < w)).unsqueeze(1)
    rows = (params["source"].unsqueeze(1) * h + yy.clamp(0, h - 1)) * w
    idx = rows.unsqueeze(2) + xx.clamp(0, w - 1).unsqueeze(1)  # (B, H, W) flat indices
    fp = torch.where(valid, torch.take(pool, idx), 0.0)
    return fp.unsqueeze(1)


def _masked_min_max(v: Tensor, support: Tensor, inside: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample min and max of ``v`` over ``support``.

    ``inside`` is the flat index of one support pixel per sample: filling the rest of the
    image with that pixel's value gives both extremes from one masked copy. Samples with
    an empty support get meaningless but finite values (their mask is zero).
    """
    fill = v.flatten(1).gather(1, inside.unsqueeze(1)).view(-1, 1, 1, 1)
    filled = torch.where(support, v, fill).flatten(1)
    return filled.amin(1), filled.amax(1)


def _apply_texture(x: Tensor, mask: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Blend the min–max-matched foreign patch into ``x``; return it and mask non-emptiness."""
    b = x.shape[0]
    fp = _foreign_patch(x, params)
    support = mask > 0
    peak, inside = mask.flatten(1).max(1)  # a support pixel, if there is one
    t_lo, t_hi = _masked_min_max(x, support, inside)
    f_lo, f_hi = _masked_min_max(fp, support, inside)
    f_range = f_hi - f_lo
    # A constant foreign patch maps to the target's minimum instead of dividing by zero.
    scale = torch.where(f_range > 1e-12, (t_hi - t_lo) / f_range.clamp_min(1e-12), 0.0)
    offset = t_lo - f_lo * scale
    fp = torch.addcmul(offset.view(b, 1, 1, 1), fp, scale.view(b, 1, 1, 1))
    # Guard against rounding: the patch must stay inside the target's range.
    fp = fp.clamp_(t_lo.view(b, 1, 1, 1), t_hi.view(b, 1, 1, 1))
    alpha = params["a_tex"].to(x.dtype).view(b, 1, 1, 1) * mask
    # Written as x + alpha * (fp - x): the same blend, exact (== x) when alpha is 0.
    return torch.addcmul(x, alpha, fp - x), peak > 0
