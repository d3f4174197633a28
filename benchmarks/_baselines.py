"""Baselines of the quality benchmark that are not DISYRE.

- :class:`ConvAutoencoder` with :func:`fit_autoencoder` and :func:`autoencoder_maps`: a plain
  reconstruction autoencoder trained exactly as DISYRE is (the package's ``SliceBank``,
  ``Augmentation``, ``Trainer`` and ``Restorer``; same patches, augmentation, optimiser,
  schedule and inference windows), but with an identity "corruption": it learns to
  reproduce healthy patches through a bottleneck, and its map is ``|x - reconstruction|``.
- :func:`intensity_maps`, :func:`two_sided_intensity_maps` and :func:`mean_image_maps`:
  intensity thresholding (one-sided: bright lesions; two-sided: the distance to the
  brain's median intensity, bright or dark) and the distance to the mean healthy image.
- :func:`pyod_detectors`: PyOD detectors for slice-level scores on flattened slices.

``Trainer``, ``Restorer``, ``SliceBank`` and ``disyre_sk._data`` are private to the
package; the benchmark uses them on purpose, so that the only difference between DISYRE
and the autoencoder is the network and the corruption.
"""

from __future__ import annotations

import numpy as np
import torch
from _common import resolve_device
from sklearn.utils import check_random_state
from torch import nn

from disyre_sk import _data
from disyre_sk._engine.augment import Augmentation
from disyre_sk._engine.inference import Restorer
from disyre_sk._engine.training import SliceBank, Trainer
from disyre_sk.corruption import Corrupted

# ----------------------------------------------------------------------------- autoencoder


class IdentityCorruption:
    """The corruption protocol's do-nothing member: image unchanged, empty mask, severity 0.

    Trained with it, a restoration network learns plain reconstruction.
    """

    def sample_params(self, x, generator, foreground=None, severity=None):
        return {"severity": torch.zeros(x.shape[0], device=x.device)}

    def apply(self, x, params, foreground=None):
        return Corrupted(x, torch.zeros_like(x), params["severity"])

    def __call__(self, x, generator, foreground=None, severity=None):
        return self.apply(x, self.sample_params(x, generator, foreground, severity), foreground)


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
    ``Trainer`` and ``Restorer``; it is ignored.
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

    def forward(self, x: torch.Tensor, severity=None) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def scaled_slices(volumes: np.ndarray, intensity_range, slice_axis: int = 0):
    """Volumes as the detector's ``[0, 1]`` slices and their foregrounds (``_detector._fit``)."""
    foreground = _data.foreground_of(volumes, 0.0)
    scaled = _data.scale_intensities(volumes, foreground, intensity_range)
    return (
        _data.to_slices(scaled, True, slice_axis),
        _data.to_slices(foreground, True, slice_axis),
    )


def learn_range(volumes: np.ndarray, percentiles, random_state) -> tuple[float, float]:
    """The detector's intensity range of the training foreground."""
    foreground = _data.foreground_of(volumes, 0.0)
    rng = check_random_state(random_state)
    return _data.learn_intensity_range(volumes, foreground, tuple(percentiles), rng)


class AutoencoderBaseline:
    """Fit and map with :class:`ConvAutoencoder` through the package's own machinery.

    Parameters mirror :class:`~disyre_sk.DISYREDetector`'s training and inference
    parameters; ``severity`` is the single (ignored) severity handed to ``Restorer``.
    """

    def __init__(
        self,
        *,
        patch_size: int,
        widths,
        n_steps: int,
        batch_size: int,
        learning_rate: float,
        warmup_steps: int,
        stride: int,
        weight_decay: float = 1e-6,
        grad_clip: float | None = 1.0,
        inference_batch_size: int = 64,
        latent_channels: int = 16,
        intensity_percentiles=(0.5, 99.5),
        device="auto",
        random_state: int = 0,
    ):
        self.patch_size = patch_size
        self.widths = tuple(widths)
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.stride = stride
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.inference_batch_size = inference_batch_size
        self.latent_channels = latent_channels
        self.intensity_percentiles = intensity_percentiles
        self.device = device
        self.random_state = random_state

    def fit(self, volumes: np.ndarray) -> AutoencoderBaseline:
        multiple = 2 ** len(self.widths)
        if self.patch_size % multiple:
            raise ValueError(f"patch_size must be a multiple of {multiple} for this autoencoder")
        rng = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        self.device_ = resolve_device(self.device)
        self.precision_ = "bf16" if self.device_.type == "cuda" else "fp32"
        self.intensity_range_ = learn_range(volumes, self.intensity_percentiles, rng)
        slices, fg = scaled_slices(volumes, self.intensity_range_)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            network = ConvAutoencoder(self.widths, self.latent_channels)
        network = network.to(self.device_)
        bank = SliceBank(slices, fg, self.patch_size, self.device_)
        trainer = Trainer(
            network,
            bank,
            IdentityCorruption(),
            Augmentation(),
            n_steps=self.n_steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_clip=self.grad_clip,
            device=self.device_,
            precision=self.precision_,
            seed=train_seed,
        )
        self.history_ = trainer.run()
        self.network_ = network.eval()
        return self

    def decision_map(self, volumes: np.ndarray) -> np.ndarray:
        """``|x - reconstruction|`` on the detector's scaled intensities, 0 off the brain."""
        restorer = Restorer(
            self.network_,
            patch_size=self.patch_size,
            stride=self.stride,
            severities=(0.5,),
            mode="ensemble",
            batch_size=self.inference_batch_size,
            device=self.device_,
            precision=self.precision_,
        )
        out = np.empty(volumes.shape, dtype=np.float32)
        for i in range(volumes.shape[0]):  # one volume at a time: bounded memory
            slices, fg = scaled_slices(volumes[i : i + 1], self.intensity_range_)
            out[i] = restorer.maps(slices, fg).reshape(volumes.shape[1:])
        return out


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
