"""Additive Gaussian noise on the foreground: the ablation that DISYRE argues against."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import (
    Corrupted,
    Corruption,
    _check_input,
    _finish,
    _rand,
    _resolve_severity,
    _work_dtype,
)

__all__ = ["GaussianCorruption"]


class GaussianCorruption(Corruption):
    """Gaussian noise of random level on the whole foreground (the diffusion-style ablation).

    ``x_c = clip(x + s * sigma_max * eps, 0, 1)`` on the foreground, ``eps ~ N(0, 1)`` per
    pixel, ``s ~ U(0, 1)`` per sample; background pixels are untouched. The mask is the
    foreground and the severity is ``s`` (0 for a sample without foreground).

    Parameters
    ----------
    sigma_max : float, default=0.5
        Noise standard deviation at severity 1, in intensity units.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(2, 1, 16, 16)
    >>> x[:, :, 4:12, 4:12] = 0.5
    >>> out = GaussianCorruption()(x, torch.Generator().manual_seed(0), severity=0.5)
    >>> out.severity.tolist(), bool(torch.equal(out.image[x == 0], x[x == 0]))
    ([0.5, 0.5], True)
    """

    def __init__(self, sigma_max: float = 0.5) -> None:
        if not sigma_max >= 0:
            raise ValueError(f"sigma_max must be >= 0; got {sigma_max!r}")
        self.sigma_max = sigma_max

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw the noise level ``s`` and the noise field.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        generator : torch.Generator
            Source of every random number, on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0`` (unused when sampling).
        severity : float, torch.Tensor or None, default=None
            Forces the noise level ``s``.

        Returns
        -------
        dict of str to torch.Tensor
            ``severity`` ``(B,)`` and ``noise`` ``(B, 1, H, W)`` (standard normal).

        Examples
        --------
        >>> import torch
        >>> p = GaussianCorruption().sample_params(torch.rand(2, 1, 8, 8),
        ...                                        torch.Generator().manual_seed(0))
        >>> p["noise"].shape
        torch.Size([2, 1, 8, 8])
        """
        _check_input(x, foreground, generator)
        s = _rand(generator, x.shape[0], device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        forced = _resolve_severity(severity, x.shape[0], x.device)
        return {"severity": s if forced is None else forced, "noise": noise}

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Add the scaled noise on the foreground and clip; deterministic.

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
            ``(image, mask, severity)`` with ``mask`` the foreground.

        Examples
        --------
        >>> import torch
        >>> c, x = GaussianCorruption(), torch.rand(2, 1, 8, 8)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0), severity=0.0)
        >>> bool(torch.equal(c.apply(x, p).image, x))
        True
        """
        fg = _check_input(x, foreground)
        b = x.shape[0]
        s = params["severity"]
        dt = _work_dtype(x)
        mask = fg.to(dt)
        level = (s.to(dt) * self.sigma_max).view(b, 1, 1, 1)
        out = x.to(dt) + level * params["noise"].to(dt)
        has_fg = fg.flatten(1).any(1)
        return _finish(x, out, mask, s * has_fg)
