"""Tiny synthetic images shared by the tests: smooth 'brains' and disc lesions."""

import contextlib
import signal

import numpy as np
from scipy.ndimage import gaussian_filter


def smooth_brains(n, size=32, seed=0):
    """Smooth healthy images: an elliptical foreground with a smooth texture, 0 outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.zeros((n, size, size), dtype=np.float32)
    for i in range(n):
        a, b = size * rng.uniform(0.36, 0.44), size * rng.uniform(0.30, 0.40)
        inside = (yy / a) ** 2 + (xx / b) ** 2 <= 1
        field = gaussian_filter(rng.standard_normal((size, size)), 3)
        field = 0.5 + 0.15 * field / (field.std() + 1e-8)
        out[i] = np.clip(field, 0.05, 1) * inside
    return out


def textured(n, size=32, seed=0):
    """Smooth brains with stripes: deforming them changes what is moved (for validation)."""
    brains = smooth_brains(n, size=size, seed=seed)
    stripes = 0.2 * np.sin(np.arange(size) * 2 * np.pi / 5)[None, :, None]
    return np.where(brains > 0, np.clip(brains + stripes, 0.05, 1), 0).astype(np.float32)


def add_discs(images, seed=1, radius=(3, 5)):
    """Insert one bright or dark disc into each image; return images and exact masks."""
    rng = np.random.default_rng(seed)
    size = images.shape[-1]
    yy, xx = np.mgrid[:size, :size]
    out = images.copy()
    masks = np.zeros(images.shape, dtype=bool)
    for i in range(len(images)):
        fg = np.argwhere(images[i] > 0)
        r = rng.uniform(*radius)
        while True:
            cy, cx = fg[rng.integers(len(fg))]
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            if np.all(images[i][disc] > 0):
                break
        value = 0.95 if i % 2 == 0 else 0.1
        out[i][disc] = value
        masks[i] = disc
    return out, masks


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail with ``TimeoutError`` if the block runs longer than ``seconds`` (main thread)."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
