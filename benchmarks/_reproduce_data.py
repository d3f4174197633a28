"""Data handling of ``reproduce_papers.py``: index the folders, check the grids, load scans.

Nothing here registers or resamples: the scans must already be skull-stripped and on one
voxel grid (see ``docs/user_guide/reproducing.rst``). What this module does is check
that, early and cheaply (file headers only), so that a multi-hour run does not fail
after training, and load the scans one at a time so that memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation

from disyre_sk.datasets import load_atlas, load_brats, load_camcan
from disyre_sk.io import load_nifti, normalize_intensity

# A skull-stripped scan has a zero background; below this share of exactly-zero voxels a
# scan is refused as "not skull-stripped" (the brain fills at most ~60 % of an atlas box).
MIN_ZERO_FRACTION = 0.05


@dataclass
class Cohorts:
    """File paths of the three sets, and the voxel grid they share."""

    dataset: str
    modality: str
    train: list[tuple[str, str]]  # (subject, scan): healthy CamCAN scans to train on
    healthy: list[tuple[str, str]]  # held-out healthy CamCAN scans (never trained on)
    test: list[tuple[str, str, str]]  # (subject, scan, lesion mask)
    grid: tuple[int, int, int] = ()  # (Z, Y, X), axial axis first
    notes: list[str] = field(default_factory=list)


def index_cohorts(
    camcan: str,
    test_root: str,
    dataset: str,
    modality: str,
    *,
    preprocessing: str | None,
    n_train: int | None,
    n_test: int | None,
    n_healthy: int | None,
    seed: int,
) -> Cohorts:
    """Find the files; split CamCAN into training and held-out healthy scans.

    The held-out healthy scans are drawn at random (``seed``) from the sorted CamCAN
    subjects; the others are trained on (the first ``n_train`` of them if given).
    """
    if dataset == "atlas" and modality != "t1":
        raise ValueError("ATLAS v2.0 holds T1-weighted scans only: use --modality t1 with --atlas.")
    healthy = load_camcan(camcan, modality=f"{modality.upper()}w", preprocessing=preprocessing)
    if dataset == "brats":
        test = load_brats(
            test_root, modality=modality, preprocessing=preprocessing, n_subjects=n_test
        )
    else:
        test = load_atlas(test_root, preprocessing=preprocessing, n_subjects=n_test)
    subjects = list(zip(healthy.subject_ids, healthy.image_paths))
    n = len(subjects)
    if n_healthy is None:
        n_healthy = max(1, round(0.05 * n))
    if n < 2 or not 1 <= n_healthy < n:
        raise ValueError(
            f"CamCAN has {n} {modality.upper()} scan(s) in {camcan}; at least one must be held "
            f"out as healthy test data and one trained on (asked to hold out {n_healthy}). "
            "Check the folder, or set --n-healthy."
        )
    order = np.random.default_rng(seed).permutation(n)
    held = sorted(order[:n_healthy].tolist())
    rest = sorted(order[n_healthy:].tolist())
    if n_train is not None:
        rest = rest[:n_train]
    return Cohorts(
        dataset=dataset,
        modality=modality,
        train=[subjects[i] for i in rest],
        healthy=[subjects[i] for i in held],
        test=list(zip(test.subject_ids, test.image_paths, test.mask_paths)),
    )


def package_shape(path: str) -> tuple[int, int, int]:
    """Shape ``(Z, Y, X)`` that :func:`disyre_sk.io.load_nifti` will return, from the header."""
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise ValueError(f"could not read {path} as NIfTI: {exc}") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"expected a 3-D scan, got shape {shape}: {path}")
    # load_nifti reorients to RAS (as_closest_canonical), then reverses the axes.
    ras = [0, 0, 0]
    for axis, (target, _) in enumerate(io_orientation(img.affine)):
        ras[int(target)] = shape[axis]
    return tuple(reversed(ras))


def check_grid(cohorts: Cohorts) -> tuple[int, int, int]:
    """Check, from the headers alone, that every scan and mask is on one grid."""
    shapes: dict[tuple, list[str]] = {}

    def add(kind: str, subject: str, path: str) -> tuple:
        shape = package_shape(path)
        shapes.setdefault(shape, []).append(f"{kind} {subject}")
        return shape

    for subject, path in cohorts.train + cohorts.healthy:
        add("CamCAN", subject, path)
    for subject, path, mask in cohorts.test:
        scan_shape = add(cohorts.dataset, subject, path)
        mask_shape = package_shape(mask)
        if mask_shape != scan_shape:
            raise ValueError(
                f"{cohorts.dataset} subject {subject}: the lesion mask {mask} has shape "
                f"(Z, Y, X)={mask_shape} but its scan {path} has {scan_shape}; the mask must "
                "be on the scan's grid (register or resample it with the scan)."
            )
    if len(shapes) > 1:
        detail = "; ".join(
            f"{shape}: {len(names)} scans, e.g. {', '.join(names[:2])}"
            for shape, names in sorted(shapes.items(), key=lambda kv: -len(kv[1]))
        )
        raise ValueError(
            "the training (CamCAN) and test scans are not all on one voxel grid: found "
            f"{len(shapes)} shapes (Z, Y, X) after reorientation to RAS — {detail}. The "
            "detector compares voxels, so register and resample every scan to one atlas "
            "grid first (e.g. the SRI24 grid of BraTS, 240 x 240 x 155 at 1 mm, as the UPD "
            "study's preparation does); this script neither registers nor resamples."
        )
    cohorts.grid = next(iter(shapes))
    return cohorts.grid


def check_slab(slab: tuple[int, int] | None, grid: tuple[int, int, int]) -> tuple[int, int]:
    """The axial slice range ``[start, stop)`` to use; all slices when ``slab`` is None."""
    if slab is None:
        return 0, grid[0]
    start, stop = (int(s) for s in slab)
    if not 0 <= start < stop <= grid[0]:
        raise ValueError(
            f"--slab {start} {stop} must satisfy 0 <= START < STOP <= {grid[0]} (the number "
            "of axial slices of the grid)."
        )
    return start, stop


def read_scan(path: str, grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One scan, normalised to [0, 1] by the package, and its brain mask (non-zero voxels)."""
    volume = load_nifti(path)
    if volume.shape != tuple(grid):
        raise ValueError(f"{path} has shape {volume.shape}, expected the common grid {grid}")
    brain = volume != 0
    zero_fraction = 1.0 - np.count_nonzero(brain) / brain.size
    if zero_fraction < MIN_ZERO_FRACTION:
        raise ValueError(
            f"{path} has almost no zero-valued background ({100 * zero_fraction:.1f} % of "
            "its voxels are 0): it does not look skull-stripped. Skull-strip the scans first "
            "(brain voxels non-zero, everything else exactly 0)."
        )
    if not brain.any():
        raise ValueError(f"{path} is empty: every voxel is 0")
    return normalize_intensity(volume, brain), brain


def read_mask(path: str, grid: tuple[int, int, int]) -> np.ndarray:
    """A lesion mask as bool (label > 0) on the common grid."""
    mask = load_nifti(path) > 0
    if mask.shape != tuple(grid):
        raise ValueError(f"{path} has shape {mask.shape}, expected the common grid {grid}")
    return mask


def brain_box(boxes: list[tuple[int, int, int, int]], patch_size: int, plane: tuple[int, int]):
    """Union of in-plane boxes ``(y0, y1, x0, x1)``, grown to at least one patch."""
    y0 = min(b[0] for b in boxes)
    y1 = max(b[1] for b in boxes)
    x0 = min(b[2] for b in boxes)
    x1 = max(b[3] for b in boxes)
    out = []
    for lo, hi, size in ((y0, y1, plane[0]), (x0, x1, plane[1])):
        if hi - lo < patch_size:  # grow around the centre, inside the grid
            lo = max(0, min((lo + hi - patch_size) // 2, size - patch_size))
            hi = min(size, lo + patch_size)
        out += [int(lo), int(hi)]
    return tuple(out)


def load_training_slices(
    scans: list[tuple[str, str]],
    grid: tuple[int, int, int],
    slab: tuple[int, int],
    patch_size: int,
    say=print,
) -> tuple[np.ndarray, tuple[int, int, int, int], int]:
    """Axial brain slices of the training scans, cropped to their common in-plane brain box.

    Each scan is read once and kept cropped to its own brain box, so memory peaks at
    about twice the returned array. Returns ``(slices, box, n_scans_used)``.
    """
    pieces = []
    for i, (subject, path) in enumerate(scans):
        volume, brain = read_scan(path, grid)
        z = slab[0] + np.flatnonzero(brain[slab[0] : slab[1]].any(axis=(1, 2)))
        if z.size == 0:
            say(f"  {subject}: no brain voxel inside the slab, skipped")
            continue
        rows = np.flatnonzero(brain[z].any(axis=(0, 2)))
        cols = np.flatnonzero(brain[z].any(axis=(0, 1)))
        box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
        pieces.append((box, volume[z, box[0] : box[1], box[2] : box[3]].copy()))
        if (i + 1) % 50 == 0 or i + 1 == len(scans):
            say(f"  read {i + 1}/{len(scans)} training scans")
    if not pieces:
        raise ValueError("no training scan has a brain voxel inside the slab")
    box = brain_box([b for b, _ in pieces], patch_size, grid[1:])
    n = sum(p.shape[0] for _, p in pieces)
    out = np.zeros((n, box[1] - box[0], box[3] - box[2]), dtype=np.float32)
    n_used, start = len(pieces), 0
    while pieces:  # pop as we copy, so each piece is freed once it is in place
        (y0, y1, x0, x1), piece = pieces.pop(0)
        rows = slice(y0 - box[0], y1 - box[0])
        cols = slice(x0 - box[2], x1 - box[2])
        out[start : start + piece.shape[0], rows, cols] = piece
        start += piece.shape[0]
    return out, box, n_used
