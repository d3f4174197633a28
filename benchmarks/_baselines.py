"""Baselines of the quality benchmark that are not DISYRE.

- :func:`autoencoder`: a plain reconstruction autoencoder (:class:`ConvAutoencoder`)
  trained exactly as DISYRE is, through :class:`~disyre_sk.DISYREDetector` itself with
  its public ``network`` and ``corruption`` parameters (same patches, augmentation,
  optimiser, schedule and inference windows), but with an identity "corruption": it
  learns to reproduce healthy patches through a bottleneck, and its map is
  ``|x - reconstruction|``.
- :func:`intensity_maps`, :func:`two_sided_intensity_maps` and :func:`mean_image_maps`:
  intensity thresholding (one-sided: bright lesions; two-sided: the distance to the
  brain's median intensity, bright or dark) and the distance to the mean healthy image.
- :func:`pyod_detectors`: PyOD detectors for slice-level scores on flattened slices.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from disyre_sk import DISYREDetector
from disyre_sk.corruption import Corrupted, Corruption

# ----------------------------------------------------------------------------- autoencoder


class IdentityCorruption(Corruption):
    """The corruption that does nothing: image unchanged, empty mask, severity 0.

    Trained with it, a restoration network learns plain reconstruction.
    """

    def sample_params(self, x, generator, foreground=None, severity=None):
        return {"severity": torch.zeros(x.shape[0], device=x.device)}

    def apply(self, x, params, foreground=None):
        return Corrupted(x, torch.zeros_like(x), params["severity"])


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    groups = min(8, cout)
    while cout % groups:
        groups -= 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, cout),
        nn.SiLU(),
    )


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder with a bottleneck and no skip connections.

    The encoder halves the resolution ``len(widths)`` times (``patch_size / 2**L`` pixels
    wide at the bottom, ``latent_channels`` channels: for a 32-pixel patch and three
    levels, 4×4×16 = 256 numbers for 1,024 pixels); the decoder mirrors it. Nothing
    bypasses the bottleneck, so the network cannot copy its input and has to learn what
    healthy patches look like.

    ``forward(x, severity)`` takes the severity only to fit the restoration protocol of
    :class:`~disyre_sk.DISYREDetector`'s ``network``; it is ignored.
    """

    def __init__(self, widths=(16, 32, 64), latent_channels: int = 16):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        enc: list[nn.Module] = [_conv_block(1, widths[0], 1)]
        cin = widths[0]
        for w in widths:
            enc.append(_conv_block(cin, w, 2))
            enc.append(_conv_block(w, w, 1))
            cin = w
        enc.append(nn.Conv2d(cin, latent_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [_conv_block(latent_channels, widths[-1], 1)]
        cin = widths[-1]
        for w in reversed(widths):
            dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
            dec.append(_conv_block(cin, w, 1))
            dec.append(_conv_block(w, w, 1))
            cin = w
        dec.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        self.n_levels = len(widths)
        # Inputs are halved len(widths) times: DISYREDetector pads its windows to this.
        self.size_multiple = 2 ** len(widths)

    @classmethod
    def from_config(cls, *, widths, latent_channels: int = 16, **unet_config) -> ConvAutoencoder:
        """Build from the UNet keyword arguments ``DISYREDetector`` passes to ``network``;
        the UNet-only ones (residual, attention, ...) do not apply and are ignored."""
        return cls(widths, latent_channels)

    def forward(self, x: torch.Tensor, severity=None) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def autoencoder(
    *, widths=(16, 32, 64), latent_channels: int = 16, **detector_settings
) -> DISYREDetector:
    """The autoencoder baseline: a ``DISYREDetector`` whose network is a
    :class:`ConvAutoencoder` and whose corruption does nothing.

    ``detector_settings`` are DISYRE's own training and inference settings (patch size,
    steps, batch, learning rate, stride, device, seed ...), so that only the network and
    the corruption differ. The map is the raw residual ``|x - reconstruction|`` at one
    (ignored) severity: no post-processing, no synthetic validation.
    """
    settings = dict(
        severities=(0.5,),
        inference="ensemble",
        validation_fraction=0.0,
        map_smoothing=0.0,
        map_normalization=None,
        map_standardization=None,
        map_erosion=0,
    )
    settings.update(detector_settings)
    return DISYREDetector(
        network=partial(ConvAutoencoder.from_config, latent_channels=latent_channels),
        widths=tuple(widths),
        corruption=IdentityCorruption(),
        **settings,
    )


# ----------------------------------------------------------------------------- intensity


def intensity_maps(volumes: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The scan itself inside the brain: thresholding it finds bright (T2) lesions."""
    return np.where(brain, volumes, 0.0).astype(np.float32)


def two_sided_intensity_maps(volumes: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``|x - median of the brain|`` per volume: thresholding it finds bright and dark lesions."""
    out = np.zeros(volumes.shape, dtype=np.float32)
    for i, (v, b) in enumerate(zip(volumes, brain)):
        if b.any():
            out[i] = np.where(b, np.abs(v - np.median(v[b])), 0.0)
    return out


def mean_image_maps(volumes: np.ndarray, brain: np.ndarray, healthy: np.ndarray) -> np.ndarray:
    """``|x - mean healthy image|`` inside the brain (the cohort shares one grid)."""
    mean = healthy.mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.where(brain, np.abs(volumes - mean), 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- PyOD


def downsample(slices: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor × factor`` pixels, flattened: ``(n, H/f * W/f)``."""
    n, h, w = slices.shape
    if factor > 1:
        h2, w2 = h // factor * factor, w // factor * factor
        slices = slices[:, :h2, :w2].reshape(n, h2 // factor, factor, w2 // factor, factor)
        slices = slices.mean(axis=(2, 4))
    return slices.reshape(n, -1).astype(np.float32)


def pyod_detectors(seed: int, ae_epochs: int, device: str) -> dict:
    """Name -> unfitted PyOD detector; the slow ones are kept small on purpose."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.pca import PCA

    return {
        "IForest": IForest(n_estimators=200, random_state=seed),
        "PCA": PCA(n_components=0.95, random_state=seed),
        "ECOD": ECOD(),
        "KNN": KNN(n_neighbors=5),
        "AutoEncoder": AutoEncoder(
            epoch_num=ae_epochs,
            batch_size=32,
            hidden_neuron_list=[128, 32],
            random_state=seed,
            verbose=0,
            device=device,
        ),
    }
