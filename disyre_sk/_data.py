"""Input bookkeeping for the detector: layouts, foreground, intensity scaling, slicing.

Public methods of the estimator validate and keep shapes; the functions here turn user
arrays into the float32 ``[0, 1]`` slices the network sees, and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
from scipy import ndimage as ndi

from .metrics._core import top_k_count

# Volumes larger than this many foreground voxels are subsampled to learn the
# intensity range: percentiles of ten million voxels are as good as of all of them.
_MAX_PERCENTILE_VOXELS = 10_000_000
_F64_MAX = float(np.finfo(np.float64).max)


@dataclass(frozen=True)
class Layout:
    """How a validated input array maps onto images.

    ``kind`` is ``"table"`` for ``(n, F)`` input (images of ``image_shape``),
    ``"slices"`` for ``(n, H, W)`` and ``"volumes"`` for ``(n, D, H, W)``.
    """

    kind: str
    image_shape: tuple[int, ...]

    @property
    def is_volume(self) -> bool:
        return len(self.image_shape) == 3


def resolve_layout(X: np.ndarray, image_shape) -> Layout:
    """Read the layout of a finite numeric array (the API page's input layouts)."""
    if X.ndim in (3, 4) and 0 in X.shape[1:]:
        raise ValueError(
            f"X has zero-size images: shape {X.shape}. Every image axis needs at least one voxel."
        )
    if X.ndim == 2:
        if image_shape is None:
            # A plain table is read as n images of one row: each feature is a pixel.
            return Layout("table", (1, X.shape[1]))
        raw = np.asarray(image_shape).ravel()
        integral = (
            raw.dtype.kind in "iuf" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))
        )
        shape = tuple(int(s) for s in raw) if integral else ()
        if len(shape) not in (2, 3) or any(s < 1 for s in shape):
            raise ValueError(
                "image_shape must be (H, W) or (D, H, W) with positive integer sizes, got "
                f"{image_shape!r}."
            )
        if int(np.prod(shape)) != X.shape[1]:
            raise ValueError(
                f"image_shape={shape} holds {int(np.prod(shape))} pixels but X has "
                f"{X.shape[1]} features per sample; they must match."
            )
        return Layout("table", shape)
    if X.ndim == 3:
        return Layout("slices", tuple(X.shape[1:]))
    if X.ndim == 4:
        return Layout("volumes", tuple(X.shape[1:]))
    raise ValueError(
        f"X must be (n, H, W) slices, (n, D, H, W) volumes or (n, F) with image_shape; "
        f"got an array of shape {X.shape}. For one image, add a leading axis: X[None]."
    )


def as_images(X: np.ndarray, layout: Layout) -> np.ndarray:
    """View validated input as ``(n, *image_shape)``."""
    return X.reshape((X.shape[0], *layout.image_shape))


def foreground_of(images: np.ndarray, background: float | None) -> np.ndarray:
    """Foreground mask: voxels that differ from the background value."""
    if background is None:
        return np.ones(images.shape, dtype=bool)
    dtype = images.dtype
    # No voxel can equal a finite value beyond the dtype's range; comparing would cast it
    # to inf with an overflow warning. (Other types are left to parameter validation.)
    if isinstance(background, Real) and np.issubdtype(dtype, np.floating):
        if np.isfinite(background) and abs(float(background)) > float(np.finfo(dtype).max):
            return np.ones(images.shape, dtype=bool)
    return images != background


def check_foreground(foreground: np.ndarray, what: str) -> None:
    """Refuse input with no foreground voxel at all.

    Single empty samples are allowed (an empty slice or a blank image has nothing
    anomalous: its map is 0); input where every voxel is background is a mistake.
    """
    if not foreground.any():
        raise ValueError(
            f"{what} has no foreground voxel at all: every voxel equals the background value "
            "(background=0 by default). Pass skull-stripped scans with a zero background, or "
            "set background=None to treat every voxel as foreground."
        )


def foreground_boxes(foreground: np.ndarray) -> np.ndarray:
    """Bounding box ``[row0, row1, col0, col1)`` of each ``(H, W)`` slice's foreground.

    ``foreground`` is ``(n, H, W)`` bool; the result is ``(n, 4)`` int. Every slice must
    hold some foreground (an empty one would get a meaningless box).
    """
    rows, cols = foreground.any(axis=2), foreground.any(axis=1)
    return np.stack(
        [
            rows.argmax(1),
            rows.shape[1] - rows[:, ::-1].argmax(1),
            cols.argmax(1),
            cols.shape[1] - cols[:, ::-1].argmax(1),
        ],
        axis=1,
    )


def union_box(boxes: np.ndarray) -> np.ndarray:
    """The smallest box ``[row0, row1, col0, col1)`` holding all ``(n, 4)`` ``boxes``."""
    return np.array([boxes[:, 0].min(), boxes[:, 1].max(), boxes[:, 2].min(), boxes[:, 3].max()])


def learn_intensity_range(
    images: np.ndarray, foreground: np.ndarray, percentiles, rng: np.random.RandomState
) -> tuple[float, float]:
    """Robust intensity range of the training foreground."""
    values = images[foreground]
    if values.size > _MAX_PERCENTILE_VOXELS:
        values = values[rng.choice(values.size, _MAX_PERCENTILE_VOXELS, replace=False)]
    # Percentiles of halved values (exact for normal floats): interpolating between
    # -max and +max would overflow to inf and NaN.
    halved = np.percentile(0.5 * values.astype(np.float64), percentiles)
    low, high = (2.0 * float(p) for p in halved)
    if not 0.5 * high - 0.5 * low > 0:
        # Constant training intensities. A unit width keeps them at 0, but low + 1.0 == low
        # beyond 2**53: the width grows with |low| so that it stays representable.
        width = max(1.0, abs(low) * 2.0**-40)
        if low + width <= _F64_MAX:
            high = low + width
        else:
            low, high = low - width, low
    return float(low), float(high)


def scale_intensities(
    images: np.ndarray, foreground: np.ndarray, intensity_range: tuple[float, float]
) -> np.ndarray:
    """Map intensities to ``[0, 1]`` with the learned range; background becomes 0."""
    low, high = intensity_range
    # Halving first (exact for normal floats) keeps x - low and high - low finite for any
    # finite float64, so extreme intensities clip to 0 or 1 instead of turning into NaN.
    out = images.astype(np.float64)
    out *= 0.5
    out -= 0.5 * low
    with np.errstate(over="ignore"):
        out /= 0.5 * high - 0.5 * low
    np.clip(out, 0.0, 1.0, out=out)
    out[~foreground] = 0.0
    return out.astype(np.float32)


def to_slices(images: np.ndarray, is_volume: bool, slice_axis: int) -> np.ndarray:
    """``(n, *image_shape)`` to ``(n * D, H, W)`` slices (a view where possible)."""
    if not is_volume:
        return images
    moved = np.moveaxis(images, 1 + slice_axis, 1)
    return moved.reshape((-1, *moved.shape[2:]))


def from_slices(
    slices: np.ndarray, n: int, image_shape: tuple[int, ...], slice_axis: int
) -> np.ndarray:
    """Inverse of :func:`to_slices`."""
    if len(image_shape) == 2:
        return slices.reshape((n, *image_shape))
    depth = image_shape[slice_axis]
    stacked = slices.reshape((n, depth, *slices.shape[1:]))
    return np.moveaxis(stacked, 1, 1 + slice_axis)


def smooth_across_slices(
    maps: np.ndarray, support: np.ndarray, sigma: float, slice_axis: int
) -> np.ndarray:
    """Gaussian smoothing of ``(n, D, H, W)`` maps along ``slice_axis`` inside ``support``.

    A normalised convolution, as the in-plane smoothing: voxels outside ``support``
    neither dilute their neighbours nor receive a value, and the volume's ends are not
    dimmed. A 2-D network maps every slice on its own, so its maps carry noise that
    changes from one slice to the next while a lesion spans several slices.
    """
    if sigma < 0.1:
        return maps
    axis = 1 + slice_axis
    # The kernel reaches 4 sigma, as in-plane, but never past the volume's depth: a
    # longer one changes nothing (and a huge sigma would allocate a huge kernel).
    radius = max(1, min(math.ceil(4 * sigma), maps.shape[axis] - 1))
    weight = support.astype(np.float32)
    kw = dict(axis=axis, mode="constant", truncate=radius / sigma)
    num = ndi.gaussian_filter1d(maps * weight, sigma, **kw)
    den = ndi.gaussian_filter1d(weight, sigma, **kw)
    return np.where(support, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


def median_filter_maps(maps: np.ndarray, foreground: np.ndarray, size: int) -> np.ndarray:
    """Median filter of each sample's map over all its axes, a cube of side ``size``.

    ``(n, D, H, W)`` volumes are filtered in 3-D, ``(n, H, W)`` images in 2-D. Values
    outside the foreground count as the 0 the map holds there (as the field's evaluation
    pipelines filter the whole map), and stay 0. ``size < 2`` returns ``maps`` unchanged.
    """
    if size < 2:
        return maps
    out = np.empty_like(maps, dtype=np.float32)
    for i in range(len(maps)):
        out[i] = ndi.median_filter(maps[i], size=size, mode="constant", cval=0.0)
    return np.where(foreground, out, 0.0).astype(np.float32)


def reduce_scores(
    maps: np.ndarray, foreground: np.ndarray, reduction: str, top_k: float
) -> np.ndarray:
    """One anomaly value per sample from its map (higher = more anomalous)."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    fg = foreground.reshape(n, -1)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        values = flat[i][fg[i]]
        if values.size == 0:
            out[i] = 0.0
        elif reduction == "mean":
            out[i] = values.mean()
        elif reduction == "max":
            out[i] = values.max()
        else:
            k = int(top_k_count(top_k, values.size))
            out[i] = np.partition(values, values.size - k)[-k:].mean()
    return out
