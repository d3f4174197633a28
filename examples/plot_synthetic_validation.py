"""
Validation without labels: synthetic anomalies on held-out healthy scans
========================================================================

There are no lesion labels to validate an unsupervised detector on. Instead,
:class:`~disyre_sk.DISYREDetector` holds out a fraction of the healthy subjects, inserts
anomalies of kinds the network never trained on (smooth intensity changes, sink/source
deformations, Poisson-blended patches) with exact masks, and scores its maps on them
while it trains. It keeps the weights of the best check, and
:func:`~disyre_sk.report.write_training_report` draws what happened.

As in the other examples, the cohort is coarse and the network tiny, so this runs in
about a minute on a CPU; see :ref:`validation` for how to read the figures and what they
do not promise.
"""

# %%
# Train with synthetic validation
# -------------------------------
# ``validation_fraction=0.25`` holds out a quarter of the healthy *subjects* (whole
# volumes): training never sees them. Every ``validation_every`` steps, and at the last
# step, the network maps their slices with the synthetic anomalies inserted.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from disyre_sk import DISYREDetector
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.report import write_training_report

cohort = make_brain_cohort(n_healthy=8, n_test=0, voxel_size=4.0, random_state=0)
det = DISYREDetector(
    patch_size=32,
    widths=(16, 32),
    n_steps=200,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=20,
    severities=(0.25, 0.5),
    stride=16,
    validation_fraction=0.25,
    validation_every=50,
    random_state=0,
)
det.fit(cohort.X_train)
print(det.history_["validation_note"])
print("held-out subjects:", det.history_["validation_samples"])

# %%
# What was recorded
# -----------------
# One record per check: pixel AP and best Dice of each family, and their means. The
# network now holds the weights of ``history_["best_step"]``, the check with the
# highest mean AP.
for record in det.history_["validation"]:
    per_family = ", ".join(f"{k} {v:.3f}" for k, v in record["average_precision"].items())
    print(
        f"step {record['step']:>3}: mean AP {record['mean_average_precision']:.3f} ({per_family})"
    )
print("kept step:", det.history_["best_step"])

# %%
# The training report
# -------------------
# ``write_training_report`` writes the loss and validation curves, a grid of validation
# images (the synthetic anomaly outlined, the restorations at each severity, the map)
# and ``report.json``. Here we show two of its figures.
folder = Path(tempfile.mkdtemp())
summary = write_training_report(det, folder)
print(sorted(summary["files"].values()))
for name in ("validation.png", "examples.png"):
    image = plt.imread(folder / name)
    fig, ax = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100))
    ax.imshow(image)
    ax.axis("off")
    fig.tight_layout()

# %%
# The validation figures compare steps and runs; they are not an estimate of the
# accuracy on real lesions, which only real labelled scans can give
# (:ref:`evaluation`).
