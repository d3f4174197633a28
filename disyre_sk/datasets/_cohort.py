"""An offline brain-MRI cohort built from real anatomy: healthy subjects and lesioned tests.

The package ships three real, healthy, skull-stripped brains at 2 mm (MNI152 2009a,
Colin27 and an ITK example scan, see ``disyre_sk/data/README.md``).
:func:`make_brain_cohort` turns them into many different-looking subjects (random smooth
deformation, tissue contrast, gamma, texture, bias field, Rician noise) and inserts
lesions with exact masks into some test subjects (see :mod:`._lesions`, which shares
nothing with the training corruptions).

Rendering follows "draw, then apply": :func:`_draw_subject` draws every random choice of a
subject into a small dict, and :func:`_render_subject` turns it into a volume
deterministically, with or without a lesion. A healthy and a lesioned rendering of the
same draw therefore differ only where the lesion is (plus the tumour's mass effect, and
the per-volume normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from numbers import Integral, Real

import numpy as np
from scipy import ndimage as ndi
from sklearn.utils import Bunch, check_random_state

from ..io import normalize_intensity
from . import _lesions

__all__ = ["cohort_slices", "load_brain_anatomy", "make_brain_cohort"]

_ANATOMY_FILE = "brain_anatomy_2mm.npz"
BASES = ("mni", "colin", "itk")
_DEFAULT_BASES = ("mni", "colin")
CONTRASTS = ("t2", "flair", "t1")
FAMILIES = _lesions.FAMILIES
_ALL_FAMILIES = _lesions.FAMILIES + _lesions.EXTRA_FAMILIES
_SHIPPED_MM = 2.0
_TEXTURE_PAD = 24


# --------------------------------------------------------------------------- anatomy


def _read_bundle() -> dict[str, np.ndarray]:
    # The shipped data folder is disyre_sk/data/, beside this subpackage, not inside it.
    ref = resources.files("disyre_sk").joinpath("data", _ANATOMY_FILE)
    with resources.as_file(ref) as path, np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _resample_grid(vol: np.ndarray, factor: float) -> np.ndarray:
    """Resample a (Z, Y, X) map by ``factor`` (< 1 shrinks), anti-aliased, grid-aligned."""
    if factor == 1.0:
        return vol
    if factor < 1.0:  # Gaussian prefilter against aliasing, as in skimage.transform.rescale
        vol = ndi.gaussian_filter(vol, max(0.0, (1.0 / factor - 1.0) / 2.0))
    out_shape = tuple(max(1, round(n * factor)) for n in vol.shape)
    return ndi.zoom(vol, np.divide(out_shape, vol.shape), order=1, grid_mode=True, mode="nearest")


@lru_cache(maxsize=4)
def _anatomy(voxel_size: float) -> dict:
    """Every base on a ``voxel_size`` grid, (Z, Y, X), float32 fractions; cached, read-only."""
    raw = _read_bundle()
    factor = _SHIPPED_MM / voxel_size
    out: dict = {}
    for base in BASES:
        maps = {}
        for key in ("t1", "gm", "wm", "brain"):
            ras = raw[f"{base}_{key}"].astype(np.float32)
            if key != "brain":
                ras /= 255.0
            maps[key] = _resample_grid(np.ascontiguousarray(ras.transpose(2, 1, 0)), factor)
        brain = maps["brain"] >= 0.5
        # Tissue fractions sum to 1 inside the brain, 0 outside; CSF is the remainder.
        total = np.maximum(maps["gm"] + maps["wm"], 1.0)
        gm = np.where(brain, maps["gm"] / total, 0.0).astype(np.float32)
        wm = np.where(brain, maps["wm"] / total, 0.0).astype(np.float32)
        csf = np.where(brain, 1.0 - gm - wm, 0.0).astype(np.float32)
        t1 = np.where(brain, maps["t1"] / np.maximum(maps["brain"], 1e-3), 0.0)
        entry = {"t1": t1.astype(np.float32), "gm": gm, "wm": wm, "csf": csf, "brain": brain}
        # Voxels whose trilinear neighbourhood touches the brain: only these are sampled.
        entry["near"] = ndi.binary_dilation(brain, np.ones((3, 3, 3), bool), iterations=2)
        entry["brain_f"] = brain.astype(np.float32)
        # Mean T1 of (nearly) pure tissue: the T1 contrast's tissue levels.
        entry["t1_levels"] = {
            k: float(t1[entry[k] > 0.8].mean()) if (entry[k] > 0.8).any() else 0.0
            for k in ("csf", "gm", "wm")
        }
        for arr in entry.values():
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False
        out[base] = entry
    shape_in = raw["mni_t1"].shape  # RAS (X, Y, Z)
    shape_out = out["mni"]["t1"].shape[::-1]
    zooms = _SHIPPED_MM * np.divide(shape_in, shape_out)
    affine = raw["affine"].copy()
    # Grid-aligned resampling keeps the outer edge of the field of view fixed.
    affine[:3, 3] = raw["affine"][:3, 3] - _SHIPPED_MM / 2 + zooms / 2
    affine[:3, :3] = np.diag(zooms)
    out["affine"] = affine
    out["shape"] = shape = out["mni"]["t1"].shape
    # A bank of smooth noise (~2 mm grain); each subject's texture is a random crop of it.
    bank = np.random.default_rng(0).normal(size=tuple(n + _TEXTURE_PAD for n in shape))
    bank = ndi.gaussian_filter(bank, max(0.5, 1.6 / voxel_size))
    out["texture"] = (bank / bank.std()).astype(np.float32)
    out["texture"].flags.writeable = False
    return out


def _check_voxel_size(voxel_size) -> float:
    if not isinstance(voxel_size, Real) or not 2.0 <= float(voxel_size) <= 8.0:
        raise ValueError(f"voxel_size must be a number in [2, 8] mm, got {voxel_size!r}")
    return float(voxel_size)


def load_brain_anatomy(voxel_size: float = 2.0) -> Bunch:
    """The three real healthy brains shipped with the package, as arrays.

    MNI152 2009a (population average), Colin27 (one individual, 27 averaged scans) and
    the ITK example T1 (another individual and scanner, a single 2x2x3 mm scan aligned
    to MNI by an affine fit), skull-stripped, on one common RAS grid in MNI space, in
    the package's ``(Z, Y, X)`` axis convention (axial axis first, see :mod:`disyre_sk.io`).

    Parameters
    ----------
    voxel_size : float, default=2.0
        Isotropic voxel size in mm, in [2, 8]; the shipped data are 2 mm and coarser
        grids are anti-aliased downsamplings.

    Returns
    -------
    anatomy : sklearn.utils.Bunch
        ``names`` ("mni", "colin", "itk"); ``t1`` (3, Z, Y, X) float32 (T1 scaled to
        about [0, 1]); ``gm``, ``wm``, ``csf`` (3, Z, Y, X) float32 tissue fractions;
        ``brain_mask`` (3, Z, Y, X) bool; ``affine`` (4, 4), the voxel-to-world affine
        of the RAS ``(X, Y, Z)`` array, i.e. of ``volume.transpose(2, 1, 0)``;
        ``voxel_size``; ``DESCR``.

    Examples
    --------
    >>> from disyre_sk.datasets import load_brain_anatomy
    >>> anat = load_brain_anatomy(voxel_size=4.0)
    >>> anat.t1.shape[0], anat.names
    (3, ('mni', 'colin', 'itk'))
    """
    voxel_size = _check_voxel_size(voxel_size)
    anat = _anatomy(voxel_size)
    stack = {k: np.stack([anat[b][k] for b in BASES]) for k in ("t1", "gm", "wm", "csf")}
    return Bunch(
        names=BASES,
        brain_mask=np.stack([anat[b]["brain"] for b in BASES]),
        affine=anat["affine"].copy(),
        voxel_size=voxel_size,
        DESCR=(
            "Three real healthy skull-stripped brains (MNI152 2009a template, Colin27, "
            "ITK example T1) at "
            f"{voxel_size:g} mm, (Z, Y, X) arrays; sources and licenses in "
            "disyre_sk/data/README.md."
        ),
        **stack,
    )


# --------------------------------------------------------------------------- fields


@lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation matrix from n_in control points spanning n_out samples."""
    x = np.linspace(0.0, n_in - 1.0, n_out)
    i = np.clip(np.floor(x).astype(int), 0, max(n_in - 2, 0))
    w = x - i
    mat = np.zeros((n_out, n_in), dtype=np.float32)
    mat[np.arange(n_out), i] = 1.0 - w
    if n_in > 1:
        mat[np.arange(n_out), i + 1] += w
    mat.flags.writeable = False
    return mat


def _upsample(coarse: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Separable linear upsampling of (..., z, y, x) control points to (..., *shape)."""
    mz, my, mx = (_interp_matrix(n, m) for n, m in zip(shape, coarse.shape[-3:]))
    lead, (cz, cy, cx) = coarse.shape[:-3], coarse.shape[-3:]
    # Three batched matrix products (BLAS): far cheaper than ndimage.zoom on the full grid.
    out = mz @ coarse.astype(np.float32).reshape(*lead, cz, cy * cx)
    out = my @ out.reshape(*lead, shape[0], cy, cx)
    return out @ mx.T


def _coarse_shape(shape, voxel_size: float, spacing_mm: float) -> tuple[int, ...]:
    return tuple(max(2, int(np.ceil(n * voxel_size / spacing_mm)) + 1) for n in shape)


def _rotation(angles: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        rot = np.eye(3)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        out = rot @ out
    return out


# --------------------------------------------------------------------------- subjects

_LEVELS = {  # tissue intensity ranges of the synthetic contrasts (before gamma/bias/noise)
    "t2": {"csf": (0.95, 1.05), "gm": (0.45, 0.62), "wm": (0.28, 0.42)},
    "flair": {"csf": (0.05, 0.18), "gm": (0.55, 0.72), "wm": (0.40, 0.52)},
}


def _draw_subject(rng: np.random.Generator, base: str, contrast: str, anat: dict) -> dict:
    """Every random choice of one subject (small values and seeds only)."""
    if contrast == "t1":
        ref = anat[base]["t1_levels"]
        levels = {k: ref[k] * rng.uniform(0.92, 1.08) for k in ("csf", "gm", "wm")}
        blend = rng.uniform(0.0, 0.3)  # share of synthetic tissue contrast mixed in
    else:
        levels = {k: rng.uniform(*r) for k, r in _LEVELS[contrast].items()}
        blend = 1.0
    return {
        "base": base,
        "contrast": contrast,
        # Colin27 and the ITK brain are individuals: mirroring one gives a second,
        # different-looking brain (the MNI template is symmetric).
        "flip": bool(base in ("colin", "itk") and rng.random() < 0.5),
        "levels": levels,
        "blend": blend,
        "scale": rng.uniform(0.93, 1.03) * rng.uniform(0.97, 1.03, size=3),
        "angles": np.deg2rad(rng.uniform(-1, 1, size=3) * np.array([2.0, 3.0, 4.0])),
        "shift_mm": rng.normal(0.0, 1.5, size=3),
        "warp_mm": rng.uniform(1.0, 2.5),
        "texture": rng.uniform(0.02, 0.06),
        "gamma": float(np.exp(rng.uniform(-0.25, 0.25))),
        "bias": rng.uniform(0.05, 0.2),
        "noise": rng.uniform(0.01, 0.05),
        "seed": int(rng.integers(2**31)),
        "lesion_seed": int(rng.integers(2**31)),
    }


def _warp_coords(params: dict, shape, voxel_size: float, rng) -> np.ndarray:
    """Source coordinates (3, Z, Y, X): small affine + smooth random displacement."""
    center = (np.asarray(shape) - 1) / 2.0
    mat = _rotation(params["angles"]) @ np.diag(1.0 / params["scale"])
    coarse = rng.normal(0.0, 1.0, size=(3, *_coarse_shape(shape, voxel_size, 24.0)))
    coarse = ndi.gaussian_filter(coarse, (0, 0.7, 0.7, 0.7))
    coarse *= params["warp_mm"] / voxel_size / max(coarse.std(), 1e-6)
    coords = _upsample(coarse, shape)
    offset = center - mat @ center + params["shift_mm"] / voxel_size
    axes = [
        np.arange(n, dtype=np.float32).reshape([-1 if m == k else 1 for m in range(3)])
        for k, n in enumerate(shape)
    ]
    for i in range(3):
        coords[i] += offset[i]
        for j in range(3):
            if mat[i, j] != 0:
                coords[i] += np.float32(mat[i, j]) * axes[j]
    return coords


def _clean_base(params: dict, base: dict) -> np.ndarray:
    lv = params["levels"]
    synth = lv["csf"] * base["csf"] + lv["gm"] * base["gm"] + lv["wm"] * base["wm"]
    if params["contrast"] == "t1":
        synth = (1 - params["blend"]) * base["t1"] + params["blend"] * synth
    return synth.astype(np.float32)


def _sampler(coords: np.ndarray, near: np.ndarray):
    """Trilinear sampling at ``coords``, evaluated only where the source touches the brain."""
    shape = coords.shape[1:]
    # Nearest source voxel, clipped into the grid: a cheap superset test (``near`` is the
    # brain dilated by 2 voxels), exact results come from map_coordinates below.
    idx = (coords + 0.5).astype(np.int32)
    for k, n in enumerate(near.shape):
        np.clip(idx[k], 0, n - 1, out=idx[k])
    sel = near[idx[0], idx[1], idx[2]]
    del idx
    pts = coords[:, sel]

    def sample(vol: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, dtype=np.float32)
        out[sel] = ndi.map_coordinates(vol, pts, order=1, mode="constant")
        return out

    return sample


def _render_subject(
    params: dict, voxel_size: float, family: str | None = None, *, details: bool = False
) -> dict:
    """Render a drawn subject (optionally with a lesion) into a normalised volume."""
    anat = _anatomy(voxel_size)
    base = anat[params["base"]]
    shape = anat["shape"]
    rng = np.random.default_rng(params["seed"])
    coords = _warp_coords(params, shape, voxel_size, rng)
    if params["flip"]:
        coords[2] = (shape[2] - 1) - coords[2]
    sample = _sampler(coords, base["near"])
    del coords

    warped_brain = sample(base["brain_f"])
    # Edge voxels keep their partial-volume darkening (as in real skull-stripped scans),
    # so every brain has near-zero voxels at its rim and the 0th-percentile used by the
    # normalisation does not jump when a dark lesion is added.
    brain = warped_brain >= 0.2
    image = sample(_clean_base(params, base) * base["brain_f"])
    image[~brain] = 0.0
    # Fine tissue texture (the MNI template is a smooth average): a random crop of a bank.
    o = rng.integers(0, _TEXTURE_PAD + 1, size=3)
    tex = anat["texture"][o[0] : o[0] + shape[0], o[1] : o[1] + shape[1], o[2] :]
    image *= 1.0 + np.float32(params["texture"]) * tex[:, :, : shape[2]]
    bias = _upsample(rng.normal(0.0, params["bias"], size=(4, 4, 4)), shape)
    noise = rng.standard_normal((2, *shape), dtype=np.float32)

    mask = np.zeros(shape, dtype=bool)
    moved = np.zeros(shape, dtype=bool)
    if family is not None:  # lesions need the tissue maps; healthy subjects skip the cost
        # Tissue fractions are renormalised by the warped brain fraction (no dark rim).
        inv = np.where(brain, 1.0 / np.maximum(warped_brain, 0.2), 0.0).astype(np.float32)
        maps = {"brain": brain, "gm": sample(base["gm"]) * inv, "wm": sample(base["wm"]) * inv}
        maps["csf"] = np.where(brain, np.clip(1.0 - maps["gm"] - maps["wm"], 0, 1), 0)
        lesion = _lesions.insert_lesion(
            family,
            image,
            maps,
            params["levels"],
            params["contrast"],
            voxel_size,
            np.random.default_rng(params["lesion_seed"]),
        )
        image, brain, mask, moved = lesion.image, lesion.brain, lesion.mask, lesion.moved

    # Post-processing, identical for healthy and lesioned renderings of one draw.
    ref = np.float32(max(params["levels"].values()))
    image = np.power(np.maximum(image / ref, 0.0), np.float32(params["gamma"]))
    image *= ref * np.exp(bias)
    sigma = np.float32(params["noise"]) * ref
    image += sigma * noise[0]
    image = np.sqrt(image * image + (sigma * noise[1]) ** 2)  # Rician magnitude
    image[~brain] = 0.0
    out = {"image": normalize_intensity(image, brain, (0.0, 98.0)), "brain": brain, "mask": mask}
    if details:
        out.update(raw=image, moved=moved)
    return out


# --------------------------------------------------------------------------- cohort


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


_NAMES = {"mni": "MNI152 2009a", "colin": "Colin27", "itk": "ITK example T1"}


def _check_bases(name: str, bases) -> tuple[str, ...]:
    if isinstance(bases, str):
        bases = (bases,)
    bases = tuple(bases)
    if not bases or any(b not in BASES for b in bases) or len(set(bases)) != len(bases):
        raise ValueError(
            f"{name} must be a non-empty sequence of distinct names from {BASES}, got {bases!r}"
        )
    return bases


def _check_bias_field(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"bias_field must be a number, got {value!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(
            f"bias_field must be a finite number >= 0 (1 the default field, 0 none), got {value}"
        )
    return value


def _bias_words(strength: float) -> str:
    if strength == 0:
        return "no bias field (bias-corrected)"
    return "bias field" if strength == 1 else f"bias field ({strength:g} x the default)"


def make_brain_cohort(
    n_healthy: int = 16,
    n_test: int = 12,
    *,
    contrast: str = "t2",
    voxel_size: float = 2.0,
    families: Sequence[str] = FAMILIES,
    healthy_test_fraction: float = 1 / 3,
    train_bases: Sequence[str] = _DEFAULT_BASES,
    test_bases: Sequence[str] | None = None,
    bias_field: float = 1.0,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """A synthetic brain-MRI cohort from real anatomy, with exact lesion masks.

    Subjects alternate between real healthy brains shipped with the package (MNI152
    2009a, Colin27 and the ITK example T1; the two individuals sometimes mirrored), each
    made unique by a small
    random affine, a smooth random displacement field, random tissue contrast, texture,
    gamma, a smooth multiplicative bias field and Rician noise. Test subjects are either
    healthy or carry one lesion from one of four families, inserted into the clean
    anatomy *before* the shared post-processing (gamma, bias, noise, per-volume
    0th-98th percentile normalisation), so nothing but the lesion separates them:

    - ``"tumour"``: an irregular core (optionally with a necrotic centre) inside an edema
      ring that follows the white matter, hyperintense on T2/FLAIR, with mass effect (the
      surrounding tissue is pushed outward);
    - ``"stroke"``: a wedge-shaped territorial lesion with its base on the cortex,
      restricted to parenchyma, hyperintense on T2/FLAIR (hypointense on T1);
    - ``"foci"``: 3-10 small hyperintense white-matter foci, mostly periventricular;
    - ``"cavity"``: an irregular hypointense cavity (CSF-like on T1/FLAIR; on T2, where
      CSF is bright, a dark hemosiderin-like signal void).

    Masks are exact: a voxel is in the mask where the lesion changed the clean image
    (its blending weight is non-zero; faint partial-volume edges below 15 % are not
    painted at all). The tumour's mass effect moves tissue outside its mask; that
    displacement is *not* part of the mask. The lesion generator shares no code with the
    training corruptions in :mod:`disyre_sk.corruption`.

    Parameters
    ----------
    n_healthy : int, default=16
        Healthy training subjects.
    n_test : int, default=12
        Test subjects, healthy and lesioned, in random order.
    contrast : {"t2", "flair", "t1"}, default="t2"
        T2/FLAIR: synthesised from the tissue-fraction maps (T2: CSF bright, GM mid, WM
        dark; FLAIR: CSF dark, GM above WM). T1: the real T1 images, blended with up to
        30 % of a synthetic T1 tissue contrast.
    voxel_size : float, default=2.0
        Isotropic voxel size in mm, in [2, 8]. 2 mm gives volumes of about 83×96×77
        (Z, Y, X); 4 mm about 42×48×38, some 8 times faster.
    families : sequence of str, default=("tumour", "stroke", "foci", "cavity")
        Lesion families, used in turn over the lesioned test subjects. ``"infarct"``,
        not drawn by default, adds a chronic cortical infarct: the stroke's wedge filled
        with fluid of the subject's own CSF intensity, a lesion whose every voxel has an
        intensity healthy brains have and that opens onto the brain's surface, so that
        only the anatomy around it tells it apart.
    healthy_test_fraction : float, default=1/3
        Fraction of the test subjects left healthy (rounded).
    train_bases : sequence of {"mni", "colin", "itk"}, default=("mni", "colin")
        Real brains the training subjects are built from, used in turn.
    test_bases : sequence of {"mni", "colin", "itk"}, optional
        Real brains the test subjects are built from; ``None`` uses ``train_bases``
        (test subjects are then new renderings of the training anatomies). Bases absent
        from ``train_bases`` give the *held-out anatomy* protocol: every test brain is an
        individual the model never saw, as when a detector trained on some people maps
        others.
    bias_field : float, default=1.0
        Strength of each subject's smooth multiplicative bias field, relative to the
        default (the field's log has a standard deviation drawn in [0.05, 0.2] at its
        4×4×4 control points, a slow brightening and darkening across the brain as in
        an uncorrected scan). ``0`` renders the same subjects bias-corrected: with one
        ``random_state``, every other random choice, lesions included, stays the same.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same cohort.

    Returns
    -------
    cohort : sklearn.utils.Bunch
        ``X_train`` (n_healthy, Z, Y, X) float32 in [0, 1], background 0;
        ``brain_masks_train`` bool, same shape; ``X_test`` (n_test, Z, Y, X) float32;
        ``masks_test`` bool, same shape (all False for healthy test subjects);
        ``families_test`` list of str ("healthy" or a family); ``brain_masks_test``;
        ``bases_train``, ``bases_test`` (which real brain each subject comes from);
        ``held_out_anatomy`` (True when no test base is a training base);
        ``voxel_size``; ``contrast``; ``bias_field``; ``affine`` (RAS voxel-to-world affine of
        ``volume.transpose(2, 1, 0)``); ``description`` and ``DESCR`` (same text).

    Examples
    --------
    >>> from disyre_sk.datasets import make_brain_cohort
    >>> c = make_brain_cohort(4, 6, voxel_size=6.0, random_state=0)
    >>> c.X_train.shape[0], c.X_test.shape[0], c.masks_test.dtype.name
    (4, 6, 'bool')
    >>> sorted(set(c.families_test))
    ['cavity', 'foci', 'healthy', 'stroke', 'tumour']
    """
    n_healthy = _check_int("n_healthy", n_healthy, 0)
    bias_field = _check_bias_field(bias_field)
    n_test = _check_int("n_test", n_test, 0)
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    voxel_size = _check_voxel_size(voxel_size)
    families = tuple(families)
    unknown = [f for f in families if f not in _ALL_FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {_ALL_FAMILIES}, got {families}")
    if not isinstance(healthy_test_fraction, Real) or not 0 <= healthy_test_fraction <= 1:
        raise ValueError(f"healthy_test_fraction must be in [0, 1], got {healthy_test_fraction}")
    train_bases = _check_bases("train_bases", train_bases)
    test_bases = train_bases if test_bases is None else _check_bases("test_bases", test_bases)
    rng = np.random.default_rng(check_random_state(random_state).randint(2**31))
    anat = _anatomy(voxel_size)

    n_healthy_test = round(float(n_test * healthy_test_fraction))
    lesioned = [families[k % len(families)] for k in range(n_test - n_healthy_test)]
    # Each family gets the test bases in turn (k + k // n_fam moves on every round).
    n_tb = len(test_bases)
    test_plan = [(f, test_bases[(k + k // len(families)) % n_tb]) for k, f in enumerate(lesioned)]
    test_plan += [(None, test_bases[k % n_tb]) for k in range(n_healthy_test)]
    test_plan = [test_plan[i] for i in rng.permutation(len(test_plan))]

    def draw(base: str) -> dict:
        params = _draw_subject(rng, base, contrast, anat)
        params["bias"] *= bias_field  # scales the field, draws the same random numbers
        return params

    train = [
        _render_subject(draw(train_bases[i % len(train_bases)]), voxel_size)
        for i in range(n_healthy)
    ]
    test = [_render_subject(draw(b), voxel_size, f) for f, b in test_plan]
    shape = anat["shape"]

    def stack(items, key, dtype):
        return np.stack([s[key] for s in items]) if items else np.zeros((0, *shape), dtype)

    held_out = not set(test_bases) & set(train_bases)
    description = (
        f"Synthetic brain-MRI cohort ({contrast.upper()}-like, {voxel_size:g} mm, "
        f"(Z, Y, X) = {shape}) from real healthy brains: training on "
        f"{', '.join(_NAMES[b] for b in train_bases)}, testing on "
        f"{', '.join(_NAMES[b] for b in test_bases)}"
        f"{' (held-out anatomy)' if held_out else ''}: "
        f"{n_healthy} healthy training subjects, {n_test} test subjects "
        f"({n_healthy_test} healthy, {len(lesioned)} lesioned: {', '.join(families)}). "
        "Subject variation: affine, smooth deformation, tissue contrast, texture, gamma, "
        f"{_bias_words(bias_field)}, Rician noise. Lesions inserted before the shared "
        "post-processing; "
        "masks mark where a lesion changed the image (tumour mass effect excluded). "
        "Intensities: per-volume 0th-98th foreground percentile to [0, 1], background 0."
    )
    return Bunch(
        X_train=stack(train, "image", np.float32),
        brain_masks_train=stack(train, "brain", bool),
        X_test=stack(test, "image", np.float32),
        masks_test=stack(test, "mask", bool),
        brain_masks_test=stack(test, "brain", bool),
        families_test=[f or "healthy" for f, _ in test_plan],
        bases_train=[train_bases[i % len(train_bases)] for i in range(n_healthy)],
        bases_test=[b for _, b in test_plan],
        held_out_anatomy=held_out,
        voxel_size=voxel_size,
        contrast=contrast,
        bias_field=bias_field,
        affine=anat["affine"].copy(),
        description=description,
        DESCR=description,
    )


def cohort_slices(
    volumes: np.ndarray,
    masks: np.ndarray | None = None,
    *,
    axis: int = 0,
    min_foreground: float = 0.05,
) -> Bunch:
    """Cut volumes into 2-D slices, keeping slices with enough foreground.

    Parameters
    ----------
    volumes : ndarray of shape (n, Z, Y, X)
        E.g. ``make_brain_cohort().X_test``; foreground = non-zero voxels.
    masks : ndarray of shape (n, Z, Y, X), optional
        Lesion masks cut the same way.
    axis : {0, 1, 2}, default=0
        Spatial axis to slice along (0 = axial in the package convention).
    min_foreground : float, default=0.05
        Minimum fraction of non-zero pixels for a slice to be kept.

    Returns
    -------
    slices : sklearn.utils.Bunch
        ``images`` (m, H, W) float32; ``masks`` (m, H, W) bool or None;
        ``volume_index`` and ``slice_index`` (m,) int arrays saying where each slice
        came from.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.datasets import cohort_slices
    >>> v = np.zeros((2, 4, 5, 5), np.float32); v[:, 1:3, 1:4, 1:4] = 1
    >>> s = cohort_slices(v)
    >>> s.images.shape, s.slice_index.tolist()
    ((4, 5, 5), [1, 2, 1, 2])
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4:
        raise ValueError(f"volumes must be (n, Z, Y, X), got shape {volumes.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != volumes.shape:
            raise ValueError(f"masks shape {masks.shape} differs from volumes {volumes.shape}")
    moved = np.moveaxis(volumes, axis + 1, 1)  # (n, S, H, W)
    frac = (moved != 0).mean(axis=(2, 3))
    vol_idx, sl_idx = np.nonzero(frac >= min_foreground)
    out_masks = None
    if masks is not None:
        out_masks = np.moveaxis(masks, axis + 1, 1)[vol_idx, sl_idx]
    return Bunch(
        images=moved[vol_idx, sl_idx].astype(np.float32),
        masks=out_masks,
        volume_index=vol_idx,
        slice_index=sl_idx,
    )
