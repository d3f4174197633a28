"""``benchmarks/_baselines.py``: the autoencoder baseline is DISYRE with another network
and a corruption that does nothing, built from the public API alone."""

import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark
from sklearn.base import clone

from disyre_sk import DISYREDetector


@pytest.fixture(scope="module")
def baselines():
    return load_benchmark("_baselines")


def brains(n, seed):
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[:4, :32, :32]
    inside = (y - 15.5) ** 2 + (x - 15.5) ** 2 < 13**2
    vols = 0.5 + 0.1 * np.sin(x / 3.0) + 0.02 * rng.standard_normal((n, 4, 32, 32))
    return np.where(inside, vols, 0).astype(np.float32)


def test_identity_corruption_changes_nothing(baselines):
    x = torch.rand(3, 1, 16, 16)
    out = baselines.IdentityCorruption()(x, torch.Generator().manual_seed(0))
    assert torch.equal(out.image, x)
    assert not out.mask.any() and not out.severity.any()


def test_autoencoder_is_a_detector_with_a_bottleneck_network(baselines):
    ae = baselines.autoencoder(
        widths=(4, 8),
        latent_channels=2,
        patch_size=16,
        n_steps=3,
        batch_size=4,
        stride=8,
        device="cpu",
        random_state=0,
    )
    assert isinstance(clone(ae), DISYREDetector)
    ae.fit(brains(4, 0))
    assert isinstance(ae.network_, baselines.ConvAutoencoder)
    assert ae.network_.size_multiple == 4
    test = brains(1, 1)
    maps = ae.decision_map(test)
    # The raw residual: no post-processing, 0 off the brain, non-zero on it (a
    # bottleneck cannot copy its input).
    assert maps.shape == test.shape and np.all(maps[test == 0] == 0)
    assert maps[test != 0].min() >= 0 and maps[test != 0].mean() > 1e-3


def test_autoencoder_patch_must_fit_its_levels(baselines):
    # The detector checks the patch against the network's size_multiple (2 ** 3 here).
    ae = baselines.autoencoder(widths=(4, 8, 16), patch_size=20, n_steps=1, device="cpu")
    with pytest.raises(ValueError, match="multiple of 8"):
        ae.fit(brains(2, 0))
