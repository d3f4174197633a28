"""Input checks, curve summaries and the top-k rule shared by every metric.

The in-memory metrics (:mod:`._pixel`, :mod:`._sample`), the streaming accumulator
(:mod:`._accumulator`) and the detector's slice scores (``disyre_sk._data``) all build on
the functions here, which import nothing from the package.

The curve summaries work on two sorted 1-D arrays per chunk: the map values of the positive
(lesion) voxels and those of the negative voxels. From them, the precision-recall and ROC
summaries are computed exactly, with ties grouped the way scikit-learn groups them
(all voxels with the same score enter the prediction together). Only distinct *positive*
scores need to be visited: average precision gains only where recall grows, and raising a
threshold up to the next positive score never lowers Dice, so the best Dice is also
attained at one of them. Memory is therefore that of the sorted values plus
``O(n_positive)``, never a per-threshold table over all voxels.

A voxel is called anomalous when its map value is ``>= threshold`` everywhere in this
package (the convention of :func:`sklearn.metrics.precision_recall_curve`).
"""

import numbers

import numpy as np

AGGREGATIONS = ("pooled", "per_volume")
_POOLED_BLOCK = 1 << 22  # voxels per chunk when pooling: bounds the temporaries


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------
def check_maps(maps, name="maps"):
    """Return ``maps`` as a float array without copying float32/float64 input."""
    arr = np.asarray(maps)
    if arr.dtype.kind == "f":
        if arr.dtype.itemsize < 4:  # float16: widen, exact
            arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    else:
        raise ValueError(f"{name} must be a real-valued numeric array, got dtype {arr.dtype}.")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {arr.shape}.")
    return arr


def check_mask(mask, shape, name):
    """Return ``mask`` as a bool array of ``shape``; accepts bool or 0/1 numeric arrays."""
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {arr.shape} but the maps have shape {tuple(shape)}; "
            "they must match voxel for voxel."
        )
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not ((arr == 0) | (arr == 1)).all():
        raise ValueError(f"{name} must be boolean (or contain only 0 and 1).")
    return arr != 0


def check_aggregation(aggregation):
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}.")
    return aggregation


def check_threshold(threshold):
    if not isinstance(threshold, numbers.Real) or np.isnan(threshold):
        raise ValueError(f"threshold must be a real number, got {threshold!r}.")
    return float(threshold)


def check_fpr(fpr):
    if not isinstance(fpr, numbers.Real) or not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be a number in [0, 1), got {fpr!r}.")
    return float(fpr)


def select(values, mask, foreground):
    """Flattened values (and labels) of the foreground voxels of one chunk."""
    if foreground is None:
        v = values.ravel()
        m = None if mask is None else mask.ravel()
    else:
        v = values[foreground]
        m = None if mask is None else mask[foreground]
    if v.size and not np.isfinite(v).all():
        raise ValueError("maps contain non-finite values (NaN or inf) inside the foreground.")
    return v, m


def split_sorted(values, mask, foreground):
    """Sorted positive and negative foreground values of one chunk."""
    v, m = select(values, mask, foreground)
    if m is None:
        return v[:0].copy(), np.sort(v)
    pos = v[m]
    neg = v[~m]
    pos.sort()
    neg.sort()
    return pos, neg


def ceil_to_dtype(threshold, dtype):
    """Smallest value of ``dtype`` that is >= ``threshold``.

    ``x >= threshold`` then equals ``x >= ceil_to_dtype(threshold, x.dtype)`` for every
    ``x`` of that dtype, so comparisons and ``searchsorted`` stay in the maps' own dtype
    (no float64 copy of a float32 array, and no silent rounding of the threshold).
    """
    t = np.asarray(threshold, dtype=dtype)[()]
    if float(t) < threshold:
        t = np.nextafter(t, np.asarray(np.inf, dtype=dtype))
    return t


def block_slices(n, item_size):
    """Slices over the first axis holding about ``_POOLED_BLOCK`` voxels each."""
    step = max(1, _POOLED_BLOCK // max(1, item_size))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


# --------------------------------------------------------------------------------------
# curve summaries
# --------------------------------------------------------------------------------------
NAN_SUMMARY = {
    "average_precision": np.nan,
    "best_dice": np.nan,
    "best_dice_threshold": np.nan,
    "auroc": np.nan,
}


def _summary(thresholds, pos_count, tps_ge, fps_ge, neg_below, neg_equal, n_pos, n_neg):
    """AP, best Dice (with its threshold) and AUROC at the candidate thresholds.

    All arrays are indexed by the candidate thresholds (distinct positive scores, or
    histogram bins holding positives) in ascending order: ``tps_ge``/``fps_ge`` count
    positives/negatives scoring ``>=`` the threshold, ``neg_below``/``neg_equal``
    negatives scoring below / tied with it.
    """
    if n_pos == 0:
        return dict(NAN_SUMMARY)
    tps = tps_ge.astype(np.float64)
    fps = fps_ge.astype(np.float64)
    # AP: recall steps by pos_count / n_pos, weighted by the precision there.
    ap = float(np.sum(pos_count / n_pos * (tps / (tps + fps))))
    dice = 2.0 * tps / (tps + fps + n_pos)
    # on ties keep the highest threshold (the first one in descending order)
    best = len(dice) - 1 - int(np.argmax(dice[::-1]))
    if n_neg == 0:
        auroc = np.nan
    else:  # Mann-Whitney form of the trapezoidal ROC area: ties count one half
        auroc = float(np.sum(pos_count * (neg_below + 0.5 * neg_equal)) / (n_pos * n_neg))
    return {
        "average_precision": ap,
        "best_dice": float(dice[best]),
        "best_dice_threshold": float(thresholds[best]),
        "auroc": auroc,
    }


def _unique_sorted(a):
    """Distinct values and their counts of an ascending array."""
    if a.size == 0:
        return a, np.zeros(0, dtype=np.int64)
    first = np.empty(a.size, dtype=bool)
    first[0] = True
    np.not_equal(a[1:], a[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, a.size))
    return a[starts], counts


def exact_summary(pos, neg):
    """Exact curve summaries from sorted positive and negative scores."""
    n_pos, n_neg = pos.size, neg.size
    if n_pos == 0:
        return dict(NAN_SUMMARY)
    upos, cpos = _unique_sorted(pos)
    if neg.dtype != upos.dtype:
        common = np.result_type(neg, upos)
        neg, upos = neg.astype(common, copy=False), upos.astype(common, copy=False)
    below = np.searchsorted(neg, upos, side="left")
    equal = np.searchsorted(neg, upos, side="right") - below
    tps_ge = n_pos - (np.cumsum(cpos) - cpos)
    return _summary(upos, cpos, tps_ge, n_neg - below, below, equal, n_pos, n_neg)


def histogram_summary(pos_hist, neg_hist, edges):
    """Curve summaries from per-bin counts; bins are scores ``>= edges[b]``."""
    n_pos, n_neg = int(pos_hist.sum()), int(neg_hist.sum())
    if n_pos == 0:
        return dict(NAN_SUMMARY)
    tps_ge = np.cumsum(pos_hist[::-1])[::-1]
    fps_ge = np.cumsum(neg_hist[::-1])[::-1]
    sel = np.flatnonzero(pos_hist)
    return _summary(
        edges[sel],
        pos_hist[sel],
        tps_ge[sel],
        fps_ge[sel],
        n_neg - fps_ge[sel],
        neg_hist[sel],
        n_pos,
        n_neg,
    )


def exact_threshold_at_fpr(neg, fpr):
    """Lowest score ``t`` of ``neg`` (ascending) with ``mean(neg >= t) <= fpr``."""
    n = neg.size
    k = int(np.floor(fpr * n + 1e-9 * max(1.0, fpr * n)))  # allowed false positives
    if k == 0:
        return float(np.nextafter(neg[-1], np.asarray(np.inf, dtype=neg.dtype)))
    cand = neg[n - k]  # the k-th largest score
    if n - np.searchsorted(neg, cand, side="left") <= k:
        return float(cand)
    # ties at the k-th largest score overshoot the budget: step to the next score up
    nxt = np.searchsorted(neg, cand, side="right")
    if nxt < n:
        return float(neg[nxt])
    return float(np.nextafter(cand, np.asarray(np.inf, dtype=neg.dtype)))


def dice_from_counts(tp, fp, n_pos):
    return np.nan if n_pos == 0 else 2.0 * tp / (tp + fp + n_pos)


def mean_defined(values):
    """Mean of the non-NaN values; NaN (without a warning) when there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else np.nan


def top_k_count(k, n):
    """How many of ``n`` values a top-k mean takes: the one rule of the package.

    scikit-learn's convention for sizes (as ``max_samples`` of ``IsolationForest``):
    an int ``k >= 1`` is a count, a float in ``(0, 1]`` a fraction of ``n``, rounded
    up, so ``1`` is one value and ``1.0`` all of them. At least one value and at most
    ``n`` are taken; ``n`` may be an array of counts.

    Raises
    ------
    ValueError
        For any other ``k``.
    """
    if isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1:
        return np.minimum(k, n)
    if isinstance(k, numbers.Real) and not isinstance(k, (bool, numbers.Integral)) and 0 < k <= 1:
        return np.minimum(np.maximum(np.ceil(k * np.asarray(n)), 1), n).astype(np.intp)
    raise ValueError(
        f"k must be an int >= 1 (a count) or a float in (0, 1] (a fraction), got {k!r}."
    )
