"""Lesions with exact masks for the synthetic test cohort (see :mod:`._cohort`).

Four families, each drawn from a ``numpy.random.Generator`` and painted into a *clean*
subject image (before bias field, noise and normalisation):

- ``tumour``: irregular core (+ optional necrosis) inside a white-matter-following
  edema ring, with mass effect: a smooth radial displacement pushes the surrounding
  tissue outward before the core is painted;
- ``stroke``: a wedge (elliptic cone) with its base on the cortex and apex in the white
  matter, restricted to parenchyma;
- ``foci``: several small ellipsoids in the white matter, mostly periventricular;
- ``cavity``: one irregular dark blob in the parenchyma.

And one family that no default cohort draws (ask for it with ``families=``):

- ``infarct``: a chronic cortical infarct, the stroke's wedge filled with fluid of the
  subject's own CSF intensity in every contrast. Each voxel has an intensity that healthy
  brains have (CSF), and the lesion opens onto the brain's surface, where sulci hold CSF
  too: only the surrounding anatomy says it does not belong there.

A lesion is painted as ``image = (1 - a) * image + a * level * (1 + texture)`` with a
weight ``a`` in [0, 1]; weights below :data:`_MIN_WEIGHT` are set to 0, so the mask
``a > 0`` is exactly the set of voxels the lesion changed (faint partial-volume fringes
are not painted rather than left out of the mask). The tumour's displacement changes
voxels outside the mask too; it is reported separately (``moved``), never in the mask.

This module deliberately shares nothing with :mod:`disyre_sk.corruption`: a detector
trained on those corruptions must not meet its own training distribution at test time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

FAMILIES = ("tumour", "stroke", "foci", "cavity")
EXTRA_FAMILIES = ("infarct",)
_MIN_WEIGHT = 0.15
_MAX_TRIES = 30


class Lesion(NamedTuple):
    image: np.ndarray  # clean image with the lesion
    brain: np.ndarray  # brain mask (changed only by a tumour's mass effect)
    mask: np.ndarray  # voxels the lesion painted
    moved: np.ndarray  # voxels the mass effect displaced (tumours; else all False)


# --------------------------------------------------------------------------- helpers


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _box(center: np.ndarray, half: float, shape) -> tuple[tuple[slice, ...], np.ndarray]:
    lo = np.maximum(np.floor(center - half).astype(int), 0)
    hi = np.minimum(np.ceil(center + half).astype(int) + 1, shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), lo


def _offsets(box: tuple[slice, ...], center: np.ndarray) -> np.ndarray:
    """(3, *box_shape) voxel offsets from ``center`` for every voxel of ``box``."""
    grids = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")
    return np.stack(grids).astype(np.float32) - center.reshape(3, 1, 1, 1).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.normal(size=shape), sigma)
    return (field / max(field.std(), 1e-6)).astype(np.float32)


def _ellipsoid_weight(
    offsets: np.ndarray, radii: np.ndarray, rot: np.ndarray, noise: np.ndarray, irreg: float
) -> np.ndarray:
    """Soft weight of an irregular ellipsoid: 1 inside, a ~1-voxel ramp, 0 outside."""
    local = np.einsum("ij,j...->i...", rot.T.astype(np.float32), offsets)
    dist = np.sqrt(sum((local[i] / radii[i]) ** 2 for i in range(3)))
    dist = dist / np.clip(1.0 + irreg * noise, 0.4, None)  # bumpy outline
    return np.clip((1.0 - dist) * float(np.mean(radii)) + 0.5, 0.0, 1.0)


def _pick(rng: np.random.Generator, candidates: np.ndarray, weights=None) -> np.ndarray | None:
    idx = np.flatnonzero(candidates)
    if idx.size == 0:
        return None
    p = None
    if weights is not None:
        w = weights.ravel()[idx].astype(float)
        p = w / w.sum()
    return np.array(np.unravel_index(rng.choice(idx, p=p), candidates.shape), dtype=float)


def _volume(radii: np.ndarray) -> float:
    return float(4.0 / 3.0 * np.pi * np.prod(radii))


def _paint(image, box, weight, level, texture) -> None:
    weight = np.where(weight >= _MIN_WEIGHT, weight, 0.0)
    target = level * (1.0 + texture)
    image[box] = image[box] * (1.0 - weight) + weight * target


def _finish_weight(weight: np.ndarray) -> np.ndarray:
    return np.where(weight >= _MIN_WEIGHT, weight, 0.0).astype(np.float32)


# --------------------------------------------------------------------------- levels


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _levels(family: str, contrast: str, lv: dict, rng) -> dict[str, float]:
    """Lesion intensities relative to the subject's own tissue levels."""
    csf, gm, wm = lv["csf"], lv["gm"], lv["wm"]
    if family == "tumour":
        if contrast == "t2":
            return {
                "edema": wm + _u(rng, 0.45, 0.8) * (csf - wm),
                "core": gm + _u(rng, 0.1, 0.6) * (csf - gm),
                "necrosis": csf * _u(rng, 0.9, 1.1),
            }
        if contrast == "flair":
            return {
                "edema": gm * _u(rng, 1.2, 1.6),
                "core": gm * _u(rng, 1.05, 1.45),
                "necrosis": gm * _u(rng, 0.3, 0.7),
            }
        return {
            "edema": wm - _u(rng, 0.15, 0.35) * (wm - csf),
            "core": gm * _u(rng, 0.6, 0.9),
            "necrosis": csf * _u(rng, 1.0, 1.5),
        }
    if family == "stroke":
        return {
            "t2": lambda: gm + _u(rng, 0.3, 0.8) * (csf - gm),
            "flair": lambda: gm * _u(rng, 1.25, 1.7),
            "t1": lambda: gm - _u(rng, 0.2, 0.6) * (gm - csf),
        }[contrast]()
    if family == "foci":
        return {
            "t2": lambda: wm + _u(rng, 0.4, 0.9) * (csf - wm),
            "flair": lambda: gm * _u(rng, 1.2, 1.6),
            "t1": lambda: wm - _u(rng, 0.5, 1.2) * (wm - gm),
        }[contrast]()
    # cavity: dark in every contrast (on T2, where CSF is bright, a signal void)
    return {
        "t2": lambda: wm * _u(rng, 0.25, 0.7),
        "flair": lambda: csf * _u(rng, 0.8, 1.5),
        "t1": lambda: csf * _u(rng, 0.8, 1.3),
    }[contrast]()


# --------------------------------------------------------------------------- families


def _tumour(image, maps, lv, contrast, vs, rng, depth):
    shape = image.shape
    r_core = _u(rng, 6.0, 16.0) / vs * rng.uniform(0.75, 1.25, size=3)
    edema_factor = _u(rng, 1.4, 2.1)
    center = _pick(rng, maps["brain"] & (depth > 1.2 * r_core.max()), maps["wm"] + 0.2)
    if center is None:
        return None
    center += rng.uniform(-0.5, 0.5, size=3)
    sigma = float(r_core.mean()) * _u(rng, 1.0, 1.5)
    strength = _u(rng, 0.3, 0.6)
    reach = 4.0 * sigma

    # Mass effect: a voxel at distance d from the centre shows what was at distance
    # d * (1 - strength * g(d)), g a Gaussian tapered to 0 at `reach`. g decreases with d
    # and strength < 1, so the map is monotone (no folding) and pushes tissue outward.
    box, _ = _box(center, reach + 1, shape)
    off = _offsets(box, center)
    d = np.sqrt((off**2).sum(0))
    g = np.exp(-(d**2) / (2 * sigma**2)) * np.clip(1 - (d / reach) ** 2, 0, None) ** 2
    src = center.reshape(3, 1, 1, 1) + off * (1.0 - strength * g)
    # Voxels displaced by less than 1e-3 voxel keep their exact values (no resampling
    # round-off), so "moved" is exactly where the mass effect changed anything.
    shift = strength * g * d > 1e-3
    moved = np.zeros(shape, dtype=bool)
    moved[box] = shift
    brain_f = maps["brain"].astype(np.float32)
    wb = ndi.map_coordinates(brain_f, src, order=1, mode="constant")
    denom = np.where(wb >= 0.5, wb, 1.0)
    brain = maps["brain"].copy()
    brain[box] = np.where(shift, wb >= 0.5, brain[box])
    out = {}
    for key, vol in (("image", image), ("gm", maps["gm"]), ("wm", maps["wm"])):
        warped = ndi.map_coordinates(vol * brain_f, src, order=1, mode="constant") / denom
        out[key] = vol.copy()
        out[key][box] = np.where(shift, np.where(wb >= 0.5, warped, 0.0), vol[box])
    image, gm, wm = out["image"], out["gm"], out["wm"]

    levels = _levels("tumour", contrast, lv, rng)
    half = float(r_core.max() * edema_factor * 1.4) + 2
    box, _ = _box(center, half, shape)
    off = _offsets(box, center)
    rot = _random_rotation(rng)
    nshape = off.shape[1:]
    inside = brain[box]
    w_edema = _ellipsoid_weight(
        off, r_core * edema_factor, rot, _smooth_noise(rng, nshape, r_core.mean()), 0.35
    )
    # Edema spreads along white matter, less into cortex, not into CSF.
    w_edema = _finish_weight(w_edema * np.clip(1.2 * wm[box] + 0.5 * gm[box], 0, 1) * inside)
    w_core = _ellipsoid_weight(off, r_core, rot, _smooth_noise(rng, nshape, 1.5), 0.2)
    w_core = _finish_weight(w_core * inside)
    if (w_core > 0).sum() < 0.35 * _volume(r_core):
        return None
    mask = np.zeros(shape, dtype=bool)
    mask[box] = (w_edema > 0) | (w_core > 0)
    _paint(image, box, w_edema, levels["edema"], 0.05 * _smooth_noise(rng, nshape, 1.0))
    tex = _u(rng, 0.05, 0.15) * _smooth_noise(rng, nshape, 0.8)
    _paint(image, box, w_core, levels["core"], tex)
    if rng.random() < 0.5:  # necrotic centre
        w_nec = _ellipsoid_weight(
            off, r_core * _u(rng, 0.3, 0.6), rot, _smooth_noise(rng, nshape, 1.0), 0.2
        )
        _paint(image, box, _finish_weight(w_nec * inside), levels["necrosis"], 0.0)
    return Lesion(image, brain, mask, moved & ~mask)


def _wedge(shape, maps, vs, rng, depth):
    """``(box, weight)`` of a wedge with its base on the cortex and apex in the white
    matter, restricted to parenchyma; ``None`` when the draw does not fit."""
    surface = maps["brain"] & (maps["gm"] > 0.5) & (depth * vs <= max(6.0, 2.0 * vs))
    p = _pick(rng, surface & (depth >= 1))
    if p is None:
        return None
    # Inward direction: from the surface point towards the centroid of nearby brain.
    nbox, _ = _box(p, 15.0 / vs, shape)
    local = _offsets(nbox, p)[:, maps["brain"][nbox]]
    normal = local.mean(1)
    normal /= max(np.linalg.norm(normal), 1e-6)
    length = _u(rng, 15.0, 40.0) / vs
    tans = np.tan(np.deg2rad(rng.uniform(15.0, 35.0, size=2)))
    apex = p + normal * length
    e1 = np.cross(normal, rng.normal(size=3))
    e1 /= max(np.linalg.norm(e1), 1e-6)
    e2 = np.cross(normal, e1)
    box, _ = _box(p + normal * length / 2, length / 2 + length * tans.max() + 3, shape)
    w = -_offsets(box, apex)  # apex - x
    along = np.einsum("i,i...->...", normal.astype(np.float32), w)
    q1 = np.einsum("i,i...->...", e1.astype(np.float32), w)
    q2 = np.einsum("i,i...->...", e2.astype(np.float32), w)
    pos = np.maximum(along, 1e-3)
    radial = np.sqrt((q1 / (pos * tans[0])) ** 2 + (q2 / (pos * tans[1])) ** 2)
    radial = radial / np.clip(1 + 0.25 * _smooth_noise(rng, along.shape, 2.0), 0.4, None)
    width = pos * float(tans.mean())
    weight = np.clip((1 - radial) * width + 0.5, 0, 1)
    weight *= np.clip(along + 0.5, 0, 1) * np.clip(length + 3 - along, 0, 1)
    parenchyma = np.clip(2.0 * (maps["gm"][box] + maps["wm"][box]) - 0.6, 0, 1)
    weight = _finish_weight(weight * parenchyma * maps["brain"][box])
    # Cone volume pi/3 * L^3 * tan1 * tan2; much of it may lie outside the brain.
    if (weight > 0).sum() < 0.1 * np.pi / 3 * length**3 * tans.prod():
        return None
    return box, weight


def _fill(image, maps, box, weight, level, texture) -> Lesion:
    image = image.copy()
    _paint(image, box, weight, level, texture)
    mask = np.zeros(image.shape, dtype=bool)
    mask[box] = weight > 0
    return Lesion(image, maps["brain"], mask, np.zeros(image.shape, dtype=bool))


def _stroke(image, maps, lv, contrast, vs, rng, depth):
    wedge = _wedge(image.shape, maps, vs, rng, depth)
    if wedge is None:
        return None
    box, weight = wedge
    level = _levels("stroke", contrast, lv, rng)
    return _fill(image, maps, box, weight, level, 0.05 * _smooth_noise(rng, weight.shape, 1.0))


def _infarct(image, maps, lv, contrast, vs, rng, depth):
    wedge = _wedge(image.shape, maps, vs, rng, depth)
    if wedge is None:
        return None
    box, weight = wedge
    level = lv["csf"] * _u(rng, 0.9, 1.1)  # fluid: the subject's own CSF, any contrast
    return _fill(image, maps, box, weight, level, 0.03 * _smooth_noise(rng, weight.shape, 1.0))


def _foci(image, maps, lv, contrast, vs, rng, depth):
    shape = image.shape
    ventricles = maps["brain"] & (maps["csf"] > 0.6) & (depth * vs > 15.0)
    near = ndi.gaussian_filter(ventricles.astype(np.float32), 8.0 / vs)
    candidates = maps["brain"] & (maps["wm"] > 0.7) & (depth * vs > 6.0)
    image = image.copy()
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(3, 11))):
        c = _pick(rng, candidates & ~mask, near / max(near.max(), 1e-6) + 0.05)
        if c is None:
            break
        c += rng.uniform(-0.25, 0.25, size=3)
        radii = max(_u(rng, 1.5, 4.5) / vs, 0.8) * np.array([1.0, 1.0, _u(rng, 1.0, 2.0)])
        box, _ = _box(c, radii.max() + 2, shape)
        off = _offsets(box, c)
        weight = _ellipsoid_weight(
            off, radii, _random_rotation(rng), _smooth_noise(rng, off.shape[1:], 1.0), 0.1
        )
        weight = _finish_weight(weight * maps["brain"][box])
        level = _levels("foci", contrast, lv, rng)
        _paint(image, box, weight, level, 0.03 * _smooth_noise(rng, weight.shape, 1.0))
        mask[box] |= weight > 0
    return Lesion(image, maps["brain"], mask, np.zeros(shape, dtype=bool))


def _cavity(image, maps, lv, contrast, vs, rng, depth):
    shape = image.shape
    radii = _u(rng, 4.0, 12.0) / vs * rng.uniform(0.7, 1.3, size=3)
    tissue = maps["gm"] + maps["wm"]
    c = _pick(rng, maps["brain"] & (tissue > 0.8) & (depth > 0.8 * radii.max()))
    if c is None:
        return None
    c += rng.uniform(-0.5, 0.5, size=3)
    box, _ = _box(c, radii.max() * 1.5 + 2, shape)
    off = _offsets(box, c)
    weight = _ellipsoid_weight(
        off, radii, _random_rotation(rng), _smooth_noise(rng, off.shape[1:], radii.mean()), 0.25
    )
    weight = _finish_weight(weight * maps["brain"][box])
    if (weight > 0).sum() < 0.35 * _volume(radii):
        return None
    level = _levels("cavity", contrast, lv, rng)
    return _fill(image, maps, box, weight, level, 0.05 * _smooth_noise(rng, weight.shape, 1.0))


_FAMILY_FUNCS = {
    "tumour": _tumour,
    "stroke": _stroke,
    "foci": _foci,
    "cavity": _cavity,
    "infarct": _infarct,
}


def insert_lesion(
    family: str,
    image: np.ndarray,
    maps: dict,
    levels: dict,
    contrast: str,
    voxel_size: float,
    rng: np.random.Generator,
) -> Lesion:
    """Insert one lesion of ``family`` into a clean subject image.

    ``maps`` holds the subject's ``brain`` (bool) and ``gm``, ``wm``, ``csf`` fractions;
    ``levels`` its tissue intensities. Draws are retried until the lesion paints at least
    one voxel, so every lesioned subject has a non-empty mask.
    """
    func = _FAMILY_FUNCS[family]
    # Depth below the brain surface (voxels), from a half-resolution distance transform:
    # ample for placing lesions and ~10x cheaper than the full one.
    brain = maps["brain"]
    half = ndi.distance_transform_edt(np.pad(brain[::2, ::2, ::2], 1))[1:-1, 1:-1, 1:-1]
    idx = np.ix_(*[np.arange(n) // 2 for n in brain.shape])
    depth = np.where(brain, 2.0 * half[idx], 0.0).astype(np.float32)
    for _ in range(_MAX_TRIES):
        lesion = func(image, maps, levels, contrast, voxel_size, rng, depth)
        if lesion is not None and lesion.mask.any():
            return lesion
    raise RuntimeError(f"could not place a {family} lesion in this subject")
