"""Sample-level metrics, slice helpers and scikit-learn scorers.

Public names live in :mod:`disyre_sk.metrics`.
"""

import numbers
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

from ._core import check_maps, check_mask, top_k_count
from ._pixel import best_dice, pixel_average_precision

_REDUCTIONS = ("max", "mean", "topk")


def _check_scores_labels(scores, labels):
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores has shape {scores.shape} but labels has shape {labels.shape}; they must match."
        )
    if scores.size == 0:
        raise ValueError("scores and labels are empty.")
    if scores.dtype.kind not in "iuf" or not np.isfinite(scores).all():
        raise ValueError("scores must be finite real numbers.")
    if labels.dtype != bool:
        if labels.dtype.kind not in "iuf" or not ((labels == 0) | (labels == 1)).all():
            raise ValueError(
                "labels must be boolean or 0/1 with 1 = anomalous (not sklearn's "
                "+1 inlier / -1 outlier convention)."
            )
        labels = labels != 0
    labels = labels.ravel()
    if labels.all() or not labels.any():
        raise ValueError("labels must contain both anomalous (1) and normal (0) samples.")
    return scores.ravel(), labels


def sample_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of slice- or volume-level anomaly scores.

    Parameters
    ----------
    scores : array-like
        Anomaly scores, **higher = more anomalous** (for a
        :class:`~disyre_sk.DISYREDetector`, pass ``-detector.score_samples(X)``, or
        :func:`slice_scores` of its maps). Flattened, so ``(n_volumes, n_slices)``
        arrays give AUROC pooled over all slices.
    labels : array-like of bool or {0, 1}, same shape as ``scores``
        1 (True) = anomalous, 0 = normal.

    Returns
    -------
    auroc : float
        :func:`sklearn.metrics.roc_auc_score` of the flattened arrays.

    Raises
    ------
    ValueError
        On a shape mismatch, non-finite scores, labels other than 0/1, or labels of a
        single class.

    Examples
    --------
    >>> from disyre_sk.metrics import sample_auroc
    >>> sample_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    scores, labels = _check_scores_labels(scores, labels)
    return float(roc_auc_score(labels, scores))


def sample_average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision of slice- or volume-level anomaly scores.

    Parameters
    ----------
    scores : array-like
        Anomaly scores, **higher = more anomalous** (pass
        ``-detector.score_samples(X)`` for a :class:`~disyre_sk.DISYREDetector`).
        Flattened together with ``labels``.
    labels : array-like of bool or {0, 1}, same shape as ``scores``
        1 (True) = anomalous, 0 = normal.

    Returns
    -------
    ap : float
        :func:`sklearn.metrics.average_precision_score` of the flattened arrays.

    Raises
    ------
    ValueError
        On a shape mismatch, non-finite scores, labels other than 0/1, or labels of a
        single class.

    Examples
    --------
    >>> from disyre_sk.metrics import sample_average_precision
    >>> round(sample_average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 4)
    0.8333
    """
    scores, labels = _check_scores_labels(scores, labels)
    return float(average_precision_score(labels, scores))


def _slice_axis(ndim, axis):
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an integer in [-{ndim}, {ndim}), got {axis!r}.")
    return int(axis) % ndim


def _slice_rows(item, axis):
    """One item as a (n_slices, n_voxels) matrix, slices along ``axis`` of the full array."""
    if axis == 0:
        return item.reshape(1, -1)
    return np.moveaxis(item, axis - 1, 0).reshape(item.shape[axis - 1], -1)


def _out_shape(shape, axis):
    return (shape[0],) if axis == 0 else (shape[0], shape[axis])


def slice_labels(
    masks: ArrayLike, axis: int = 0, min_voxels: int = 1, foreground: ArrayLike | None = None
) -> np.ndarray:
    """Slice- or volume-level labels from voxel masks.

    Parameters
    ----------
    masks : array-like of bool, shape (n, ...)
        Lesion masks.
    axis : int, default=0
        The axis that indexes slices. ``0``: each item of the first axis is one sample
        (slice labels for a ``(n, H, W)`` stack, volume labels for ``(n, D, H, W)``).
        Any other axis ``k``: one label per item and index along ``k``.
    min_voxels : int, default=1
        A slice is anomalous when it holds at least this many lesion voxels.
    foreground : array-like of bool, same shape as ``masks``, default=None
        When given, only lesion voxels inside it count.

    Returns
    -------
    labels : ndarray of bool
        Shape ``(n,)`` for ``axis=0``, else ``(n, masks.shape[axis])``; True =
        anomalous.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import slice_labels
    >>> masks = np.zeros((2, 3, 4, 4), dtype=bool)
    >>> masks[0, 1, :2, :2] = True
    >>> slice_labels(masks, axis=1)
    array([[False,  True, False],
           [False, False, False]])
    >>> slice_labels(masks, axis=1, min_voxels=5).any()
    np.False_
    """
    masks = np.asarray(masks)
    if masks.ndim == 0 or masks.size == 0:
        raise ValueError(f"masks must be a non-empty array, got shape {masks.shape}.")
    masks = check_mask(masks, masks.shape, "masks")
    if foreground is not None:
        masks = masks & check_mask(foreground, masks.shape, "foreground")
    if not isinstance(min_voxels, numbers.Integral) or min_voxels < 1:
        raise ValueError(f"min_voxels must be a positive integer, got {min_voxels!r}.")
    axis = _slice_axis(masks.ndim, axis)
    if masks.ndim == 1:
        return masks.copy() if min_voxels == 1 else np.zeros(masks.shape, dtype=bool)
    others = tuple(a for a in range(1, masks.ndim) if a != axis)
    return np.count_nonzero(masks, axis=others) >= min_voxels


def slice_scores(
    maps: ArrayLike,
    axis: int = 0,
    reduction: Literal["max", "mean", "topk"] = "max",
    k: float = 10,
    foreground: ArrayLike | None = None,
) -> np.ndarray:
    """Slice- or volume-level anomaly scores reduced from anomaly maps.

    Parameters
    ----------
    maps : array-like of shape (n, ...)
        Anomaly maps, higher = more anomalous.
    axis : int, default=0
        The axis that indexes slices, as in :func:`slice_labels`.
    reduction : {"max", "mean", "topk"}, default="max"
        How a slice's voxels become one score: their maximum, their mean, or the mean of
        the ``k`` largest.
    k : int or float, default=10
        For ``"topk"``: a number of voxels (int >= 1) or a fraction of the slice's
        (foreground) voxels (float in (0, 1], rounded up).
    foreground : array-like of bool, same shape as ``maps``, default=None
        When given, only voxels inside it are reduced; slices without foreground get 0.

    Returns
    -------
    scores : ndarray of float64
        Shape ``(n,)`` for ``axis=0``, else ``(n, maps.shape[axis])``; higher = more
        anomalous, ready for :func:`sample_auroc`.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import slice_scores
    >>> maps = np.array([[[0.0, 1.0], [0.5, 0.5]], [[0.2, 0.2], [0.2, 0.6]]])
    >>> slice_scores(maps)
    array([1. , 0.6])
    >>> slice_scores(maps, axis=1, reduction="mean")
    array([[0.5, 0.5],
           [0.2, 0.4]])
    >>> slice_scores(maps, reduction="topk", k=2)
    array([0.75, 0.4 ])
    """
    maps = check_maps(maps)
    if foreground is not None:
        foreground = check_mask(foreground, maps.shape, "foreground")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
    if reduction == "topk":
        top_k_count(k, 1)  # the value is checked before any work
    axis = _slice_axis(maps.ndim, axis)
    if maps.ndim == 1:
        maps = maps[:, None]
        foreground = None if foreground is None else foreground[:, None]
    out = np.empty(_out_shape(maps.shape, axis), dtype=np.float64)
    for i in range(maps.shape[0]):  # one item at a time: bounded temporaries
        rows = _slice_rows(maps[i], axis).astype(np.float64)
        fg = None if foreground is None else _slice_rows(foreground[i], axis)
        n_fg = np.full(rows.shape[0], rows.shape[1]) if fg is None else fg.sum(axis=1)
        if not np.isfinite(rows if fg is None else rows[fg]).all():
            raise ValueError("maps contain non-finite values (NaN or inf).")
        if reduction == "mean":
            total = rows.sum(axis=1) if fg is None else np.where(fg, rows, 0.0).sum(axis=1)
            res = total / np.maximum(n_fg, 1)
        else:
            if fg is not None:
                rows = np.where(fg, rows, -np.inf)
            if reduction == "max":
                res = rows.max(axis=1)
            else:
                kk = np.asarray(top_k_count(k, n_fg), dtype=np.intp)
                top = -np.sort(-rows, axis=1)  # descending
                top[~np.isfinite(top)] = 0.0
                csum = np.cumsum(top, axis=1)
                res = csum[np.arange(rows.shape[0]), np.maximum(kk, 1) - 1] / np.maximum(kk, 1)
            res[n_fg == 0] = 0.0
        out[i] = res if axis else res[0]
    return out


def _maps_and_masks(estimator, X, y):
    maps = np.asarray(estimator.decision_map(X))
    y = np.asarray(y)
    if y.size != maps.size:
        raise ValueError(
            f"y must hold one mask value per voxel of the maps {maps.shape}, got shape {y.shape}."
        )
    return maps, y.reshape(maps.shape)


def pixel_ap_scorer(estimator: Any, X: ArrayLike, y: ArrayLike) -> float:
    """Scorer: pixel average precision of ``estimator.decision_map(X)`` against masks ``y``.

    Has scikit-learn's ``scorer(estimator, X, y)`` signature, so it can be passed as
    ``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_val_score` with lesion masks as ``y``. Every
    voxel counts (pooled; no foreground restriction): the maps are zero outside the
    foreground, where masks are zero too. Greater is better.

    Parameters
    ----------
    estimator : object
        A fitted estimator with ``decision_map(X)`` (higher = more anomalous).
    X : array-like
        Scans, in any layout the estimator accepts.
    y : array-like
        Lesion masks with one value per voxel of ``decision_map(X)`` (reshaped to it).

    Returns
    -------
    score : float
        :func:`pixel_average_precision`.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import pixel_ap_scorer
    >>> class Identity:  # stands in for a fitted DISYREDetector
    ...     def decision_map(self, X):
    ...         return np.asarray(X, dtype=np.float32)
    >>> X = np.array([[[0.9, 0.8], [0.3, 0.1]]])
    >>> round(pixel_ap_scorer(Identity(), X, X > 0.85), 3)
    1.0
    """
    maps, masks = _maps_and_masks(estimator, X, y)
    return pixel_average_precision(maps, masks)


def best_dice_scorer(estimator: Any, X: ArrayLike, y: ArrayLike) -> float:
    """Scorer: best Dice (pooled) of ``estimator.decision_map(X)`` against masks ``y``.

    Same conventions as :func:`pixel_ap_scorer`. Greater is better.

    Parameters
    ----------
    estimator : object
        A fitted estimator with ``decision_map(X)`` (higher = more anomalous).
    X : array-like
        Scans.
    y : array-like
        Lesion masks with one value per voxel of ``decision_map(X)``.

    Returns
    -------
    score : float
        The dice of :func:`best_dice`.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import best_dice_scorer
    >>> class Identity:
    ...     def decision_map(self, X):
    ...         return np.asarray(X)
    >>> best_dice_scorer(Identity(), np.array([[0.9, 0.8, 0.3, 0.1]]), [[1, 1, 0, 0]])
    1.0
    """
    maps, masks = _maps_and_masks(estimator, X, y)
    return best_dice(maps, masks)[0]


def sample_auroc_scorer(estimator: Any, X: ArrayLike, y: ArrayLike) -> float:
    """Scorer: AUROC of ``-estimator.score_samples(X)`` against sample labels ``y``.

    ``score_samples`` follows scikit-learn (higher = more normal), so it is negated to
    rank anomalies first. Greater is better.

    Parameters
    ----------
    estimator : object
        A fitted estimator with ``score_samples(X)``.
    X : array-like
        Samples.
    y : array-like of bool or {0, 1}
        1 = anomalous, 0 = normal (not sklearn's +1/-1 outlier labels).

    Returns
    -------
    score : float
        :func:`sample_auroc`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import IsolationForest
    >>> from disyre_sk.metrics import sample_auroc_scorer
    >>> X = np.r_[np.zeros((20, 2)), np.full((2, 2), 5.0)]
    >>> y = np.r_[np.zeros(20), np.ones(2)]
    >>> est = IsolationForest(random_state=0).fit(X)
    >>> sample_auroc_scorer(est, X, y)
    1.0
    """
    return sample_auroc(-np.asarray(estimator.score_samples(X)), y)


def sample_ap_scorer(estimator: Any, X: ArrayLike, y: ArrayLike) -> float:
    """Scorer: average precision of ``-estimator.score_samples(X)`` against labels ``y``.

    Same conventions as :func:`sample_auroc_scorer`. Greater is better.

    Parameters
    ----------
    estimator : object
        A fitted estimator with ``score_samples(X)``.
    X : array-like
        Samples.
    y : array-like of bool or {0, 1}
        1 = anomalous, 0 = normal.

    Returns
    -------
    score : float
        :func:`sample_average_precision`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import IsolationForest
    >>> from disyre_sk.metrics import sample_ap_scorer
    >>> X = np.r_[np.zeros((20, 2)), np.full((2, 2), 5.0)]
    >>> y = np.r_[np.zeros(20), np.ones(2)]
    >>> sample_ap_scorer(IsolationForest(random_state=0).fit(X), X, y)
    1.0
    """
    return sample_average_precision(-np.asarray(estimator.score_samples(X)), y)
