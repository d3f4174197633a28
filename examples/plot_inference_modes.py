"""
Restorations, ensemble and multistep inference
==============================================

What does the trained network actually do, and how do its restorations become a map?
This example trains one tiny :class:`~disyre_sk.DISYREDetector`, then

1. corrupts a healthy slice it has never seen at several severities and lets the network
   restore it (the training task);
2. restores a slice with a real lesion at several severities and averages the changes:
   the ``"ensemble"`` map;
3. compares ``inference="ensemble"``, ``inference="multistep"`` and whole-slice
   windows on the same model. Inference parameters are read when a map is computed, so
   :meth:`~sklearn.base.BaseEstimator.set_params` switches them without refitting.
"""

# %%
# A tiny model
# ------------
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from disyre_sk import DISYREDetector
from disyre_sk.corruption import get_corruption
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import best_dice, pixel_average_precision

cohort = make_brain_cohort(
    n_healthy=6,
    n_test=4,
    voxel_size=4.0,
    families=("stroke", "cavity", "tumour"),
    healthy_test_fraction=0.25,
    random_state=1,
)
print(cohort.families_test)
# ``window_size="slice"`` keeps the scoring at the end of ``fit`` cheap; every inference
# setting compared below is then chosen explicitly.
det = DISYREDetector(
    patch_size=32,
    widths=(16, 32),
    n_steps=200,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=20,
    stride=16,
    window_size="slice",
    random_state=0,
).fit(cohort.X_train)
print("inference severities:", det.severities)

# %%
# The network's task: undo a synthetic anomaly
# --------------------------------------------
# ``det.network_`` is a plain :class:`~disyre_sk.nn.UNet`: ``network(x, severity)``
# returns its estimate of the healthy image. It expects intensities scaled the way
# ``fit`` scaled the training scans (``intensity_range_`` to ``[0, 1]``, background 0).
# Here we corrupt one axial slice of the *healthy test subject* with the DAG corruption
# at forced severities and restore it at the same severity; the network is fully
# convolutional, so it takes the whole slice at once.
low, high = det.intensity_range_


def scaled(volume_slice):
    """Scale raw intensities as ``fit`` learned, background 0, as a (1, 1, H, W) tensor."""
    out = np.clip((volume_slice - low) / (high - low), 0, 1) * (volume_slice > 0)
    return torch.from_numpy(out.astype(np.float32))[None, None]


def restore(x, severity):
    with torch.no_grad():
        return det.network_(x, torch.full((x.shape[0],), severity)).clamp(0, 1)


healthy_subject = cohort.families_test.index("healthy")
z = 21
x_healthy = scaled(cohort.X_test[healthy_subject, z])
# Two images: the foreign texture of the DAG corruption comes from the other one.
pair = torch.cat([x_healthy, scaled(cohort.X_train[0, z])])
severities = [0.25, 0.5, 0.75]
fig, axes = plt.subplots(3, len(severities), figsize=(7, 7.2))
for col, s in enumerate(severities):
    corrupted = get_corruption("dag")(pair, torch.Generator().manual_seed(0), severity=s)
    xc = corrupted.image[:1]
    restored = restore(xc, s)
    panels = [
        (xc, "gray", f"DAG-corrupted, s = {s}"),
        (restored, "gray", "restoration"),
        ((xc - restored).abs(), "inferno", "|corrupted - restoration|"),
    ]
    for row, (img, cmap, title) in enumerate(panels):
        ax = axes[row, col]
        ax.imshow(img[0, 0], cmap=cmap, origin="lower", vmin=0, vmax=1 if row < 2 else 0.4)
        if row != 1:
            ax.contour(corrupted.mask[0, 0], levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
fig.suptitle("A synthetic anomaly, restored (cyan: where it was inserted)", fontsize=10)
fig.tight_layout()

# %%
# A real lesion: one restoration per severity, then the average
# -------------------------------------------------------------
# At test time nothing is corrupted: the scan is restored *as if* it carried an anomaly
# of each severity. A low severity asks for small corrections, a high one allows bold
# changes (with this tiny, briefly trained network the four restorations differ little).
# The ``"ensemble"`` map is the mean of ``|x - restoration|`` over the severities
# (``det.severities``).
subject = cohort.families_test.index("tumour")
k = int(np.argmax(cohort.masks_test[subject].sum(axis=(1, 2))))
x = scaled(cohort.X_test[subject, k])
changes = []
fig, axes = plt.subplots(2, len(det.severities) + 1, figsize=(10, 4.6))
axes[0, 0].imshow(x[0, 0], cmap="gray", origin="lower", vmin=0, vmax=1)
axes[0, 0].contour(cohort.masks_test[subject, k], levels=[0.5], colors="red", linewidths=0.7)
axes[0, 0].set_title("scan (red: lesion)", fontsize=10)
for col, s in enumerate(det.severities, start=1):
    restored = restore(x, s)
    changes.append((x - restored).abs()[0, 0])
    axes[0, col].imshow(restored[0, 0], cmap="gray", origin="lower", vmin=0, vmax=1)
    axes[0, col].set_title(f"restored, s = {s}", fontsize=10)
    axes[1, col].imshow(changes[-1], cmap="inferno", origin="lower", vmin=0, vmax=0.4)
    axes[1, col].set_title(f"|x - restored|, s = {s}", fontsize=10)
axes[1, 0].imshow(torch.stack(changes).mean(0), cmap="inferno", origin="lower", vmin=0, vmax=0.4)
axes[1, 0].set_title("mean: ensemble map", fontsize=10)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()

# %%
# Three ways to map the same scans
# --------------------------------
# ``decision_map`` tiles each slice with overlapping ``patch_size`` windows (``stride``
# apart, fused with Gaussian weights) and zeroes the map outside the brain.
#
# * ``inference="ensemble"``: as above, one restoration per severity, averaged;
# * ``inference="multistep"``: cold-diffusion sampling, from the highest severity down:
#   restore, keep a shrinking fraction of what was removed, restore again at the next
#   severity, and average the changes of all steps;
# * ``window_size="slice"``: one window over each whole slice instead of tiles, the
#   cheapest setting; check its accuracy on your own data before relying on it.
lesioned = np.array([f != "healthy" for f in cohort.families_test])
fg, masks = cohort.brain_masks_test[lesioned], cohort.masks_test[lesioned]
families = [f for f in cohort.families_test if f != "healthy"]
settings = {
    "ensemble": dict(inference="ensemble", window_size=None),
    "multistep": dict(inference="multistep", window_size=None),
    "ensemble, whole slice": dict(inference="ensemble", window_size="slice"),
}
maps = {}
for name, params in settings.items():
    det.set_params(**params)  # no refit: the network stays as trained
    start = time.perf_counter()
    maps[name] = det.decision_map(cohort.X_test[lesioned])
    seconds = time.perf_counter() - start
    ap = pixel_average_precision(maps[name], masks, fg)
    dice, _ = best_dice(maps[name], masks, fg)
    print(f"{name:>22}: pixel AP {ap:.3f}, best Dice {dice:.3f}, {seconds:.1f} s")

fig, axes = plt.subplots(len(families), len(maps) + 1, figsize=(9.5, 2.5 * len(families)))
for i, row in enumerate(axes):
    k = int(np.argmax(masks[i].sum(axis=(1, 2))))
    row[0].imshow(cohort.X_test[lesioned][i, k], cmap="gray", origin="lower")
    row[0].contour(masks[i, k], levels=[0.5], colors="red", linewidths=0.7)
    row[0].set_title(families[i], fontsize=10)
    for ax, (name, m) in zip(row[1:], maps.items()):
        ax.imshow(m[i, k], cmap="inferno", origin="lower", vmin=0, vmax=np.percentile(m[fg], 99.5))
        ax.set_title(name, fontsize=10)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()

# %%
# The label-free threshold ``offset_`` was computed by ``fit`` with the inference
# settings of that moment. After changing them, recompute a threshold on healthy scans
# (:ref:`thresholds`) before using :meth:`~disyre_sk.DISYREDetector.predict`.
det.set_params(inference="ensemble", window_size=None)
