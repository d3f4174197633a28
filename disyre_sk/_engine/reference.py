"""Location standardisation: each voxel's map value against healthy maps at that voxel.

A new person's healthy anatomy differs from the training subjects' everywhere, and the
network restores some places (ventricle walls, the brain's base) less surely than
others. Compared with what the healthy training scans' maps hold at the same voxel, a
value scores by how unusual it is *there*. This needs scans on one grid (registered to
a template), as a fixed ``image_shape`` already implies.

Three steps, all in numpy on the CPU: :func:`reference_sums` accumulates the healthy
maps (sums add across shards and processes), :func:`location_reference` turns the sums
into a per-voxel mean and scale, :func:`standardize` applies them to new maps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# Neighbouring voxels share their statistics (a Gaussian of this sigma, in voxels): a
# few dozen healthy scans cannot estimate a spread voxel by voxel.
REFERENCE_SIGMA = 1.0
# Smoothed foreground counts below this are treated as no data (avoids 0 / 0).
_COUNT_EPS = 1e-3


def reference_sums(maps: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Per-voxel sum of the maps, of their squares and of the foreground count.

    Parameters
    ----------
    maps : ndarray of shape (n, *image_shape)
        Healthy scans' maps (0 outside the foreground).
    foreground : ndarray of bool, same shape
        Their foreground masks.

    Returns
    -------
    sums : ndarray of float64, shape (3, *image_shape)
        Add the sums of several shards to pool them.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk._engine.reference import reference_sums
    >>> maps = np.array([[1.0, 0.0], [3.0, 2.0]])
    >>> reference_sums(maps, maps > 0).tolist()
    [[4.0, 2.0], [10.0, 4.0], [2.0, 1.0]]
    """
    m = np.where(foreground, maps, 0.0).astype(np.float64)
    return np.stack([m.sum(0), (m * m).sum(0), np.asarray(foreground, np.float64).sum(0)])


def location_reference(
    sums: np.ndarray, sigma: float = REFERENCE_SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel mean and scale of the healthy maps, pooled over a Gaussian neighbourhood.

    The scale is the pooled standard deviation plus a floor, the median standard
    deviation over the voxels that any healthy scan covers: a voxel where the healthy
    maps happen to agree closely does not turn every small change into a large score.

    Parameters
    ----------
    sums : ndarray of shape (3, *image_shape)
        From :func:`reference_sums`, added over every shard.
    sigma : float, default=1.0
        Standard deviation, in voxels, of the pooling Gaussian.

    Returns
    -------
    mean, scale : ndarray of float32, shape image_shape
        ``scale > 0`` everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk._engine.reference import location_reference, reference_sums
    >>> maps = np.random.default_rng(0).uniform(0, 1, (20, 8, 8))
    >>> mean, scale = location_reference(reference_sums(maps, maps >= 0))
    >>> mean.shape, bool((scale > 0).all()), bool(abs(mean.mean() - 0.5) < 0.05)
    ((8, 8), True, True)
    """
    total, square, count = (ndi.gaussian_filter(s, sigma) for s in sums)
    count = count + _COUNT_EPS
    mean = total / count
    sd = np.sqrt(np.maximum(square / count - mean * mean, 0.0))
    covered = sums[2] > 0
    floor = float(np.median(sd[covered])) if covered.any() else 0.0
    # Maps that are all zero (an untrained network) leave no spread to measure.
    floor = max(floor, 1e-8)
    return mean.astype(np.float32), (sd + floor).astype(np.float32)


def standardize(
    maps: np.ndarray, foreground: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """``max(map - mean, 0) / scale`` inside the foreground, 0 outside.

    Only excess over the healthy maps counts: a voxel restored *more* surely than
    healthy tissue there is not anomalous.

    Parameters
    ----------
    maps : ndarray of shape (n, *image_shape)
        Maps to standardise.
    foreground : ndarray of bool, same shape
        Their foreground masks.
    mean, scale : ndarray of shape image_shape
        From :func:`location_reference`.

    Returns
    -------
    ndarray of float32, same shape as ``maps``

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk._engine.reference import standardize
    >>> maps = np.array([[0.5, 3.0, 2.0]])
    >>> standardize(maps, maps > 0, np.ones(3), np.full(3, 0.5)).tolist()
    [[0.0, 4.0, 2.0]]
    """
    z = np.maximum(maps - mean, 0.0) / scale
    return np.where(foreground, z, 0.0).astype(np.float32)
