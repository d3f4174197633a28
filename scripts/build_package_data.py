"""Build the small anatomy bundle shipped in ``disyre_sk/data/``.

Reads the real, redistributable healthy templates from a source folder (MNI152 2009a
T1 + GM/WM probability maps from nilearn; Colin27 skull-stripped T1 from Debian
mricron-data; the ITK example T1 from Debian insighttoolkit5), resamples them onto one
common 2 mm RAS grid cropped to the brains' bounding box plus a small margin, and writes
one compressed ``.npz`` of uint8 maps plus the license notices and a README.

Run from the repository root::

    python scripts/build_package_data.py --source DIR [--out disyre_sk/data]

where ``DIR`` holds one sub-folder per source with its files and licence.

The output is deterministic (fixed seeds, fixed zip timestamps), so re-running it on the
same inputs gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from scipy import optimize
from sklearn.mixture import GaussianMixture

from disyre_sk.datasets._cohort import _rotation

VOXEL_MM = 2.0
MARGIN_MM = 4.0
MNI_DIR = "nilearn_icbm152_2009a"
COLIN_DIR = "colin27"
MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
COLIN_FILE = "ch2bet.nii.gz"
ITK_DIR = "itk_kmeans_T1"
ITK_T1 = "KmeansTest_T1UCharRaw.nii.gz"
ITK_BRAIN = "KmeansTest_T1RawSkullStrip.nii.gz"
OUT_NAME = "brain_anatomy_2mm.npz"


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=np.float64), img.affine


def _brain_mask(t1: np.ndarray) -> np.ndarray:
    # Skull-stripped inputs: non-zero voxels, keep the largest component (drops specks left
    # by the stripping) and fill enclosed holes.
    lab, n = ndi.label(t1 > 0)
    if n > 1:
        lab = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndi.binary_fill_holes(lab > 0)


def _gmm_tissues(t1: np.ndarray, mask: np.ndarray, blur: float = 0.5) -> dict[str, np.ndarray]:
    """Soft CSF/GM/WM fractions from a 3-class Gaussian mixture on T1 intensity."""
    # A slight blur (in voxels) tames voxel noise before the intensity-only classification.
    vals = ndi.gaussian_filter(t1, blur)[mask].reshape(-1, 1)
    rng = np.random.default_rng(0)
    sample = vals[rng.choice(len(vals), size=min(len(vals), 200_000), replace=False)]
    gmm = GaussianMixture(3, random_state=0, n_init=2).fit(sample)
    post = gmm.predict_proba(vals)
    order = np.argsort(gmm.means_.ravel())  # dark -> bright on T1: CSF, GM, WM
    out = {}
    for name, k in zip(("csf", "gm", "wm"), order):
        vol = np.zeros(t1.shape)
        vol[mask] = post[:, k]
        out[name] = vol
    return out


def _mni_tissues(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    gm = np.where(mask, gm / 255.0, 0.0)
    wm = np.where(mask, wm / 255.0, 0.0)
    total = gm + wm
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-9), 1.0)
    gm, wm = gm * scale, wm * scale
    csf = np.where(mask, 1.0 - gm - wm, 0.0)
    return {"csf": csf, "gm": gm, "wm": wm}


def _register_affine(
    fixed_mask: np.ndarray, fixed_affine: np.ndarray, moving_mask: np.ndarray, moving_affine
) -> np.ndarray:
    """World-to-world affine (fixed -> moving) aligning two brain masks.

    Centres of mass and per-axis spreads give the start; Powell's method then refines a
    rotation, per-axis scale and shift by the mean squared difference of the two masks
    blurred at 4 mm, sampled on a 4 mm grid over the fixed brain. Masks, not intensities,
    because the two scans come from different scanners and contrasts.
    """
    step = 4.0
    lo, hi = _world_bbox(fixed_mask, fixed_affine)
    lo, hi = lo - 3 * step, hi + 3 * step
    shape = tuple(np.ceil((hi - lo) / step).astype(int) + 1)
    world = step * np.indices(shape, dtype=float).reshape(3, -1) + lo[:, None]

    def blurred(mask, affine):
        return ndi.gaussian_filter(mask.astype(float), step / np.abs(np.diag(affine)[:3]))

    def sample(vol, affine, pts):
        vox = np.linalg.solve(affine, np.vstack([pts, np.ones(pts.shape[1])]))[:3]
        return ndi.map_coordinates(vol, vox, order=1, mode="constant")

    def moments(mask, affine):
        pts = affine[:3, :3] @ np.argwhere(mask).T.astype(float) + affine[:3, 3:4]
        return pts.mean(1), pts.std(1)

    fixed = sample(blurred(fixed_mask, fixed_affine), fixed_affine, world)
    moving = blurred(moving_mask, moving_affine)
    (c_f, s_f), (c_m, s_m) = moments(fixed_mask, fixed_affine), moments(moving_mask, moving_affine)

    def transform(p):
        mat = _rotation(p[3:6]) @ np.diag(s_m / s_f * np.exp(p[6:9]))
        return mat, c_m + p[:3] - mat @ c_f

    def cost(p):
        mat, t = transform(p)
        return float(
            np.mean((sample(moving, moving_affine, mat @ world + t[:, None]) - fixed) ** 2)
        )

    res = optimize.minimize(
        cost, np.zeros(9), method="Powell", options={"maxiter": 4000, "xtol": 1e-3, "ftol": 1e-6}
    )
    mat, t = transform(res.x)
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = mat, t
    return out


def _world_bbox(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    corners = np.array([idx.min(0), idx.max(0)], dtype=float)
    world = nib.affines.apply_affine(affine, corners)
    return world.min(0), world.max(0)


def _target_grid(boxes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, tuple]:
    lo = np.min([b[0] for b in boxes], axis=0) - MARGIN_MM
    hi = np.max([b[1] for b in boxes], axis=0) + MARGIN_MM
    lo = np.floor(lo / VOXEL_MM) * VOXEL_MM  # snap to a grid of world multiples of 2 mm
    shape = tuple(int(s) for s in np.ceil((hi - lo) / VOXEL_MM).astype(int) + 1)
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = lo
    return affine, shape


def _resample(vol: np.ndarray, src_affine: np.ndarray, dst_affine, dst_shape) -> np.ndarray:
    """Anti-aliased linear resampling of a 1 mm volume onto the 2 mm target grid."""
    # Gaussian prefilter with FWHM = target voxel (sigma = 2 / 2.355 mm) against aliasing.
    # Voxel sizes are the column norms: the ITK brain's affine includes its rotation.
    zooms = np.linalg.norm(src_affine[:3, :3], axis=0)
    smooth = ndi.gaussian_filter(vol, VOXEL_MM / 2.355 / zooms)
    grid = np.indices(dst_shape, dtype=float).reshape(3, -1)
    vox = np.linalg.solve(src_affine, dst_affine) @ np.vstack([grid, np.ones(grid.shape[1])])
    out = ndi.map_coordinates(smooth, vox[:3], order=1, mode="constant", cval=0.0)
    return out.reshape(dst_shape)


def _base_maps(t1, mask, tissues, affine, dst_affine, dst_shape) -> dict[str, np.ndarray]:
    frac = _resample(mask.astype(float), affine, dst_affine, dst_shape)
    inside = frac >= 0.5
    maps = {}
    # Normalised convolution: tissue fractions and T1 are divided by the brain fraction so
    # the brain edge is not darkened by the background the blur mixes in.
    denom = np.maximum(frac, 1e-6)
    t1_2mm = np.where(inside, _resample(t1 * mask, affine, dst_affine, dst_shape) / denom, 0)
    maps["t1"] = t1_2mm / np.percentile(t1_2mm[inside], 99.9)
    probs = {k: _resample(v, affine, dst_affine, dst_shape) / denom for k, v in tissues.items()}
    total = np.maximum(sum(probs.values()), 1e-6)
    for k in ("gm", "wm"):  # CSF is not stored: it is brain - GM - WM
        maps[k] = np.where(inside, probs[k] / total, 0.0)
    maps["brain"] = inside
    return maps


def _to_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == bool:
        return x.astype(np.uint8)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez_compressed stamps the current time in the zip entries; write the zip
    # ourselves with a fixed timestamp so the bundle is byte-reproducible.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


README = """\
# disyre_sk package data: real brain anatomy at 2 mm

`{out}` holds three real, healthy, skull-stripped brains on one common grid, used by
`disyre_sk.datasets.load_brain_anatomy` and `disyre_sk.datasets.make_brain_cohort`
(the offline demo/test cohort). sha256 `{sha}`, {size} bytes.

## Sources and licenses

* **MNI ICBM152 2009a nonlinear symmetric template** (T1, grey- and white-matter
  probability maps), as bundled in the nilearn 0.14.1 wheel
  (`nilearn/datasets/data/mni_icbm152_{{t1,gm,wm}}_tal_nlin_sym_09a_converted.nii.gz`).
  nilearn is BSD-3 licensed: see `LICENSE_nilearn.txt`. The template is
  Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
  Neurological Institute, McGill University (Fonov et al. 2009/2011); its notice permits
  use, copying, modification and distribution for any purpose provided the notice is kept.
* **Colin27** skull-stripped T1 (`ch2bet.nii.gz`) from the Debian package
  `mricron-data` 1.2.20211006+dfsg-4 (MRIcron, Chris Rorden), BSD-3-clause: see
  `COPYRIGHT_debian_mricron.txt`. Colin27 is the MNI single-subject average (27 scans of
  one healthy man), distributed by the MNI under a permissive notice (use, copy, modify,
  distribute for any purpose, keep the notice).
* **ITK example T1** (`KmeansTest_T1UCharRaw.nii.gz`, a whole-head T1 at 2x2x3 mm, and
  `KmeansTest_T1RawSkullStrip.nii.gz`, its brain labels) from the Debian package
  `insighttoolkit5-examples` 5.2.1-5+deb12u1, Apache-2.0: see
  `COPYRIGHT_debian_insighttoolkit5.txt`. A third individual from another scanner, kept
  apart for tests on anatomy a model never trained on.

## What was done (`scripts/build_package_data.py`)

1. Brain masks: non-zero voxels (for ITK, of its brain-label image), largest connected
   component, holes filled.
2. Tissue fractions: MNI GM and WM maps /255 inside the mask, CSF = 1 - GM - WM.
   Colin27 and the ITK brain have no tissue maps: CSF/GM/WM fractions are the
   posteriors of a 3-class Gaussian mixture fitted to their T1 intensities inside the
   brain (a derived product, not an expert segmentation).
2b. Alignment: the ITK brain is not in MNI space; a 9-parameter affine (rotation,
   per-axis scale, shift) fitted to the MNI brain mask (blurred masks, Powell's method)
   puts it there. Colin27 is already in MNI space.
3. Resampling: Gaussian anti-alias blur (FWHM 2 mm), trilinear sampling onto a 2 mm RAS
   grid covering the union of the MNI and Colin27 bounding boxes plus {margin:g} mm, tissue
   fractions and T1 renormalised by the resampled brain fraction; voxels with brain
   fraction < 0.5 are background.
4. Storage: uint8 (value / 255), arrays in RAS voxel order (x, y, z), shape {shape},
   `affine` (float64, 4x4, world mm, MNI space) included. T1 is scaled so its 99.9th
   brain percentile is 1. `*_brain` is the 0/1 brain mask; CSF is not stored (it is
   brain - GM - WM), to keep the file small.

Keys: `{{mni,colin,itk}}_{{t1,gm,wm,brain}}` and `affine`.
All three brains are real healthy anatomy; none has a lesion.
"""


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of the source templates")
    parser.add_argument("--out", type=Path, default=here / "disyre_sk" / "data")
    args = parser.parse_args(argv)
    shared, out = args.source, args.out
    out.mkdir(parents=True, exist_ok=True)

    mni = {k: _load(shared / MNI_DIR / f) for k, f in MNI_FILES.items()}
    mni_affine = mni["t1"][1]
    mni_mask = _brain_mask(mni["t1"][0])
    mni_tis = _mni_tissues(mni["gm"][0], mni["wm"][0], mni_mask)
    colin_t1, colin_affine = _load(shared / COLIN_DIR / COLIN_FILE)
    colin_mask = _brain_mask(colin_t1)
    colin_tis = _gmm_tissues(colin_t1, colin_mask)
    # The ITK example brain: one more individual, another scanner, a whole-head scan with
    # its own brain mask, not in MNI space. It is aligned to MNI by an affine fit of the
    # brain masks; its tissue fractions come from the same mixture model as Colin27's.
    itk_raw, itk_affine = _load(shared / ITK_DIR / ITK_T1)
    itk_mask = _brain_mask(_load(shared / ITK_DIR / ITK_BRAIN)[0])
    itk_t1 = itk_raw * itk_mask
    itk_tis = _gmm_tissues(itk_t1, itk_mask, blur=0.25)
    # Composing the fitted MNI-to-ITK world map with ITK's own affine puts its voxels in
    # MNI world coordinates; everything below then treats it like the other two.
    itk_affine = np.linalg.solve(
        _register_affine(mni_mask, mni_affine, itk_mask, itk_affine), itk_affine
    )

    dst_affine, dst_shape = _target_grid(
        [_world_bbox(mni_mask, mni_affine), _world_bbox(colin_mask, colin_affine)]
    )
    arrays: dict[str, np.ndarray] = {"affine": dst_affine}
    for name, t1, mask, tis, aff in (
        ("mni", mni["t1"][0], mni_mask, mni_tis, mni_affine),
        ("colin", colin_t1, colin_mask, colin_tis, colin_affine),
        ("itk", itk_t1, itk_mask, itk_tis, itk_affine),
    ):
        for key, vol in _base_maps(t1, mask, tis, aff, dst_affine, dst_shape).items():
            arrays[f"{name}_{key}"] = _to_uint8(vol)

    target = out / OUT_NAME
    _write_npz(target, arrays)
    for lic in (
        shared / MNI_DIR / "LICENSE_nilearn.txt",
        shared / COLIN_DIR / "COPYRIGHT_debian_mricron.txt",
        shared / ITK_DIR / "COPYRIGHT_debian_insighttoolkit5.txt",
    ):
        shutil.copyfile(lic, out / lic.name)
    sha = hashlib.sha256(target.read_bytes()).hexdigest()
    size = target.stat().st_size
    (out / "README.md").write_text(
        README.format(out=OUT_NAME, sha=sha, size=size, margin=MARGIN_MM, shape=dst_shape)
    )
    print(f"wrote {target} shape={dst_shape} size={size} bytes sha256={sha}")


if __name__ == "__main__":
    main()
