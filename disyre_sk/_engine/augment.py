"""Batched, on-device augmentation of healthy patches before corruption.

Everything runs on the device of the batch and draws from one ``torch.Generator``, so a
GPU never waits for per-sample CPU work and a fixed seed reproduces the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augmentation"]


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _chance(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


@dataclass(frozen=True)
class Augmentation:
    """Light spatial and intensity augmentation of a batch of healthy patches.

    Each transform is applied to a sample with its own probability. The spatial ones
    (flips, rotation and scaling, elastic deformation) are fused into a single
    ``grid_sample``; the intensity ones (gamma, brightness, noise, blur) act on the
    foreground only, and the result is clipped to ``[0, 1]``.

    Parameters
    ----------
    p_flip : float, default=0.5
        Probability of a left-right flip.
    p_affine : float, default=0.3
        Probability of a rotation and scaling.
    max_rotation : float, default=10.0
        Largest rotation, in degrees.
    max_scale : float, default=0.1
        Largest relative change of scale.
    p_elastic : float, default=0.2
        Probability of a smooth elastic deformation.
    elastic_magnitude : float, default=0.03
        Largest displacement of the elastic field, as a fraction of the patch side.
    p_gamma : float, default=0.3
        Probability of a gamma change, gamma in ``[0.7, 1.5]``.
    p_brightness : float, default=0.3
        Probability of a multiplicative brightness change of up to 10 %.
    p_noise : float, default=0.2
        Probability of additive Gaussian noise with a standard deviation up to 0.03.
    p_blur : float, default=0.1
        Probability of a light Gaussian blur.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(4, 1, 16, 16)
    >>> y, fg = Augmentation()(x, x > 0, g)
    >>> tuple(y.shape), bool(y.min() >= 0), bool(y.max() <= 1)
    ((4, 1, 16, 16), True, True)
    """

    p_flip: float = 0.5
    p_affine: float = 0.3
    max_rotation: float = 10.0
    max_scale: float = 0.1
    p_elastic: float = 0.2
    elastic_magnitude: float = 0.03
    p_gamma: float = 0.3
    p_brightness: float = 0.3
    p_noise: float = 0.2
    p_blur: float = 0.1

    def __call__(
        self, x: torch.Tensor, foreground: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Parameters
        ----------
        x : torch.Tensor of shape (B, 1, H, W)
            Patches with intensities in ``[0, 1]``.
        foreground : torch.Tensor of shape (B, 1, H, W), dtype bool
            Foreground of each patch; it follows the spatial transforms.
        generator : torch.Generator
            Source of every random number, on the device of ``x``.

        Returns
        -------
        x : torch.Tensor of shape (B, 1, H, W)
            Augmented patches in ``[0, 1]``, zero outside the foreground.
        foreground : torch.Tensor of shape (B, 1, H, W), dtype bool
            Transformed foreground.
        """
        x, foreground = self._spatial(x, foreground, generator)
        x = self._intensity(x, foreground, generator)
        return x, foreground

    def _spatial(self, x, fg, g):
        b, _, h, w = x.shape
        dev = x.device
        flip = torch.where(_chance(b, self.p_flip, g, dev), -1.0, 1.0)
        affine = _chance(b, self.p_affine, g, dev)
        angle = _uniform(b, -1, 1, g, dev) * math.radians(self.max_rotation) * affine
        scale = 1 + _uniform(b, -1, 1, g, dev) * self.max_scale * affine
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = cos * flip
        theta[:, 0, 1] = -sin
        theta[:, 1, 0] = sin * flip
        theta[:, 1, 1] = cos
        grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
        # A coarse random field, upsampled, gives a smooth elastic deformation.
        elastic = _chance(b, self.p_elastic, g, dev).float().view(b, 1, 1, 1)
        coarse = torch.randn(b, 2, 4, 4, generator=g, device=dev)
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid + (2 * self.elastic_magnitude * elastic * field).permute(0, 2, 3, 1)
        # Samples drawn with no spatial change are left bitwise untouched.
        moved = (flip < 0) | affine | (elastic.view(b) > 0)
        stacked = torch.cat([x, fg.to(x.dtype)], dim=1)
        warped = F.grid_sample(stacked, grid.to(x.dtype), align_corners=False)
        keep = moved.view(b, 1, 1, 1)
        x = torch.where(keep, warped[:, :1], x)
        fg = torch.where(keep, warped[:, 1:] > 0.5, fg)
        return x * fg, fg

    def _intensity(self, x, fg, g):
        b = x.shape[0]
        dev = x.device
        shape = (b, 1, 1, 1)
        gamma = torch.where(
            _chance(b, self.p_gamma, g, dev), _uniform(b, 0.7, 1.5, g, dev), 1.0
        ).view(shape)
        x = x.clamp(min=0).pow(gamma.to(x.dtype))
        bright = torch.where(
            _chance(b, self.p_brightness, g, dev), _uniform(b, 0.9, 1.1, g, dev), 1.0
        ).view(shape)
        x = x * bright.to(x.dtype)
        sigma = torch.where(
            _chance(b, self.p_noise, g, dev), _uniform(b, 0.0, 0.03, g, dev), 0.0
        ).view(shape)
        x = x + sigma.to(x.dtype) * torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
        blur = _chance(b, self.p_blur, g, dev).view(shape)
        x = torch.where(blur, _blur(x), x)
        return x.clamp(0, 1) * fg


def _blur(x: torch.Tensor) -> torch.Tensor:
    t = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / 0.8) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
