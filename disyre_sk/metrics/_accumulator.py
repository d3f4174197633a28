"""Streaming, memory-bounded pixel metrics (public name in :mod:`disyre_sk.metrics`)."""

import numbers
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._core import (
    ceil_to_dtype,
    check_aggregation,
    check_fpr,
    check_maps,
    check_mask,
    check_threshold,
    dice_from_counts,
    exact_summary,
    exact_threshold_at_fpr,
    histogram_summary,
    mean_defined,
    select,
    split_sorted,
)


class PixelMetricAccumulator:
    """Streaming, memory-bounded pixel metrics over many volumes.

    Feed one volume per :meth:`update` call; :meth:`result` then gives pixel average
    precision, best Dice (with its threshold) and pixel AUROC, pooled over all voxels of
    all volumes or averaged per volume. Healthy volumes (no mask) also feed the
    label-free :meth:`threshold_at_fpr`.

    Parameters
    ----------
    method : {"exact", "histogram"}, default="exact"
        ``"exact"`` keeps every foreground score (sorted, in the maps' dtype: about
        4 bytes per voxel for float32 maps, twice that while :meth:`result` merges
        the volumes) and gives exact results. ``"histogram"`` keeps ``n_bins``
        counts only (memory independent of the number of voxels); results are exact
        when every score lies on a bin edge and otherwise typically within 1e-3 of
        the exact ones for ``n_bins=2**16``.
    n_bins : int, default=65536
        Number of equal-width bins of the histogram method.
    value_range : tuple of (float, float), default=None
        ``(low, high)`` range of the histogram bins; required by the histogram
        method (for example ``(0.0, 1.0)`` for maps known to lie in [0, 1]). Scores
        outside it are counted in the first or last bin, as if they were equal to
        ``low`` or lay in the top bin; :attr:`n_out_of_range` counts them.

    Attributes
    ----------
    n_volumes : int
        Number of :meth:`update` calls so far.
    n_voxels : int
        Number of foreground voxels seen.
    n_positive : int
        Number of positive (lesion) foreground voxels seen.
    n_out_of_range : int
        Number of scores outside ``value_range`` (histogram method only, else 0).

    See Also
    --------
    pixel_metrics : The same summaries for in-memory arrays.

    Notes
    -----
    A voxel is called anomalous when its map value is ``>= threshold``. In the
    histogram method the reported thresholds are bin edges.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import PixelMetricAccumulator
    >>> rng = np.random.default_rng(0)
    >>> acc = PixelMetricAccumulator()
    >>> for _ in range(3):
    ...     mask = rng.random((8, 8)) < 0.2
    ...     acc = acc.update(rng.random((8, 8)) + mask, mask)
    >>> res = acc.result()
    >>> res["aggregation"], round(res["average_precision"], 3)
    ('pooled', 1.0)
    """

    def __init__(
        self,
        method: Literal["exact", "histogram"] = "exact",
        n_bins: int = 65536,
        value_range: tuple[float, float] | None = None,
    ) -> None:
        if method not in ("exact", "histogram"):
            raise ValueError(f"method must be 'exact' or 'histogram', got {method!r}.")
        self.method = method
        self.n_bins = n_bins
        self.value_range = value_range
        if method == "histogram":
            if not isinstance(n_bins, numbers.Integral) or n_bins < 1:
                raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
            if value_range is None:
                raise ValueError(
                    "The histogram method needs value_range=(low, high) given up front."
                )
            low, high = (float(x) for x in value_range)
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ValueError(f"value_range must be finite with low < high, got {value_range}.")
            # float64 edges; bin b holds scores in [edges[b], edges[b + 1])
            self._edges = low + (high - low) * (np.arange(n_bins + 1) / n_bins)
            self._pos_hist = np.zeros(n_bins, dtype=np.int64)
            self._neg_hist = np.zeros(n_bins, dtype=np.int64)
            self._volume_hists = []  # sparse (bins, pos, neg) per volume
        self._pos_chunks = []
        self._neg_chunks = []
        self._keep_chunks = True
        self._merged = None
        self._volume_summaries = []
        self._volume_n_pos = []
        self.n_volumes = 0
        self.n_voxels = 0
        self.n_positive = 0
        self.n_out_of_range = 0

    # -- feeding ---------------------------------------------------------------------
    def update(
        self, maps: ArrayLike, masks: ArrayLike | None = None, foreground: ArrayLike | None = None
    ) -> "PixelMetricAccumulator":
        """Add one volume.

        Parameters
        ----------
        maps : array-like of any shape
            Anomaly map of one volume (or slice), higher = more anomalous.
        masks : array-like of bool, same shape as ``maps``, default=None
            Lesion mask; ``None`` for a healthy volume (every voxel negative).
        foreground : array-like of bool, same shape as ``maps``, default=None
            Voxels to evaluate (e.g. the brain mask); ``None`` means all voxels.

        Returns
        -------
        self : PixelMetricAccumulator
            The accumulator, for chaining.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk.metrics import PixelMetricAccumulator
        >>> acc = PixelMetricAccumulator()
        >>> acc = acc.update(np.array([[0.9, 0.2], [0.4, 0.1]]), np.array([[1, 0], [0, 0]]))
        >>> acc.n_volumes, acc.n_voxels, acc.n_positive
        (1, 4, 1)
        """
        maps = check_maps(maps)
        masks = None if masks is None else check_mask(masks, maps.shape, "masks")
        if foreground is not None:
            foreground = check_mask(foreground, maps.shape, "foreground")
        self._add(maps, masks, foreground, record=True)
        return self

    def _add(self, maps, masks, foreground, record):
        self._merged = None
        if self.method == "exact":
            pos, neg = split_sorted(maps, masks, foreground)
            self._pos_chunks.append(pos)
            self._neg_chunks.append(neg)
            if record:
                summary = exact_summary(pos, neg)
        else:
            v, m = select(maps, masks, foreground)
            bins = self._bin_index(v)
            n = self.n_bins
            pos = bins[m] if m is not None else bins[:0]
            neg = bins[~m] if m is not None else bins
            pos_h = np.bincount(pos, minlength=n)
            neg_h = np.bincount(neg, minlength=n)
            self._pos_hist += pos_h
            self._neg_hist += neg_h
            if record:
                nz = np.flatnonzero(pos_h | neg_h)
                self._volume_hists.append((nz, pos_h[nz], neg_h[nz]))
                summary = histogram_summary(pos_h, neg_h, self._edges[:-1])
        if record:
            self._volume_summaries.append(summary)
            self._volume_n_pos.append(pos.size)
            self.n_volumes += 1
        self.n_voxels += pos.size + neg.size
        self.n_positive += pos.size

    def _bin_index(self, v):
        edges = self._edges
        low, high = edges[0], edges[-1]
        x = v.astype(np.float64, copy=False)
        idx = np.floor((x - low) * (self.n_bins / (high - low)))
        np.clip(idx, 0, self.n_bins - 1, out=idx)
        idx = idx.astype(np.intp)
        # the float formula can land one bin off near an edge: fix against the edges
        idx -= (x < edges[idx]) & (idx > 0)
        idx += (x >= edges[idx + 1]) & (idx < self.n_bins - 1)
        self.n_out_of_range += int(np.count_nonzero((x < low) | (x > high)))
        return idx

    # -- reading ---------------------------------------------------------------------
    def _pooled(self):
        if self.method == "histogram":
            return self._pos_hist, self._neg_hist
        if self._merged is None:
            pos = np.concatenate(self._pos_chunks)
            neg = np.concatenate(self._neg_chunks)
            # in place; the stable sort is a timsort, cheap on concatenated sorted runs
            pos.sort(kind="stable")
            neg.sort(kind="stable")
            self._merged = (pos, neg)
            if not self._keep_chunks:  # in-memory functions need no per-volume queries
                self._pos_chunks, self._neg_chunks = [pos], [neg]
        return self._merged

    def _require_data(self, positives=True):
        if self.n_voxels == 0:
            raise ValueError("No foreground voxel has been seen: the foreground is empty.")
        if positives and self.n_positive == 0:
            raise ValueError(
                "No positive (lesion) voxel inside the foreground: average precision, "
                "Dice and AUROC are undefined."
            )

    def per_volume_scores(self) -> dict[str, np.ndarray]:
        """Per-volume metrics, one entry per :meth:`update` call.

        Returns
        -------
        scores : dict of str to ndarray
            ``"average_precision"``, ``"best_dice"``, ``"best_dice_threshold"``,
            ``"auroc"`` (NaN for volumes without a positive foreground voxel, and
            AUROC also NaN without a negative one) and ``"n_positive"``.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk.metrics import PixelMetricAccumulator
        >>> acc = PixelMetricAccumulator()
        >>> acc = acc.update(np.array([0.9, 0.2]), np.array([1, 0]))
        >>> acc = acc.update(np.array([0.3, 0.1]))  # healthy: undefined per-volume metrics
        >>> acc.per_volume_scores()["average_precision"]
        array([ 1., nan])
        """
        keys = ("average_precision", "best_dice", "best_dice_threshold", "auroc")
        out = {k: np.array([s[k] for s in self._volume_summaries], dtype=np.float64) for k in keys}
        out["n_positive"] = np.array(self._volume_n_pos, dtype=np.int64)
        return out

    def result(self, aggregation: Literal["pooled", "per_volume"] = "pooled") -> dict[str, Any]:
        """Pixel average precision, best Dice and AUROC.

        Parameters
        ----------
        aggregation : {"pooled", "per_volume"}, default="pooled"
            ``"pooled"``: one curve over all foreground voxels of all volumes.
            ``"per_volume"``: the mean over volumes that contain at least one positive
            foreground voxel of each volume's own metric (each at its own best
            threshold, so ``best_dice_threshold`` is NaN).

        Returns
        -------
        result : dict
            ``aggregation``, ``average_precision``, ``best_dice``,
            ``best_dice_threshold``, ``auroc``, ``n_volumes`` (volumes averaged,
            or fed when pooled), ``n_voxels`` and ``n_positive``.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk.metrics import PixelMetricAccumulator
        >>> acc = PixelMetricAccumulator()
        >>> acc = acc.update(np.array([0.5, 0.1]), np.array([1, 0]))
        >>> acc = acc.update(np.array([5.0, 1.0]), np.array([1, 0]))
        >>> pooled, per_volume = acc.result(), acc.result("per_volume")
        >>> round(pooled["average_precision"], 4), per_volume["average_precision"]
        (0.8333, 1.0)
        """
        check_aggregation(aggregation)
        self._require_data()
        info = {"n_voxels": self.n_voxels, "n_positive": self.n_positive}
        if aggregation == "pooled":
            pos, neg = self._pooled()
            if self.method == "exact":
                summary = exact_summary(pos, neg)
            else:
                summary = histogram_summary(pos, neg, self._edges[:-1])
            return {"aggregation": "pooled", **summary, "n_volumes": self.n_volumes, **info}
        scores = self.per_volume_scores()
        keep = scores["n_positive"] > 0
        if not keep.any():
            raise ValueError("No volume has a positive voxel inside its foreground.")
        summary = {
            "average_precision": float(np.mean(scores["average_precision"][keep])),
            "best_dice": float(np.mean(scores["best_dice"][keep])),
            "best_dice_threshold": np.nan,
            "auroc": mean_defined(scores["auroc"][keep]),
        }
        return {
            "aggregation": "per_volume",
            **summary,
            "n_volumes": int(keep.sum()),
            **info,
        }

    def threshold_at_fpr(self, fpr: float = 0.01) -> float:
        """Label-free threshold: the fraction ``fpr`` of negative voxels reach it.

        Parameters
        ----------
        fpr : float in [0, 1), default=0.01
            Allowed false-positive rate on the negative voxels seen so far (feed
            healthy volumes only for the honest, label-free threshold).

        Returns
        -------
        threshold : float
            The lowest negative score ``t`` with ``mean(negatives >= t) <= fpr``, or
            the next float above the highest negative score when ``fpr`` is below one
            voxel's share. Equality holds when no scores tie. In the histogram method,
            the lower edge of the corresponding bin.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk.metrics import PixelMetricAccumulator
        >>> acc = PixelMetricAccumulator()
        >>> for volume in np.arange(200.0).reshape(2, 10, 10):  # healthy volumes
        ...     acc = acc.update(volume)
        >>> acc.threshold_at_fpr(0.01)  # 198 and 199 reach it: 1 % of 200 voxels
        198.0
        """
        fpr = check_fpr(fpr)
        self._require_data(positives=False)
        if self.n_voxels == self.n_positive:
            raise ValueError("No negative voxel has been seen: the FPR is undefined.")
        if self.method == "exact":
            return exact_threshold_at_fpr(self._pooled()[1], fpr)
        neg = self._neg_hist
        n_neg = int(neg.sum())
        k = int(np.floor(fpr * n_neg + 1e-9 * max(1.0, fpr * n_neg)))
        fps_ge = np.cumsum(neg[::-1])[::-1]
        # the lowest occupied bin whose edge keeps the budget, as the exact method
        # returns the lowest negative score that does
        ok = np.flatnonzero((fps_ge <= k) & (neg > 0))
        if ok.size:
            return float(self._edges[ok[0]])
        return float(np.nextafter(self._edges[np.flatnonzero(neg)[-1]], np.inf))

    def dice_at_threshold(
        self, threshold: float, aggregation: Literal["pooled", "per_volume"] = "pooled"
    ) -> float:
        """Dice of ``map >= threshold`` against the masks.

        Parameters
        ----------
        threshold : float
            Voxels with a map value ``>= threshold`` are called anomalous.
        aggregation : {"pooled", "per_volume"}, default="pooled"
            ``"pooled"``: one Dice over all voxels; ``"per_volume"``: mean Dice over
            the volumes with at least one positive foreground voxel.

        Returns
        -------
        dice : float
            The Dice score (exact in the histogram method only for bin-edge
            thresholds; otherwise the threshold is rounded up to the next edge).

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk.metrics import PixelMetricAccumulator
        >>> acc = PixelMetricAccumulator()
        >>> acc = acc.update(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
        >>> acc.dice_at_threshold(0.3)  # TP 2, FP 1, FN 0
        0.8
        """
        threshold = check_threshold(threshold)
        check_aggregation(aggregation)
        self._require_data()
        if aggregation == "pooled":
            counts = [self._counts_ge(*self._pooled(), threshold)]
        else:
            if self.method == "exact":
                parts = zip(self._pos_chunks, self._neg_chunks)
            else:
                parts = (
                    (self._expand(nz, p), self._expand(nz, q)) for nz, p, q in self._volume_hists
                )
            counts = [self._counts_ge(p, q, threshold) for p, q in parts]
            counts = [c for c in counts if c[2] > 0]
            if not counts:
                raise ValueError("No volume has a positive voxel inside its foreground.")
        return float(np.mean([dice_from_counts(*c) for c in counts]))

    def _expand(self, nz, counts):
        full = np.zeros(self.n_bins, dtype=np.int64)
        full[nz] = counts
        return full

    def _counts_ge(self, pos, neg, threshold):
        """(TP, FP, n_pos) of ``score >= threshold`` for sorted scores or histograms."""
        if self.method == "exact":
            n_pos = pos.size
            tp = n_pos - np.searchsorted(pos, ceil_to_dtype(threshold, pos.dtype))
            fp = neg.size - np.searchsorted(neg, ceil_to_dtype(threshold, neg.dtype))
            return int(tp), int(fp), n_pos
        k = int(np.searchsorted(self._edges[:-1], threshold, side="left"))
        return int(pos[k:].sum()), int(neg[k:].sum()), int(pos.sum())
