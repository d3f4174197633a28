"""Pixel-level metrics on in-memory arrays (public names live in :mod:`disyre_sk.metrics`)."""

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._accumulator import PixelMetricAccumulator
from ._core import (
    block_slices,
    ceil_to_dtype,
    check_aggregation,
    check_fpr,
    check_maps,
    check_mask,
    check_threshold,
    dice_from_counts,
    exact_summary,
    mean_defined,
    select,
    split_sorted,
)

Aggregation = Literal["pooled", "per_volume"]

_PER_VOLUME_METRICS = (
    "average_precision",
    "best_dice",
    "best_dice_threshold",
    "auroc",
    "dice_at_threshold",
)


def _inputs(maps, masks, foreground, maps_name="maps", foreground_name="foreground"):
    maps = check_maps(maps, maps_name)
    if masks is not None:
        masks = check_mask(masks, maps.shape, "masks")
    if foreground is not None:
        foreground = check_mask(foreground, maps.shape, foreground_name)
        if not foreground.any():
            raise ValueError(f"{foreground_name} is empty: there is no voxel to evaluate.")
    return maps, masks, foreground


def _part(a, index):
    return None if a is None else a[index]


def _pooled_accumulator(maps, masks, foreground):
    """Exact accumulator fed in blocks of the first axis (bounded temporaries)."""
    acc = PixelMetricAccumulator()
    acc._keep_chunks = False
    for sl in block_slices(maps.shape[0], maps[0].size):
        acc._add(maps[sl], _part(masks, sl), _part(foreground, sl), record=False)
    return acc


def _volume_summaries(maps, masks, foreground):
    """Exact summaries of each volume (first axis) and their positive-voxel counts."""
    summaries, n_pos = [], []
    for i in range(maps.shape[0]):
        pos, neg = split_sorted(maps[i], masks[i], _part(foreground, i))
        summaries.append(exact_summary(pos, neg))
        n_pos.append(pos.size)
    return summaries, np.asarray(n_pos)


def _summary(maps, masks, foreground, aggregation):
    """One dict of AP / best Dice / threshold / AUROC under the given aggregation."""
    check_aggregation(aggregation)
    maps, masks, foreground = _inputs(maps, masks, foreground)
    if aggregation == "pooled":
        out = _pooled_accumulator(maps, masks, foreground).result("pooled")
        out["n_volumes"] = int(maps.shape[0])
        return out
    summaries, n_pos = _volume_summaries(maps, masks, foreground)
    keep = np.flatnonzero(n_pos > 0)
    if keep.size == 0:
        raise ValueError(
            "No volume has a positive (lesion) voxel inside its foreground: the per-volume "
            "metrics are undefined."
        )
    out = {"aggregation": "per_volume", "best_dice_threshold": np.nan}
    for key in ("average_precision", "best_dice", "auroc"):
        out[key] = mean_defined([summaries[i][key] for i in keep])
    out["n_volumes"] = int(keep.size)
    return out


def pixel_average_precision(
    maps: ArrayLike,
    masks: ArrayLike,
    foreground: ArrayLike | None = None,
    aggregation: Aggregation = "pooled",
) -> float:
    """Exact voxel-level average precision of anomaly maps.

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps, higher = more anomalous. Float32 input is used without a copy
        of the whole array.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels to evaluate (e.g. brain masks); ``None`` evaluates every voxel.
    aggregation : {"pooled", "per_volume"}, default="pooled"
        ``"pooled"``: one precision-recall curve over all foreground voxels of all
        volumes. ``"per_volume"``: mean of the volumes' own AP over the volumes with at
        least one lesion voxel in their foreground.

    Returns
    -------
    ap : float
        Average precision, equal to :func:`sklearn.metrics.average_precision_score` on
        the flattened foreground voxels (pooled).

    Raises
    ------
    ValueError
        On a shape mismatch, an empty foreground, non-finite map values inside the
        foreground, or no lesion voxel inside the foreground.

    See Also
    --------
    PixelMetricAccumulator : The same metric streamed over volumes.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import pixel_average_precision
    >>> maps = np.array([[0.9, 0.8, 0.3, 0.1]])
    >>> masks = np.array([[True, False, True, False]])
    >>> round(pixel_average_precision(maps, masks), 4)  # (1/1 + 2/3) / 2
    0.8333
    """
    return _summary(maps, masks, foreground, aggregation)["average_precision"]


def best_dice(
    maps: ArrayLike,
    masks: ArrayLike,
    foreground: ArrayLike | None = None,
    aggregation: Aggregation = "pooled",
) -> tuple[float, float]:
    """Best Dice over all thresholds, computed exactly from the precision-recall curve.

    Dice ``2PR / (P + R)`` is evaluated at every distinct map value (voxels with a map
    value ``>= threshold`` are called anomalous) and the maximum is returned.

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps, higher = more anomalous.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels to evaluate; ``None`` evaluates every voxel.
    aggregation : {"pooled", "per_volume"}, default="pooled"
        ``"pooled"``: one threshold for all volumes (the usual "best Dice").
        ``"per_volume"``: mean of each lesioned volume's best Dice at its own
        threshold (an optimistic oracle; the returned threshold is then NaN).

    Returns
    -------
    dice : float
        The best Dice.
    threshold : float
        The map value at which it is reached (NaN for ``"per_volume"``); on ties, the
        highest such value.

    Raises
    ------
    ValueError
        On a shape mismatch, an empty foreground, non-finite maps or no lesion voxel.

    See Also
    --------
    dice_at_fpr : Dice at a threshold chosen without labels.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import best_dice
    >>> maps = np.array([[0.9, 0.8, 0.3, 0.1]])
    >>> masks = np.array([[True, False, True, False]])
    >>> best_dice(maps, masks)  # maps >= 0.3: TP 2, FP 1, FN 0, Dice 2*2 / (2*2 + 1)
    (0.8, 0.3)
    """
    s = _summary(maps, masks, foreground, aggregation)
    return s["best_dice"], s["best_dice_threshold"]


def pixel_auroc(
    maps: ArrayLike,
    masks: ArrayLike,
    foreground: ArrayLike | None = None,
    aggregation: Aggregation = "pooled",
) -> float:
    """Exact voxel-level area under the ROC curve.

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps, higher = more anomalous.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels to evaluate; ``None`` evaluates every voxel.
    aggregation : {"pooled", "per_volume"}, default="pooled"
        ``"pooled"`` over all foreground voxels, or ``"per_volume"``: mean over the
        volumes with both lesion and non-lesion foreground voxels.

    Returns
    -------
    auroc : float
        Equal to :func:`sklearn.metrics.roc_auc_score` on the foreground voxels (pooled).

    Raises
    ------
    ValueError
        On a shape mismatch, an empty foreground, non-finite maps, no lesion voxel or no
        non-lesion voxel.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import pixel_auroc
    >>> pixel_auroc(np.array([[0.9, 0.8, 0.3, 0.1]]), np.array([[1, 0, 1, 0]]))
    0.75
    """
    auroc = _summary(maps, masks, foreground, aggregation)["auroc"]
    if np.isnan(auroc):
        raise ValueError("No non-lesion voxel inside the foreground: AUROC is undefined.")
    return auroc


def threshold_at_fpr(
    healthy_maps: ArrayLike, fpr: float = 0.01, foreground: ArrayLike | None = None
) -> float:
    """Label-free threshold: the map value exceeded by a fraction ``fpr`` of healthy voxels.

    Computed on healthy scans only, pooled over all their foreground voxels, so that
    Dice at this threshold (:func:`dice_at_fpr`) needs no lesion label to be tuned.

    Parameters
    ----------
    healthy_maps : array-like of shape (n_volumes, ...)
        Anomaly maps of healthy scans, higher = more anomalous.
    fpr : float in [0, 1), default=0.01
        Fraction of healthy foreground voxels allowed at or above the threshold.
    foreground : array-like of bool, same shape as ``healthy_maps``, default=None
        Voxels to count; ``None`` counts every voxel.

    Returns
    -------
    threshold : float
        The lowest healthy map value ``t`` such that at most ``fpr`` of the healthy
        foreground voxels have a value ``>= t`` (exactly ``floor(fpr * n)`` of them when
        no values tie), or the next float above the highest value when ``fpr * n < 1``.

    Raises
    ------
    ValueError
        On an invalid ``fpr``, a shape mismatch, an empty foreground or non-finite maps.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import threshold_at_fpr
    >>> healthy = np.arange(100.0).reshape(1, 10, 10)
    >>> threshold_at_fpr(healthy, fpr=0.05)  # 95, 96, ..., 99 are at or above it
    95.0
    """
    fpr = check_fpr(fpr)
    maps, _, foreground = _inputs(healthy_maps, None, foreground, "healthy_maps")
    return _pooled_accumulator(maps, None, foreground).threshold_at_fpr(fpr)


def dice_at_threshold(
    maps: ArrayLike,
    masks: ArrayLike,
    threshold: float,
    foreground: ArrayLike | None = None,
    aggregation: Aggregation = "pooled",
) -> float:
    """Dice of the segmentation ``maps >= threshold`` against the lesion masks.

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps, higher = more anomalous.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks.
    threshold : float
        Voxels with a map value ``>= threshold`` are called anomalous.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels to evaluate; ``None`` evaluates every voxel.
    aggregation : {"pooled", "per_volume"}, default="pooled"
        ``"pooled"``: one Dice over all foreground voxels; ``"per_volume"``: mean Dice
        over the volumes with at least one lesion voxel in their foreground.

    Returns
    -------
    dice : float
        The Dice score.

    Raises
    ------
    ValueError
        On a shape mismatch, an empty foreground, non-finite maps or no lesion voxel.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import dice_at_threshold
    >>> maps = np.array([[0.9, 0.8, 0.3, 0.1]])
    >>> masks = np.array([[True, False, True, False]])
    >>> dice_at_threshold(maps, masks, 0.3)  # 2*2 / (3 + 2)
    0.8
    """
    threshold = check_threshold(threshold)
    check_aggregation(aggregation)
    maps, masks, foreground = _inputs(maps, masks, foreground)
    if aggregation == "pooled":
        parts = block_slices(maps.shape[0], maps[0].size)
    else:
        parts = range(maps.shape[0])
    counts = []
    for part in parts:
        v, m = select(maps[part], masks[part], _part(foreground, part))
        pred = v >= ceil_to_dtype(threshold, v.dtype)
        tp = np.count_nonzero(pred & m)
        counts.append((tp, np.count_nonzero(pred) - tp, np.count_nonzero(m)))
    counts = np.asarray(counts, dtype=np.int64)
    if aggregation == "pooled":
        tp, fp, n_pos = counts.sum(axis=0)
        if n_pos == 0:
            raise ValueError("No lesion voxel inside the foreground: Dice is undefined.")
        return float(dice_from_counts(tp, fp, n_pos))
    counts = counts[counts[:, 2] > 0]
    if counts.size == 0:
        raise ValueError("No volume has a lesion voxel inside its foreground.")
    return float(np.mean([dice_from_counts(*c) for c in counts]))


def dice_at_fpr(
    maps: ArrayLike,
    masks: ArrayLike,
    healthy_maps: ArrayLike,
    fpr: float = 0.01,
    foreground: ArrayLike | None = None,
    healthy_foreground: ArrayLike | None = None,
    aggregation: Aggregation = "pooled",
) -> tuple[float, float]:
    """Dice at the threshold where healthy scans reach a given voxel false-positive rate.

    The honest, label-free operating point: the threshold comes from
    :func:`threshold_at_fpr` on ``healthy_maps`` (pooled over their foreground voxels)
    and is then applied to the lesioned ``maps``.

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps of the evaluated scans, higher = more anomalous.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks of the evaluated scans.
    healthy_maps : array-like of shape (n_healthy, ...)
        Anomaly maps of healthy scans (not those used for training, ideally).
    fpr : float in [0, 1), default=0.01
        Voxel false-positive rate allowed on the healthy foreground.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels of ``maps`` to evaluate; ``None`` evaluates every voxel.
    healthy_foreground : array-like of bool, same shape as ``healthy_maps``, default=None
        Voxels of ``healthy_maps`` to count; ``None`` counts every voxel.
    aggregation : {"pooled", "per_volume"}, default="pooled"
        How the Dice is aggregated over ``maps`` (see :func:`dice_at_threshold`); the
        threshold itself is always pooled over the healthy voxels.

    Returns
    -------
    dice : float
        Dice of ``maps >= threshold``.
    threshold : float
        The threshold from :func:`threshold_at_fpr`.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import dice_at_fpr
    >>> healthy = np.arange(100.0).reshape(1, 100) / 100
    >>> maps = np.array([[0.995, 0.99, 0.5, 0.2]])
    >>> masks = np.array([[True, True, True, False]])
    >>> dice_at_fpr(maps, masks, healthy, fpr=0.02)  # threshold 0.98: 2*2 / (2 + 3)
    (0.8, 0.98)
    """
    threshold = threshold_at_fpr(healthy_maps, fpr=fpr, foreground=healthy_foreground)
    dice = dice_at_threshold(maps, masks, threshold, foreground, aggregation)
    return dice, threshold


def pixel_metrics(
    maps: ArrayLike,
    masks: ArrayLike,
    foreground: ArrayLike | None = None,
    *,
    healthy_maps: ArrayLike | None = None,
    healthy_foreground: ArrayLike | None = None,
    fpr: float = 0.01,
    aggregation: Aggregation = "pooled",
) -> dict[str, Any]:
    """All pixel-level metrics at once, with their aggregation named.

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps, higher = more anomalous.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels to evaluate; ``None`` evaluates every voxel.
    healthy_maps : array-like of shape (n_healthy, ...), default=None
        Maps of healthy scans; when given, Dice at ``fpr`` is added.
    healthy_foreground : array-like of bool, default=None
        Foreground of ``healthy_maps``.
    fpr : float in [0, 1), default=0.01
        Healthy voxel false-positive rate for the label-free threshold.
    aggregation : {"pooled", "per_volume"}, default="pooled"
        See :func:`pixel_average_precision`.

    Returns
    -------
    metrics : dict
        ``aggregation``, ``average_precision``, ``best_dice``, ``best_dice_threshold``,
        ``auroc`` and ``n_volumes``, plus ``fpr``, ``fpr_threshold`` and
        ``dice_at_fpr`` when ``healthy_maps`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import pixel_metrics
    >>> m = pixel_metrics(np.array([[0.9, 0.8, 0.3, 0.1]]), np.array([[1, 0, 1, 0]]))
    >>> m["aggregation"], m["auroc"]
    ('pooled', 0.75)
    """
    out = _summary(maps, masks, foreground, aggregation)
    if healthy_maps is not None:
        dice, threshold = dice_at_fpr(
            maps, masks, healthy_maps, fpr, foreground, healthy_foreground, aggregation
        )
        out.update(fpr=float(fpr), fpr_threshold=threshold, dice_at_fpr=dice)
    return out


def per_volume_scores(
    maps: ArrayLike,
    masks: ArrayLike,
    foreground: ArrayLike | None = None,
    metric: str = "average_precision",
    threshold: float | None = None,
) -> np.ndarray:
    """One metric per volume (the values that ``aggregation="per_volume"`` averages).

    Parameters
    ----------
    maps : array-like of shape (n_volumes, ...)
        Anomaly maps, higher = more anomalous; the first axis indexes volumes.
    masks : array-like of bool, same shape as ``maps``
        Ground-truth lesion masks.
    foreground : array-like of bool, same shape as ``maps``, default=None
        Voxels to evaluate; ``None`` evaluates every voxel.
    metric : str, default="average_precision"
        One of ``"average_precision"``, ``"best_dice"``, ``"best_dice_threshold"``,
        ``"auroc"``, ``"dice_at_threshold"`` (which needs ``threshold``).
    threshold : float, default=None
        Threshold for ``metric="dice_at_threshold"``.

    Returns
    -------
    scores : ndarray of shape (n_volumes,)
        The metric of each volume; NaN where it is undefined (no lesion voxel in the
        volume's foreground, or for AUROC no non-lesion voxel).

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import per_volume_scores
    >>> maps = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.4]])
    >>> masks = np.array([[1, 0], [1, 0], [0, 0]])
    >>> per_volume_scores(maps, masks)
    array([1. , 0.5, nan])
    """
    if metric not in _PER_VOLUME_METRICS:
        raise ValueError(f"metric must be one of {_PER_VOLUME_METRICS}, got {metric!r}.")
    maps, masks, foreground = _inputs(maps, masks, foreground)
    if metric == "dice_at_threshold":
        if threshold is None:
            raise ValueError("metric='dice_at_threshold' needs a threshold.")
        threshold = check_threshold(threshold)
        out = np.full(maps.shape[0], np.nan)
        for i in range(maps.shape[0]):
            v, m = select(maps[i], masks[i], _part(foreground, i))
            pred = v >= ceil_to_dtype(threshold, v.dtype)
            tp = np.count_nonzero(pred & m)
            out[i] = dice_from_counts(tp, np.count_nonzero(pred) - tp, np.count_nonzero(m))
        return out
    summaries, _ = _volume_summaries(maps, masks, foreground)
    return np.array([s[metric] for s in summaries], dtype=np.float64)
