"""
Quickstart: train on healthy brains, map lesions
================================================

The whole workflow on the offline cohort: build healthy training subjects and lesioned
test subjects from the real anatomy shipped with the package, train a
:class:`~disyre_sk.DISYREDetector` on the healthy volumes only, and compare its voxel
maps with the true lesion masks using :mod:`disyre_sk.metrics`.

The cohort is coarse (4 mm voxels) and the network tiny and trained for 200 steps, so
that the example runs in about a minute on a CPU. The reference setting
(``patch_size=128``, the default network, 100k steps) needs a GPU; see
:ref:`gpu_training`.
"""

# %%
# Data: healthy training volumes, mixed test volumes
# --------------------------------------------------
# Every volume is ``(Z, Y, X)`` with the axial axis first, skull-stripped (background
# exactly 0) and normalised to ``[0, 1]``. Test subjects are either healthy or carry one
# lesion (tumour, stroke, small foci or a cavity) with an exact mask.
import matplotlib.pyplot as plt
import numpy as np

from disyre_sk import DISYREDetector
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import best_dice, dice_at_fpr, pixel_average_precision, sample_auroc

cohort = make_brain_cohort(n_healthy=6, n_test=6, voxel_size=4.0, random_state=0)
print(cohort.X_train.shape, cohort.X_test.shape)
print(cohort.families_test)

# %%
# Train on healthy volumes only
# -----------------------------
# ``fit`` cuts ``patch_size`` patches from the axial slices of the healthy volumes,
# corrupts them with synthetic anomalies and teaches the UNet to restore them. No label
# is used. ``fit`` also learns the intensity range of the training brains and sets the
# label-free threshold ``offset_`` from the training scores.
det = DISYREDetector(
    patch_size=32,
    widths=(16, 32),
    n_steps=200,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=20,
    severities=(0.25, 0.5),
    stride=16,
    random_state=0,
)
det.fit(cohort.X_train)
print(
    f"trained {len(det.history_['loss'])} steps on {det.device_}, "
    f"{det.history_['n_slices']} slices; final loss {np.mean(det.history_['loss'][-20:]):.4f}"
)

# %%
# Maps, scores and labels
# -----------------------
# :meth:`~disyre_sk.DISYREDetector.decision_map` has the shape of the input and is
# *higher for more anomalous voxels* (0 outside the brain).
# :meth:`~disyre_sk.DISYREDetector.score_samples` follows scikit-learn: *higher for more
# normal scans*. :meth:`~disyre_sk.DISYREDetector.predict` gives +1 (inlier) or -1.
maps = det.decision_map(cohort.X_test)
scores = det.score_samples(cohort.X_test)
labels = det.predict(cohort.X_test)
for family, score, label in zip(cohort.families_test, scores, labels):
    print(f"{family:>8}: score_samples {score:+.4f}  predict {label:+d}")

# %%
# Metrics
# -------
# Pixel metrics are exact, over the brain voxels of the lesioned volumes. Dice at 1 %
# FPR uses a threshold set on the *healthy* test volumes alone, so it needs no lesion
# label to choose; best Dice is the optimistic upper bound that peeks at the labels. The
# volume-level AUROC ranks scans by ``-score_samples`` (higher = more anomalous).
lesioned = np.array([f != "healthy" for f in cohort.families_test])
fg = cohort.brain_masks_test
masks = cohort.masks_test
ap = pixel_average_precision(maps[lesioned], masks[lesioned], fg[lesioned])
dice, _ = best_dice(maps[lesioned], masks[lesioned], fg[lesioned])
dice_1pct, threshold = dice_at_fpr(
    maps[lesioned],
    masks[lesioned],
    maps[~lesioned],
    fpr=0.01,
    foreground=fg[lesioned],
    healthy_foreground=fg[~lesioned],
)
auroc = sample_auroc(-scores, lesioned)
baseline_ap = pixel_average_precision(cohort.X_test[lesioned], masks[lesioned], fg[lesioned])
print(
    f"pixel AP {ap:.3f} (intensity as the map: {baseline_ap:.3f}), lesion prevalence "
    f"{masks[lesioned].sum() / fg[lesioned].sum():.3f}"
)
print(f"best Dice {dice:.3f}, Dice at 1 % healthy FPR {dice_1pct:.3f}, volume AUROC {auroc:.2f}")

# %%
# Look at the maps
# ----------------
# For each lesioned test subject, the axial slice with the most lesion voxels: the
# scan, the true lesion outline (red) and the map. The colour scale of the maps is fixed
# at the label-free 1 % FPR threshold, so every voxel shown in yellow would be flagged.
picks = np.flatnonzero(lesioned)
fig, axes = plt.subplots(len(picks), 3, figsize=(7.5, 2.5 * len(picks)), squeeze=False)
for row, i in zip(axes, picks):
    k = int(np.argmax(masks[i].sum(axis=(1, 2))))
    row[0].imshow(cohort.X_test[i, k], cmap="gray", origin="lower")
    row[0].set_title(f"{cohort.families_test[i]}: scan", fontsize=9)
    row[1].imshow(cohort.X_test[i, k], cmap="gray", origin="lower")
    row[1].contour(masks[i, k], levels=[0.5], colors="red", linewidths=0.8)
    row[1].set_title("lesion mask", fontsize=9)
    row[2].imshow(maps[i, k], cmap="inferno", origin="lower", vmin=0, vmax=threshold)
    row[2].set_title("decision_map", fontsize=9)
    for ax in row:
        ax.axis("off")
fig.tight_layout()

# %%
# What next
# ---------
# * :ref:`sphx_glr_auto_examples_plot_inference_modes.py` changes the inference without
#   retraining;
# * :ref:`sphx_glr_auto_examples_plot_nifti_roundtrip.py` maps a NIfTI file and writes
#   the map back on the scan's grid;
# * ``det.save("model.disyre")`` writes a model file that loads without unpickling
#   (:ref:`persistence`).
