"""
DISYRE beside PyOD detectors, slice by slice
============================================

Generic outlier detectors see an image as a flat vector of pixels. How do they compare
with DISYRE at telling slices with a lesion from slices without? This example trains
PyOD's :class:`~pyod.models.iforest.IForest`, :class:`~pyod.models.pca.PCA`,
:class:`~pyod.models.ecod.ECOD` and :class:`~pyod.models.knn.KNN` on flattened healthy
axial slices, and :class:`disyre_sk.pyod.DISYREPyOD` on the very same table, then ranks
the test slices by their anomaly scores.

:class:`~disyre_sk.pyod.DISYREPyOD` follows PyOD's conventions (higher score = more
anomalous, labels 0/1, ``decision_scores_`` and ``threshold_``), so it drops into code
written for PyOD. It needs ``pip install "disyre-sk[pyod]"``. Unlike the others, it also
returns a map of *where* the anomaly is.
"""

# %%
# Flattened slices
# ----------------
# We keep the axial slices in which the brain fills at least half of the image. Slices
# near the top and bottom of the head hold little tissue, look unusual to every
# detector, and almost never carry a lesion, so including them mostly measures where a
# slice lies rather than whether it is abnormal (try ``min_foreground=0.2``).
#
# A table ``(n, H * W)`` with ``image_shape=(H, W)`` tells the detector how to fold each
# row back into an image. A slice is "anomalous" if any of its voxels is in a lesion.
import time

import matplotlib.pyplot as plt
import numpy as np
from pyod.models.ecod import ECOD
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from pyod.models.pca import PCA

from disyre_sk import DISYREDetector
from disyre_sk.datasets import cohort_slices, make_brain_cohort
from disyre_sk.metrics import sample_auroc, sample_average_precision
from disyre_sk.pyod import DISYREPyOD

cohort = make_brain_cohort(n_healthy=6, n_test=6, voxel_size=4.0, random_state=0)
train = cohort_slices(cohort.X_train, min_foreground=0.5)
test = cohort_slices(cohort.X_test, cohort.masks_test, min_foreground=0.5)
image_shape = train.images.shape[1:]
X_train = train.images.reshape(len(train.images), -1)
X_test = test.images.reshape(len(test.images), -1)
y_test = test.masks.any(axis=(1, 2)).astype(int)
print(f"train {X_train.shape}, test {X_test.shape}, {y_test.sum()} test slices with a lesion")

# %%
# Fit everything on the same healthy table
# ----------------------------------------
disyre = DISYREDetector(
    image_shape=image_shape,
    patch_size=32,
    widths=(16, 32),
    n_steps=200,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=20,
    severities=(0.25, 0.5),
    window_size="slice",
    random_state=0,
)
detectors = {
    "IForest": IForest(random_state=0),
    "PCA": PCA(),
    "ECOD": ECOD(),
    "KNN": KNN(),
    "DISYRE": DISYREPyOD(disyre, contamination=0.05),
}
results = {}
for name, clf in detectors.items():
    start = time.perf_counter()
    clf.fit(X_train)
    scores = clf.decision_function(X_test)  # higher = more anomalous, for all of them
    results[name] = (
        sample_auroc(scores, y_test),
        sample_average_precision(scores, y_test),
        time.perf_counter() - start,
    )
print(f"{'detector':<10}{'AUROC':>8}{'AP':>8}{'fit + score (s)':>17}")
for name, (auroc, ap, seconds) in results.items():
    print(f"{name:<10}{auroc:>8.3f}{ap:>8.3f}{seconds:>17.1f}")
print(f"(a random ranking has AP {y_test.mean():.3f})")

# %%
# With about a hundred test slices from six subjects and a network trained for 200 steps,
# differences of a few hundredths are noise: change ``random_state`` and they move. The
# comparison becomes meaningful on real data with hundreds of scans and a fully trained
# model.

# %%
names = list(results)
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(names, [results[n][0] for n in names], color=["0.6"] * 4 + ["tab:orange"])
ax.axvline(0.5, color="k", lw=0.8, ls="--")
ax.set_xlim(0, 1)
ax.set_xlabel("slice-level AUROC (lesion vs no lesion)")
fig.tight_layout()

# %%
# PyOD's conventions
# ------------------
# ``predict`` labels 1 for outliers, from ``threshold_``, the ``1 - contamination``
# quantile of the training scores. The wrapped scikit-learn estimator is ``detector_``;
# its ``score_samples`` keeps scikit-learn's sign (higher = more normal).
clf = detectors["DISYRE"]
labels = clf.predict(X_test)
print(
    "threshold_",
    round(float(clf.threshold_), 4),
    "| flagged test slices:",
    labels.sum(),
    "| of which with a lesion:",
    int((labels & y_test).sum()),
)
print(
    "sign check:",
    np.allclose(clf.decision_function(X_test[:3]), -clf.detector_.score_samples(X_test[:3])),
)

# %%
# Where, not only whether
# -----------------------
# Rows of the table fold back into images, and so do DISYRE's maps: the slices it ranks
# most anomalous, with the lesion outlined in red.
scores = clf.decision_function(X_test)
top = np.argsort(scores)[::-1][:4]
maps = clf.decision_map(X_test[top]).reshape(-1, *image_shape)
fig, axes = plt.subplots(2, 4, figsize=(8, 4.4))
for col, (i, m) in enumerate(zip(top, maps)):
    axes[0, col].imshow(test.images[i], cmap="gray", origin="lower")
    if test.masks[i].any():
        axes[0, col].contour(test.masks[i], levels=[0.5], colors="red", linewidths=0.7)
    axes[0, col].set_title(f"score {scores[i]:.3f}", fontsize=10)
    axes[1, col].imshow(m, cmap="inferno", origin="lower")
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("Top-ranked test slices and their DISYRE maps", fontsize=11)
fig.tight_layout()
