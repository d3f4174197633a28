"""Streaming evaluation of ``reproduce_papers.py``: one volume in memory at a time.

Each scan is read, mapped and folded into :class:`disyre_sk.metrics.PixelMetricAccumulator`
(pixel metrics) and into short lists of slice and volume scores, then dropped: a test
set of hundreds of 240 x 240 x 155 volumes never sits in memory as maps.
"""

from __future__ import annotations

import time

import numpy as np
from _reproduce_data import read_mask, read_scan

from disyre_sk.metrics import PixelMetricAccumulator, sample_auroc, sample_average_precision


def topk_mean(values: np.ndarray, top_k: float) -> float:
    """Mean of the largest values: ``top_k`` of them (a count) or that fraction (< 1).

    The rule of ``DISYREDetector(score_reduction="topk")``, so slice and volume scores
    are what ``score_samples`` would give for the same voxels.
    """
    n = values.size
    if n == 0:
        return 0.0
    k = int(top_k) if top_k >= 1 else int(np.ceil(top_k * n))
    k = min(max(k, 1), n)
    return float(np.partition(values, n - k)[n - k :].mean())


def _both_classes(labels) -> bool:
    labels = np.asarray(labels, dtype=bool)
    return bool(labels.any() and not labels.all())


class StreamingEvaluation:
    """Maps scans one by one with a fitted detector and accumulates every metric.

    Parameters
    ----------
    detector : DISYREDetector
        Fitted on 2-D slices cropped to ``box``.
    grid : tuple of int
        ``(Z, Y, X)`` of every scan.
    box : tuple of int
        In-plane crop ``(y0, y1, x0, x1)`` the detector was trained on. Brain voxels
        outside it get the map value 0 (and are counted).
    slab : tuple of int
        Axial slices ``[start, stop)`` evaluated.
    method : {"exact", "histogram"}
        Pixel metric accumulation (see ``PixelMetricAccumulator``).
    fpr : float
        False-positive rate on healthy voxels that fixes the label-free threshold.
    """

    def __init__(self, detector, grid, box, slab, *, method="exact", fpr=0.01):
        self.detector = detector
        self.grid = tuple(grid)
        self.box = box
        self.slab = slab
        self.fpr = fpr
        self.top_k = float(detector.top_k)
        kwargs = {"value_range": (0.0, 1.0)} if method == "histogram" else {}
        self.lesion = PixelMetricAccumulator(method, **kwargs)
        self.healthy = PixelMetricAccumulator(method, **kwargs)
        self.healthy_slice_scores: list[float] = []  # sets the saved model's offset_
        self.slice_scores: list[float] = []
        self.slice_labels: list[bool] = []
        self.volume_scores: list[float] = []
        self.volume_labels: list[bool] = []
        self.per_volume: list[dict] = []
        self.map_seconds: list[float] = []
        self.counts = {
            "brain_voxels_outside_box": 0,
            "lesion_voxels_outside_box": 0,
            "lesion_voxels_outside_brain": 0,
            "test_volumes_without_lesion": 0,
        }

    def _map(self, volume: np.ndarray, brain: np.ndarray):
        """Map of a whole volume (0 outside the box and the slab) and the voxels evaluated."""
        y0, y1, x0, x1 = self.box
        fg = np.zeros(self.grid, dtype=bool)
        fg[self.slab[0] : self.slab[1]] = brain[self.slab[0] : self.slab[1]]
        maps = np.zeros(self.grid, dtype=np.float32)
        z = np.flatnonzero(fg[:, y0:y1, x0:x1].any(axis=(1, 2)))
        seconds = 0.0
        if z.size:
            start = time.perf_counter()
            maps[z, y0:y1, x0:x1] = self.detector.decision_map(volume[z, y0:y1, x0:x1])
            seconds = time.perf_counter() - start
        inside = np.zeros(self.grid, dtype=bool)
        inside[:, y0:y1, x0:x1] = True
        self.counts["brain_voxels_outside_box"] += int(np.count_nonzero(fg & ~inside))
        return maps, fg, seconds, inside

    def _slice_level(self, maps, fg, mask):
        z = np.flatnonzero(fg.any(axis=(1, 2)))
        scores = [topk_mean(maps[k][fg[k]], self.top_k) for k in z]
        labels = [False] * len(z) if mask is None else (mask[z] & fg[z]).any(axis=(1, 2)).tolist()
        return scores, labels

    def add_healthy(self, subject: str, path: str) -> None:
        """A held-out healthy scan: feeds the label-free threshold and volume negatives."""
        volume, brain = read_scan(path, self.grid)
        maps, fg, _, _ = self._map(volume, brain)
        self.healthy.update(maps, None, fg)
        self.healthy_slice_scores += self._slice_level(maps, fg, None)[0]
        self.volume_scores.append(topk_mean(maps[fg], self.top_k))
        self.volume_labels.append(False)

    def add_test(self, subject: str, path: str, mask_path: str) -> None:
        """A test scan with its lesion mask."""
        volume, brain = read_scan(path, self.grid)
        mask = read_mask(mask_path, self.grid)
        maps, fg, seconds, inside = self._map(volume, brain)
        in_slab = np.zeros(self.grid, dtype=bool)
        in_slab[self.slab[0] : self.slab[1]] = True
        lesion = mask & fg
        self.counts["lesion_voxels_outside_brain"] += int(np.count_nonzero(mask & in_slab & ~fg))
        self.counts["lesion_voxels_outside_box"] += int(np.count_nonzero(lesion & ~inside))
        if not lesion.any():
            self.counts["test_volumes_without_lesion"] += 1
        self.lesion.update(maps, mask, fg)
        scores, labels = self._slice_level(maps, fg, mask)
        self.slice_scores += scores
        self.slice_labels += labels
        volume_score = topk_mean(maps[fg], self.top_k)
        self.volume_scores.append(volume_score)
        self.volume_labels.append(bool(lesion.any()))
        self.map_seconds.append(seconds)
        self.per_volume.append(
            {
                "subject": subject,
                "lesion_voxels": int(np.count_nonzero(lesion)),
                "brain_voxels": int(np.count_nonzero(fg)),
                "volume_score": volume_score,
                "map_seconds": seconds,
            }
        )

    def result(self) -> dict:
        """Every metric, named by its aggregation; None where a metric is undefined."""
        out: dict = {"notes": []}
        pooled = self.lesion.result("pooled")
        per_volume = self.lesion.result("per_volume")
        out["pixel_ap_pooled"] = pooled["average_precision"]
        out["pixel_ap_per_volume"] = per_volume["average_precision"]
        out["best_dice_pooled"] = pooled["best_dice"]
        out["best_dice_threshold_pooled"] = pooled["best_dice_threshold"]
        out["best_dice_per_volume"] = per_volume["best_dice"]
        out["pixel_auroc_pooled"] = pooled["auroc"]
        threshold = self.healthy.threshold_at_fpr(self.fpr)
        out["healthy_fpr_threshold"] = threshold
        out["dice_at_fpr_pooled"] = self.lesion.dice_at_threshold(threshold, "pooled")
        out["dice_at_fpr_per_volume"] = self.lesion.dice_at_threshold(threshold, "per_volume")
        out["n_lesion_voxels"] = pooled["n_positive"]
        out["n_brain_voxels"] = pooled["n_voxels"]
        out["n_out_of_range"] = self.lesion.n_out_of_range + self.healthy.n_out_of_range
        for level, scores, labels in (
            ("slice", self.slice_scores, self.slice_labels),
            ("volume", self.volume_scores, self.volume_labels),
        ):
            out[f"n_{level}s"] = len(labels)
            out[f"n_{level}s_lesioned"] = int(np.sum(labels))
            if _both_classes(labels):
                out[f"{level}_auroc"] = sample_auroc(scores, labels)
                out[f"{level}_ap"] = sample_average_precision(scores, labels)
            else:
                out[f"{level}_auroc"] = out[f"{level}_ap"] = None
                out["notes"].append(f"{level} AUROC/AP undefined: one class only")
        seconds = np.asarray(self.map_seconds)
        out["seconds_per_volume"] = float(seconds.mean()) if seconds.size else None
        out["seconds_per_volume_median"] = float(np.median(seconds)) if seconds.size else None
        scores = self.lesion.per_volume_scores()
        for row, ap, dice in zip(
            self.per_volume, scores["average_precision"], scores["best_dice"], strict=True
        ):
            row["pixel_ap"] = None if np.isnan(ap) else float(ap)
            row["best_dice"] = None if np.isnan(dice) else float(dice)
        out.update(self.counts)
        return out
