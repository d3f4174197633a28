"""Exact evaluation metrics for anomaly maps and anomaly scores.

Pixel (voxel) level, from anomaly maps where higher = more anomalous (the sign of
:meth:`DISYREDetector.decision_map <disyre_sk.DISYREDetector.decision_map>`):

- :func:`pixel_average_precision`, :func:`best_dice`, :func:`pixel_auroc`;
- :func:`threshold_at_fpr`, :func:`dice_at_threshold`, :func:`dice_at_fpr`: Dice at a
  threshold chosen on healthy scans only (label-free);
- :func:`pixel_metrics` (all of them at once) and :func:`per_volume_scores`;
- :class:`PixelMetricAccumulator`: the same, streamed volume by volume in bounded memory.

Sample (slice or volume) level, from scores where higher = more anomalous (pass
``-detector.score_samples(X)``): :func:`sample_auroc`, :func:`sample_average_precision`,
with :func:`slice_labels` and :func:`slice_scores` to derive slice labels and scores from
masks and maps.

Uncertainty: :func:`bootstrap_interval`, a confidence interval of any of these computed
on resampled scans (healthy and lesioned resampled apart).

Scorers with scikit-learn's ``scorer(estimator, X, y)`` signature:
:func:`pixel_ap_scorer`, :func:`best_dice_scorer`, :func:`sample_auroc_scorer`,
:func:`sample_ap_scorer`.

Every metric is exact: no voxel is subsampled. A voxel is called anomalous when its map
value is ``>= threshold`` (the convention of :func:`sklearn.metrics.precision_recall_curve`).
Pixel metrics take ``aggregation="pooled"`` (one curve over all foreground voxels of all
volumes; the default) or ``"per_volume"`` (the mean, over the volumes that contain at least
one lesion voxel in their foreground, of each volume's own metric; the first axis of the
arrays indexes volumes). :func:`per_volume_scores` returns the per-volume values behind the
mean.
"""

from ._accumulator import PixelMetricAccumulator
from ._bootstrap import bootstrap_interval
from ._pixel import (
    best_dice,
    dice_at_fpr,
    dice_at_threshold,
    per_volume_scores,
    pixel_auroc,
    pixel_average_precision,
    pixel_metrics,
    threshold_at_fpr,
)
from ._sample import (
    best_dice_scorer,
    pixel_ap_scorer,
    sample_ap_scorer,
    sample_auroc,
    sample_auroc_scorer,
    sample_average_precision,
    slice_labels,
    slice_scores,
)

__all__ = [
    "PixelMetricAccumulator",
    "best_dice",
    "best_dice_scorer",
    "bootstrap_interval",
    "dice_at_fpr",
    "dice_at_threshold",
    "per_volume_scores",
    "pixel_ap_scorer",
    "pixel_auroc",
    "pixel_average_precision",
    "pixel_metrics",
    "sample_ap_scorer",
    "sample_auroc",
    "sample_auroc_scorer",
    "sample_average_precision",
    "slice_labels",
    "slice_scores",
    "threshold_at_fpr",
]
