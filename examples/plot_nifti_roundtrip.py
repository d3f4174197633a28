"""
NIfTI in, NIfTI map out
=======================

Real scans come as NIfTI files. This example goes from files to files:

1. write a few cohort volumes as ``.nii.gz`` files, as a scanner pipeline would have
   left them (healthy ones for training, one with a lesion to map);
2. read the healthy ones with :class:`~disyre_sk.io.NiftiLoader` and train;
3. read the scan with :func:`~disyre_sk.io.load_nifti`, map it, and write the map with
   :func:`~disyre_sk.io.save_map` on the scan's own grid (same shape, affine, header);
4. reload the written map with nibabel and overlay it on the scan in three planes.

**Axes.** Arrays in this package are ``(Z, Y, X)``: the axial axis first. A NIfTI file in
RAS storage order holds the transpose, ``(X, Y, Z)``. :func:`~disyre_sk.io.load_nifti`
reorients any file to RAS and transposes it; :func:`~disyre_sk.io.save_map` undoes both
steps, so maps line up with the scan in any viewer.
"""

# %%
# Write the cohort as NIfTI files
# -------------------------------
# ``cohort.affine`` is the voxel-to-world (RAS, mm) affine of ``volume.transpose(2, 1, 0)``.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from disyre_sk import DISYREDetector
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.io import NiftiLoader, load_nifti, normalize_intensity, save_map

cohort = make_brain_cohort(
    n_healthy=4,
    n_test=1,
    voxel_size=4.0,
    families=("stroke",),
    healthy_test_fraction=0.0,
    random_state=4,
)
folder = Path(tempfile.mkdtemp(prefix="disyre_nifti_"))
healthy_paths = []
for i, volume in enumerate(cohort.X_train):
    path = folder / f"healthy_{i}.nii.gz"
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), cohort.affine), path)
    healthy_paths.append(path)
scan_path = folder / "patient.nii.gz"
nib.save(nib.Nifti1Image(cohort.X_test[0].transpose(2, 1, 0), cohort.affine), scan_path)
header = nib.load(scan_path).header
print(
    "stored shape (X, Y, Z):",
    header.get_data_shape(),
    "| orientation:",
    nib.aff2axcodes(cohort.affine),
    "| voxel size (mm):",
    tuple(round(float(v), 2) for v in header.get_zooms()),
)

# %%
# Train from file names
# ---------------------
# :class:`~disyre_sk.io.NiftiLoader` is a stateless transformer: paths in, a
# ``(n, Z, Y, X)`` float32 array out, each scan reoriented to RAS and its brain
# normalised to ``[0, 1]`` (0th-98th percentile). It could also sit in a
# :class:`~sklearn.pipeline.Pipeline` in front of the detector.
X_train = NiftiLoader().fit_transform(healthy_paths)
print(X_train.shape, X_train.dtype)
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
).fit(X_train)

# %%
# Map the scan and write the map
# ------------------------------
# Preprocess the scan exactly as the training scans: the same reader, the same
# normalisation. The map is written with the scan's affine and header; the write is
# atomic, so an interrupted run never leaves a half-written file.
scan = normalize_intensity(load_nifti(scan_path))
anomaly_map = det.decision_map(scan[None])[0]
map_path = save_map(anomaly_map, scan_path, folder / "patient_disyre_map.nii.gz")
print("wrote", map_path.name)

# %%
# Reload and check the geometry
# -----------------------------
# The written map is an ordinary NIfTI image: any viewer (FSLeyes, ITK-SNAP, MRIcroGL,
# 3D Slicer) can overlay it on ``patient.nii.gz``.
written = nib.load(map_path)
print(
    "same shape:",
    written.shape == nib.load(scan_path).shape,
    "| same affine:",
    np.allclose(written.affine, nib.load(scan_path).affine),
)
reloaded = load_nifti(map_path)  # back to (Z, Y, X)
print("round trip exact:", np.array_equal(reloaded, anomaly_map))

# %%
# Three planes through the lesion
# -------------------------------
# The planes cross at the centre of the true lesion (known here because the cohort is
# synthetic; ``disyre detect --png`` uses the map's maximum instead). With
# ``origin="lower"``, an axial slice ``volume[k]`` shows anterior up and the subject's
# right on the right of the image (the neurological convention). The red outline is the
# true lesion; the map is shown where it exceeds a third of its 99.5th percentile.
mask = cohort.masks_test[0]
z, y, x = np.rint(np.argwhere(mask).mean(axis=0)).astype(int).tolist()
views = {
    f"axial (z = {z})": (scan[z], reloaded[z], mask[z]),
    f"coronal (y = {y})": (scan[:, y], reloaded[:, y], mask[:, y]),
    f"sagittal (x = {x})": (scan[:, :, x], reloaded[:, :, x], mask[:, :, x]),
}
vmax = np.percentile(reloaded[reloaded > 0], 99.5)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for ax, (title, (image, amap, lesion)) in zip(axes, views.items()):
    ax.imshow(image, cmap="gray", origin="lower")
    ax.imshow(
        np.ma.masked_less(amap, 0.3 * vmax),
        cmap="inferno",
        alpha=0.7,
        vmin=0,
        vmax=vmax,
        origin="lower",
    )
    ax.contour(lesion, levels=[0.5], colors="red", linewidths=0.7)
    ax.set_title(title, fontsize=11)
    ax.axis("off")
fig.suptitle("The written map, reloaded, over the scan", fontsize=12)
fig.tight_layout()

# %%
# The command line does all of this for folders of scans: ``disyre fit healthy/ -o
# model.disyre`` then ``disyre detect model.disyre scans/ -o maps/ --png``
# (:ref:`cli`).
