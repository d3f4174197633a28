"""
Synthetic anomalies of graded severity
======================================

DISYRE learns to undo synthetic anomalies. This example shows the three corruptions of
:mod:`disyre_sk.corruption` on one healthy axial slice, each at increasing severity
``s``:

* ``"dag"`` (disentangled anomaly generation, the default): a random soft shape, a
  foreign texture blended in with strength ``a_tex`` and an intensity bias on some tissue
  classes;
* ``"fpi"`` (foreign patch interpolation): the shape and the texture only;
* ``"gaussian"``: noise on the whole brain, the ablation the paper argues against.

Passing ``severity=`` fixes the amplitudes while the other random parameters still come
from the generator, so with one seed the *same* lesion grows along each row. No training
is needed.
"""

# %%
# One healthy patch
# -----------------
# :func:`~disyre_sk.datasets.make_brain_cohort` builds subjects from the real anatomy
# shipped with the package. Training corrupts square patches cut from axial slices, so
# we take a 64×64 patch from the middle of one slice of two subjects. The corruptions
# work on batches of ``(B, 1, H, W)`` torch tensors in ``[0, 1]`` with a zero
# background; the foreign-patch corruptions take their texture from *another* image of
# the batch, which is why the batch holds two patches (we show the first).
import matplotlib.pyplot as plt
import numpy as np
import torch

from disyre_sk.corruption import get_corruption
from disyre_sk.datasets import make_brain_cohort

cohort = make_brain_cohort(n_healthy=2, n_test=0, voxel_size=2.0, random_state=0)
z = cohort.X_train.shape[1] // 2 + 6  # an axial slice through the ventricles
slices = cohort.X_train[:, z]
top, left = (slices.shape[1] - 64) // 2, (slices.shape[2] - 64) // 2
patches = slices[:, top : top + 64, left : left + 64]
batch = torch.from_numpy(np.ascontiguousarray(patches))[:, None]
print("batch:", tuple(batch.shape), "intensities in", (float(batch.min()), float(batch.max())))

# %%
# Each corruption at five severities
# ----------------------------------
# A fresh generator with the same seed for every severity gives the same shape,
# position and foreign patch; only the amplitudes follow ``s``. The red contour is the
# corruption's soft mask at one half.
SEED = 0
severities = [0.1, 0.25, 0.5, 0.75, 1.0]
names = ["dag", "fpi", "gaussian"]

fig, axes = plt.subplots(len(names), len(severities) + 1, figsize=(10, 5.6))
for row, name in zip(axes, names):
    corruption = get_corruption(name)
    row[0].imshow(batch[0, 0], cmap="gray", origin="lower", vmin=0, vmax=1)
    row[0].set_title("healthy" if name == "dag" else "", fontsize=11)
    row[0].set_ylabel(repr(corruption).split("(")[0], fontsize=10)
    for ax, s in zip(row[1:], severities):
        out = corruption(batch, torch.Generator().manual_seed(SEED), severity=s)
        ax.imshow(out.image[0, 0], cmap="gray", origin="lower", vmin=0, vmax=1)
        if name != "gaussian":
            ax.contour(out.mask[0, 0], levels=[0.5], colors="red", linewidths=0.7)
        ax.set_title(f"{name}, s = {float(out.severity[0]):.2f}", fontsize=10)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Synthetic anomalies of increasing severity (one seed per row)", fontsize=12)
fig.tight_layout()

# %%
# The change each corruption makes
# --------------------------------
# The network is trained to map the corrupted image back to the healthy one. What it
# must remove is ``|corrupted - healthy|``: local and structured for ``dag`` and
# ``fpi``, everywhere for ``gaussian``. A model trained on local anomalies learns to
# change only what looks abnormal; this is what makes its changes an anomaly map.
fig, axes = plt.subplots(1, len(names), figsize=(9, 3.2), layout="constrained")
for ax, name in zip(axes, names):
    out = get_corruption(name)(batch, torch.Generator().manual_seed(SEED), severity=0.5)
    change = (out.image - batch).abs()[0, 0]
    im = ax.imshow(change, cmap="inferno", origin="lower", vmin=0, vmax=0.5)
    ax.set_title(f"|{name} - healthy| at s = 0.5", fontsize=10)
    ax.axis("off")
fig.colorbar(im, ax=axes, shrink=0.8)

# %%
# Sampling and applying are separate
# ----------------------------------
# Every corruption draws all its random numbers in
# :meth:`~disyre_sk.corruption.Corruption.sample_params` and applies them
# deterministically in :meth:`~disyre_sk.corruption.Corruption.apply`, so one draw can
# be replayed, inspected or applied to another batch of the same shape.
dag = get_corruption("dag")
params = dag.sample_params(batch, torch.Generator().manual_seed(SEED), severity=0.5)
print(sorted(params))
replayed = dag.apply(batch, params)
direct = dag(batch, torch.Generator().manual_seed(SEED), severity=0.5)
print("replay is identical:", bool(torch.equal(replayed.image, direct.image)))
