"""
Choosing the corruption with ``Pipeline`` and ``GridSearchCV``
==============================================================

:class:`~disyre_sk.DISYREDetector` is a scikit-learn estimator, so it can sit at the end
of a :class:`~sklearn.pipeline.Pipeline` and its parameters can be searched with
:class:`~sklearn.model_selection.GridSearchCV`. Here we compare the three training
corruptions (``"dag"``, ``"fpi"`` and the ``"gaussian"`` ablation) with scorers from
:mod:`disyre_sk.metrics`.

Two things differ from a supervised search:

* the model must be **trained on healthy scans only** and **scored on scans with
  lesions**, so the split is fixed with :class:`~sklearn.model_selection.PredefinedSplit`
  rather than drawn at random;
* the "labels" ``y`` are voxel masks, one value per voxel of
  :meth:`~disyre_sk.DISYREDetector.decision_map`; the detector ignores them in ``fit``.

Everything is tiny (2-D slices, 80 training steps per candidate) so that the example
runs in about a minute; with so little training the ranking is only indicative.
"""

# %%
# Slices: healthy for training, mixed for validation
# --------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from disyre_sk import DISYREDetector
from disyre_sk.datasets import cohort_slices, make_brain_cohort
from disyre_sk.io import foreground_mask, normalize_intensity
from disyre_sk.metrics import (
    best_dice_scorer,
    pixel_ap_scorer,
    sample_auroc,
)

cohort = make_brain_cohort(
    n_healthy=4, n_test=4, voxel_size=4.0, healthy_test_fraction=0.0, random_state=0
)
# Central slices only (brain over half the image), as in
# :ref:`sphx_glr_auto_examples_plot_pyod_comparison.py`. For validation: every other
# slice with a lesion and every third slice without.
train = cohort_slices(cohort.X_train, min_foreground=0.5)
val = cohort_slices(cohort.X_test, cohort.masks_test, min_foreground=0.5)
X_train = train.images
has_lesion = val.masks.any(axis=(1, 2))
keep = np.flatnonzero(has_lesion)[::2].tolist() + np.flatnonzero(~has_lesion)[::3].tolist()
X_val, y_val = val.images[keep], val.masks[keep]
print(
    f"training slices {X_train.shape}, validation slices {X_val.shape} "
    f"({int(y_val.any(axis=(1, 2)).sum())} with a lesion)"
)

# %%
# One array, one fixed split
# --------------------------
# ``test_fold = -1`` keeps a sample in every training set; ``0`` puts it in the one
# validation fold. Healthy training slices get all-zero masks.
X = np.concatenate([X_train, X_val])
y = np.concatenate([np.zeros_like(X_train, dtype=bool), y_val])
split = PredefinedSplit(np.r_[np.full(len(X_train), -1), np.zeros(len(X_val), int)])

# %%
# A pipeline: per-scan normalisation, then the detector
# -----------------------------------------------------
# A stateless :class:`~sklearn.preprocessing.FunctionTransformer` maps each slice's
# brain to ``[0, 1]`` with :func:`disyre_sk.io.normalize_intensity`, the usual
# preprocessing of real scans. The detector is tiny and maps each slice in one window.


def normalise_each(images):
    """Foreground 0th-98th percentile of each image to [0, 1], background 0."""
    return np.stack([normalize_intensity(im, foreground_mask(im)) for im in images])


pipe = make_pipeline(
    FunctionTransformer(normalise_each),
    DISYREDetector(
        patch_size=32,
        widths=(16, 32),
        n_steps=80,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=10,
        severities=(0.25, 0.5),
        window_size="slice",
        random_state=0,
    ),
)

# %%
# Scorers
# -------
# :func:`~disyre_sk.metrics.pixel_ap_scorer` and
# :func:`~disyre_sk.metrics.best_dice_scorer` compare ``decision_map(X)`` with the masks.
# Any callable ``scorer(estimator, X, y)`` works too: this one ranks slices by
# ``-score_samples`` (scikit-learn's sign is higher = more normal) and derives each
# slice's label from its mask. A pipeline forwards ``score_samples`` to the detector;
# the map scorers need ``decision_map``, which only the detector has, so the custom
# scorer reaches it through ``pipe[-1]`` after the pipeline's own transform.


def slice_auroc_scorer(estimator, X, y):
    labels = np.asarray(y).reshape(len(y), -1).any(axis=1)
    return sample_auroc(-estimator.score_samples(X), labels)


def on_detector(scorer):
    """Apply a map scorer to the last step of a pipeline, on transformed input."""
    return lambda pipeline, X, y: scorer(pipeline[-1], pipeline[:-1].transform(X), y)


scoring = {
    "pixel AP": on_detector(pixel_ap_scorer),
    "best Dice": on_detector(best_dice_scorer),
    "slice AUROC": slice_auroc_scorer,
}

# %%
# The search
# ----------
# ``refit=False``: we only want the comparison. Parameter names follow scikit-learn's
# ``<step>__<parameter>`` convention.
search = GridSearchCV(
    pipe,
    {"disyredetector__corruption": ["dag", "fpi", "gaussian"]},
    scoring=scoring,
    cv=split,
    refit=False,
)
search.fit(X, y)

results = search.cv_results_
print(f"{'corruption':<12}" + "".join(f"{name:>13}" for name in scoring) + f"{'fit (s)':>10}")
for i, params in enumerate(results["params"]):
    row = "".join(f"{results[f'mean_test_{name}'][i]:>13.3f}" for name in scoring)
    print(f"{params['disyredetector__corruption']:<12}{row}{results['mean_fit_time'][i]:>10.1f}")

candidates = [p["disyredetector__corruption"] for p in results["params"]]
fig, ax = plt.subplots(figsize=(6.5, 3))
for j, name in enumerate(scoring):
    ax.bar(
        np.arange(len(candidates)) + (j - 1) * 0.27,
        results[f"mean_test_{name}"],
        width=0.27,
        label=name,
    )
ax.set_xticks(np.arange(len(candidates)), candidates)
ax.set_xlabel("training corruption")
ax.set_ylim(0, 1)
ax.legend(fontsize=8, ncols=3, loc="upper right")
ax.set_title("Validation scores of the three candidates", fontsize=10)
fig.tight_layout()

# %%
# On this little data only the voxel-level scores separate the candidates clearly: the
# slice AUROC rests on some thirty validation slices and moves a lot from one seed to the
# next. The same search runs unchanged on real data: replace the slices by healthy
# volumes for training and annotated volumes for validation, and raise ``n_steps`` and
# the network size (:ref:`gpu_training`). A search over several parameters multiplies
# the number of trainings, so on real data keep grids small and prefer a GPU.
