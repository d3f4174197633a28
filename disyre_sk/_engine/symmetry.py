"""The left-right symmetry prior of ``map_symmetry``.

A healthy brain is close to a mirror image of itself across the midline; most lesions
are not. Each voxel's asymmetry is the absolute difference between the scan and its
mirror image there (the mirror aligned to the scan's own midline, one voxel of in-plane
misalignment forgiven, smoothed by one voxel), read against the asymmetry of healthy
scans: ``symmetry`` is the share of healthy voxels at least as asymmetric, 1 where the
scan mirrors itself exactly and near 0 where it is more asymmetric than almost any
healthy tissue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["asymmetry", "mirror_shift", "reference_quantiles", "symmetry"]

N_QUANTILES = 101  # the healthy asymmetry's percentiles, the smallest value to the largest
_TOLERANCE = 1  # voxels of in-plane misalignment forgiven
_SIGMA = 1.0  # voxels, the asymmetry's smoothing
_VALUES_PER_SCAN = 250_000  # at most about this many per scan enter the percentiles


def _shift(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """``a`` moved by ``k`` along ``axis``, zero-filled (no wrap-around)."""
    if k == 0:
        return a
    out = np.zeros_like(a)
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if abs(k) >= a.shape[axis]:
        return out
    src[axis] = slice(0, a.shape[axis] - k) if k > 0 else slice(-k, None)
    dst[axis] = slice(k, None) if k > 0 else slice(0, a.shape[axis] + k)
    out[tuple(dst)] = a[tuple(src)]
    return out


def mirror_shift(image: np.ndarray) -> int:
    """Shift along the last axis that best aligns an image with its mirror image.

    The mirror of ``image`` (flipped along its last axis), moved by the shift, matches
    ``image`` best (least mean absolute difference of their in-plane mean images); the
    mirror plane lies at ``(W - 1 + shift) / 2``. Searched over integers up to a
    quarter of the width, so a head off the centre of its field of view is mirrored
    across its own midline.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (D, H, W)
        One scan, background 0.

    Returns
    -------
    shift : int

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((8, 20))
    >>> image[2:6, 5:11] = 1.0  # a block centred 2 columns left of the middle
    >>> mirror_shift(image)
    -4
    """
    plane = image.reshape(-1, *image.shape[-2:]).mean(axis=0) if image.ndim == 3 else image
    plane = np.asarray(plane, dtype=np.float64)
    mirrored = plane[:, ::-1]
    limit = max(1, plane.shape[-1] // 4)
    errors = {k: np.abs(plane - _shift(mirrored, k, -1)).mean() for k in range(-limit, limit + 1)}
    # Ties (a blank image) go to the smallest shift.
    return min(errors, key=lambda k: (errors[k], abs(k)))


def asymmetry(image: np.ndarray, shift: int | None = None) -> np.ndarray:
    """Per-voxel absolute difference between a scan and its mirror image.

    At each voxel, the smallest absolute difference to the mirror image (flipped along
    the last axis and moved by ``shift``) within one voxel in the last two axes, then
    smoothed by a Gaussian of one voxel.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (D, H, W)
        One scan on the ``[0, 1]`` scale the network sees.
    shift : int, optional
        The mirror's shift; ``None`` finds it with :func:`mirror_shift`.

    Returns
    -------
    asymmetry : ndarray of float32, the shape of ``image``

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((12, 12), np.float32)
    >>> image[2:10, 2:10] = 0.5  # symmetric across the middle
    >>> image[4:6, 3:5] = 1.0  # a bright patch on one side only
    >>> a = asymmetry(image)
    >>> round(float(a[4, 3]), 2), round(float(a[8, 8]), 2)
    (0.21, 0.0)
    """
    image = np.asarray(image, dtype=np.float32)
    if shift is None:
        shift = mirror_shift(image)
    mirrored = _shift(image[..., ::-1], int(shift), -1)
    best = np.full(image.shape, np.inf, dtype=np.float32)
    for dy in range(-_TOLERANCE, _TOLERANCE + 1):
        rows = _shift(mirrored, dy, -2)
        for dx in range(-_TOLERANCE, _TOLERANCE + 1):
            np.minimum(best, np.abs(image - _shift(rows, dx, -1)), out=best)
    return ndi.gaussian_filter(best, _SIGMA).astype(np.float32)


def reference_quantiles(images: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Percentiles (the 0th to the 100th) of the asymmetry of healthy scans in their foreground.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, D, H, W)
        Healthy scans on the ``[0, 1]`` scale.
    foreground : ndarray of bool, same shape

    Returns
    -------
    quantiles : ndarray of float64, shape (101,)
        Non-decreasing.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).uniform(0.2, 1.0, (3, 12, 12))
    >>> q = reference_quantiles(images, images > 0)
    >>> q.shape, bool(np.all(np.diff(q) >= 0))
    ((101,), True)
    """
    # Percentiles need no more than a few hundred thousand values a scan: an even stride
    # keeps 1-mm volumes (millions of brain voxels, 32 scans) from a copy of every one.
    values = []
    for image, fg in zip(images, foreground):
        inside = asymmetry(image)[fg]
        values.append(inside[:: max(1, inside.size // _VALUES_PER_SCAN)])
    pooled = np.concatenate(values) if values else np.zeros(0)
    if not pooled.size:
        return np.zeros(N_QUANTILES)
    return np.quantile(pooled.astype(np.float64), np.linspace(0.0, 1.0, N_QUANTILES))


def symmetry(image: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Share of healthy voxels at least as asymmetric as each voxel of ``image``.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (D, H, W)
        One scan on the ``[0, 1]`` scale.
    quantiles : ndarray of shape (101,)
        From :func:`reference_quantiles`.

    Returns
    -------
    symmetry : ndarray of float32 in [0, 1], the shape of ``image``
        1 where the scan is as symmetric as the most symmetric healthy tissue, 0 beyond
        the most asymmetric.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> base = rng.uniform(0.4, 0.6, (4, 16, 16))
    >>> healthy = (base + base[..., ::-1]) / 2 + rng.normal(0, 0.05, base.shape)
    >>> q = reference_quantiles(healthy, healthy > 0)
    >>> round(float(np.median(symmetry(healthy[0], q))), 1)  # healthy: half on each side
    0.5
    >>> scan = healthy[0].copy()
    >>> scan[6:9, 2:5] = 1.0  # a bright patch on one side
    >>> float(symmetry(scan, q)[7, 3])
    0.0
    """
    a = asymmetry(image)
    levels = np.linspace(1.0, 0.0, len(quantiles))
    q = np.asarray(quantiles, dtype=np.float64)
    out = np.interp(a, q, levels, left=1.0, right=0.0)
    # No healthy voxel is more symmetric than q[0]: ties with it count as fully symmetric.
    return np.where(a <= q[0], 1.0, out).astype(np.float32)
