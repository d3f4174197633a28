"""Array-level preprocessing: foreground masks, intensity normalisation, cropping.

Public through :mod:`disyre_sk.io`; kept apart so each file stays short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "CropRecord",
    "center_crop_or_pad",
    "crop_to_foreground",
    "foreground_mask",
    "normalize_intensity",
    "uncrop",
]


# --------------------------------------------------------------------------- masks


def _otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = (w0 * w1 * (mu0 - mu1) ** 2)[:-1]  # between-class variance for each cut
    # Well-separated classes give a plateau of equally good cuts through the empty gap:
    # take its middle rather than its first bin, which hugs the darker class's tail.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-6))
    return float(0.5 * (centers[best[0]] + centers[best[-1]]))


def foreground_mask(
    volume: np.ndarray,
    method: str = "nonzero",
    *,
    threshold: float | None = None,
    largest_component: bool | None = None,
    fill_holes: bool | None = None,
) -> np.ndarray:
    """Boolean brain (foreground) mask of a volume or image.

    Parameters
    ----------
    volume : ndarray
        A 2-D slice or 3-D volume.
    method : {"nonzero", "otsu", "threshold"}, default="nonzero"
        ``"nonzero"``: every non-zero voxel (right for skull-stripped scans, whose
        background is exactly 0). ``"otsu"``: voxels above Otsu's threshold of the
        intensity histogram (for scans with a noisy, non-zero background).
        ``"threshold"``: voxels above ``threshold``.
    threshold : float, optional
        The cut for ``method="threshold"``.
    largest_component : bool, optional
        Keep only the largest connected component. Default: False for ``"nonzero"``,
        True otherwise.
    fill_holes : bool, optional
        Fill enclosed holes (``scipy.ndimage.binary_fill_holes``). Default: False for
        ``"nonzero"``, True otherwise.

    Returns
    -------
    mask : ndarray of bool, same shape as ``volume``
        True on the foreground.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.io import foreground_mask
    >>> v = np.zeros((5, 5)); v[1:4, 1:4] = 1.0; v[2, 2] = 0.0
    >>> int(foreground_mask(v).sum()), int(foreground_mask(v, fill_holes=True).sum())
    (8, 9)
    """
    volume = np.asarray(volume)
    if method == "nonzero":
        mask = volume != 0
        auto = False
    elif method == "otsu":
        finite = volume[np.isfinite(volume)]
        if finite.size == 0 or finite.min() == finite.max():
            return np.zeros(volume.shape, dtype=bool)
        mask = volume > _otsu_threshold(finite)
        auto = True
    elif method == "threshold":
        if threshold is None:
            raise ValueError('method="threshold" needs a `threshold` value')
        mask = volume > threshold
        auto = True
    else:
        raise ValueError(f"method must be 'nonzero', 'otsu' or 'threshold', got {method!r}")
    if (auto if largest_component is None else largest_component) and mask.any():
        labels, n = ndi.label(mask)
        if n > 1:
            mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    if auto if fill_holes is None else fill_holes:
        mask = ndi.binary_fill_holes(mask)
    return mask


def normalize_intensity(
    volume: np.ndarray,
    mask: np.ndarray | None = None,
    percentiles: tuple[float, float] = (0.0, 98.0),
) -> np.ndarray:
    """Map a volume's foreground percentiles to [0, 1], clip, and zero the background.

    The ``percentiles[0]``-th foreground percentile maps to 0 and the ``percentiles[1]``-th
    to 1 (the usual brain-MRI anomaly-detection preprocessing: 0th–98th). Values outside
    are clipped. If the foreground is constant it maps to 1.

    Parameters
    ----------
    volume : ndarray
        One image or volume (any number of dimensions).
    mask : ndarray of bool, optional
        The foreground; default ``foreground_mask(volume)`` (the non-zero voxels).
    percentiles : (float, float), default=(0, 98)
        Low and high percentiles, ``0 <= low < high <= 100``.

    Returns
    -------
    normalized : ndarray of float32
        Same shape as ``volume``, values in [0, 1], 0 outside ``mask``.

    Raises
    ------
    ValueError
        If the mask is empty or its shape differs, or the percentiles are invalid.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.io import normalize_intensity
    >>> v = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 100.0])  # 0 = background
    >>> [round(float(x), 2) for x in normalize_intensity(v, percentiles=(0, 75))]
    [0.0, 0.0, 0.33, 0.67, 1.0, 1.0]
    """
    volume = np.asarray(volume, dtype=np.float32)
    lo_p, hi_p = (float(p) for p in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    mask = foreground_mask(volume) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    values = volume[mask]
    if values.size == 0:
        raise ValueError("cannot normalise: the foreground mask is empty")
    lo, hi = np.percentile(values, [lo_p, hi_p])
    out = np.zeros(volume.shape, dtype=np.float32)
    if hi > lo:
        out[mask] = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    else:
        out[mask] = 1.0
    return out


# --------------------------------------------------------------------------- cropping


@dataclass(frozen=True)
class CropRecord:
    """How an array was cut out of (and padded from) a larger one; see :func:`uncrop`.

    Parameters
    ----------
    original_shape : tuple of int
        Shape of the array before cropping.
    start, stop : tuple of int
        Per axis, the kept index range ``[start, stop)`` of the original array.
    pad_before, pad_after : tuple of int
        Per axis, zero padding added around the kept range (only
        :func:`center_crop_or_pad` pads).

    Examples
    --------
    >>> from disyre_sk.io import CropRecord
    >>> CropRecord((4,), (1,), (3,), (0,), (0,)).cropped_shape
    (2,)
    """

    original_shape: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]

    @property
    def cropped_shape(self) -> tuple[int, ...]:
        """Shape of the cropped (and padded) array."""
        return tuple(
            b - a + p + q
            for a, b, p, q in zip(self.start, self.stop, self.pad_before, self.pad_after)
        )


def _apply_record(volume: np.ndarray, record: CropRecord) -> np.ndarray:
    cut = volume[tuple(slice(a, b) for a, b in zip(record.start, record.stop))]
    pads = list(zip(record.pad_before, record.pad_after))
    return np.pad(cut, pads) if any(p or q for p, q in pads) else cut.copy()


def crop_to_foreground(
    volume: np.ndarray, mask: np.ndarray | None = None, margin: int | Sequence[int] = 0
) -> tuple[np.ndarray, CropRecord]:
    """Crop to the bounding box of the foreground plus a margin (clipped at the borders).

    Parameters
    ----------
    volume : ndarray
        Image or volume.
    mask : ndarray of bool, optional
        Foreground; default the non-zero voxels of ``volume``.
    margin : int or sequence of int, default=0
        Voxels kept around the bounding box, per axis or for all axes.

    Returns
    -------
    cropped : ndarray
        A copy of the cropped region.
    record : CropRecord
        Feed it to :func:`uncrop` (or :func:`save_map`) to put an array back.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.io import crop_to_foreground, uncrop
    >>> v = np.zeros((6, 6)); v[2:4, 1:3] = 1
    >>> c, rec = crop_to_foreground(v, margin=1)
    >>> c.shape, bool((uncrop(c, rec) == v).all())
    ((4, 4), True)
    """
    volume = np.asarray(volume)
    mask = foreground_mask(volume) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    if not mask.any():
        raise ValueError("cannot crop to the foreground: the mask is empty")
    margins = np.broadcast_to(np.asarray(margin, dtype=int), (volume.ndim,))
    if (margins < 0).any():
        raise ValueError(f"margin must be non-negative, got {margin}")
    idx = np.argwhere(mask)
    start = np.maximum(idx.min(0) - margins, 0)
    stop = np.minimum(idx.max(0) + 1 + margins, volume.shape)
    zeros = (0,) * volume.ndim
    record = CropRecord(
        tuple(volume.shape), tuple(map(int, start)), tuple(map(int, stop)), zeros, zeros
    )
    return _apply_record(volume, record), record


def center_crop_or_pad(volume: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, CropRecord]:
    """Centre-crop and/or zero-pad an array to ``shape`` (per axis, as needed).

    Parameters
    ----------
    volume : ndarray
        Image or volume.
    shape : sequence of int
        Target shape, one entry per axis of ``volume``.

    Returns
    -------
    resized : ndarray of shape ``shape``
        The centre-cropped and/or zero-padded array.
    record : CropRecord
        :func:`uncrop` with it restores the original shape (padding dropped, cropped
        borders filled with zeros).

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.io import center_crop_or_pad
    >>> out, rec = center_crop_or_pad(np.ones((3, 8)), (5, 4))
    >>> out.shape, rec.start, rec.pad_before
    ((5, 4), (0, 2), (1, 0))
    """
    volume = np.asarray(volume)
    shape = tuple(int(s) for s in shape)
    if len(shape) != volume.ndim or min(shape) < 1:
        raise ValueError(f"shape {shape} does not fit a {volume.ndim}-D array of positive sizes")
    start, stop, before, after = [], [], [], []
    for n, m in zip(volume.shape, shape):
        cut = max(n - m, 0)
        pad = max(m - n, 0)
        start.append(cut // 2)
        stop.append(cut // 2 + min(n, m))
        before.append(pad // 2)
        after.append(pad - pad // 2)
    record = CropRecord(tuple(volume.shape), tuple(start), tuple(stop), tuple(before), tuple(after))
    return _apply_record(volume, record), record


def uncrop(array: np.ndarray, record: CropRecord, fill_value: float = 0) -> np.ndarray:
    """Put a cropped array back into an array of the original shape.

    Parameters
    ----------
    array : ndarray of shape ``record.cropped_shape``
        The cropped (e.g. processed) array.
    record : CropRecord
        From :func:`crop_to_foreground` or :func:`center_crop_or_pad`.
    fill_value : scalar, default=0
        Value of the voxels that were cropped away.

    Returns
    -------
    full : ndarray of shape ``record.original_shape``
        ``array`` in place, ``fill_value`` elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.io import center_crop_or_pad, uncrop
    >>> v = np.arange(6.0).reshape(2, 3)
    >>> c, rec = center_crop_or_pad(v, (4, 3))
    >>> bool((uncrop(c, rec) == v).all())
    True
    """
    array = np.asarray(array)
    if array.shape != record.cropped_shape:
        raise ValueError(
            f"array shape {array.shape} does not match the crop record ({record.cropped_shape})"
        )
    inner = array[
        tuple(slice(p, n - q) for p, q, n in zip(record.pad_before, record.pad_after, array.shape))
    ]
    full = np.full(record.original_shape, fill_value, dtype=array.dtype)
    full[tuple(slice(a, b) for a, b in zip(record.start, record.stop))] = inner
    return full
