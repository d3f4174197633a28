"""Held-out anomaly families for synthetic validation, with exact masks.

Following the held-out-task idea of Baugh et al. (MICCAI 2023), validation inserts
anomalies of families *outside* the training corruption into healthy slices:

- ``"intensity"``: a smooth, blob-shaped intensity change (brighter or darker), fading
  towards its border;
- ``"deformation"``: a sink or source deformation, tissue pulled towards or pushed away
  from a centre; intensities are moved, not changed;
- ``"poisson"``: a patch of another slice blended in by Poisson image editing, so that
  it has the other slice's texture but no edge at its border.

This module shares no code with :mod:`disyre_sk.corruption` (the training corruptions)
nor with the offline cohort's lesions: it draws its own shapes on the host with numpy,
from the generator it is given. A mask marks exactly the pixels the anomaly changed,
each by at least :data:`MIN_CHANGE`; the background is never touched and values stay
in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import spsolve

FAMILIES = ("intensity", "deformation", "poisson")
# A pixel belongs to an anomaly's mask when the anomaly changed it by at least this much
# (intensities in [0, 1]); smaller changes are undone, so the mask is exact.
MIN_CHANGE = 0.05
# Validation images per family; they share the same clean slices across families.
IMAGES_PER_FAMILY = 32
# Smallest anomaly radius, in pixels, and the smallest anomaly kept, in pixels.
MIN_RADIUS = 2.0
_MIN_PIXELS = 4
# Distance kept between an anomaly's outer edge and the background or the image border.
_MARGIN = 1.5
_TRIES = 12
# Slices with less than this fraction of the largest foreground area among the
# candidates (edge slices of a volume) are not used for validation.
_MIN_AREA_FRACTION = 0.5


# --------------------------------------------------------------------------- shapes


def _room(foreground: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the nearest background pixel or image border."""
    padded = np.pad(foreground, 1)
    return ndi.distance_transform_edt(padded)[1:-1, 1:-1]


@dataclass(frozen=True)
class _Blob:
    """An irregular disc: radius ``r(θ) = radius * (1 + Σ a_k cos(kθ + φ_k))``."""

    cy: int
    cx: int
    radius: float
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]

    @property
    def outer(self) -> float:
        return self.radius * (1.0 + sum(self.amplitudes))

    def polar(self, shape):
        """``(rho, dy, dx, dist)``: rho < 1 inside the blob, 1 on its border."""
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        dy, dx = yy - self.cy, xx - self.cx
        dist = np.hypot(dy, dx)
        theta = np.arctan2(dy, dx)
        edge = np.ones_like(dist)
        for k, (a, p) in enumerate(zip(self.amplitudes, self.phases), start=2):
            edge += a * np.cos(k * theta + p)
        return dist / (self.radius * edge), dy, dx, dist


def _draw_blob(room: np.ndarray, area: float, rng: np.random.Generator, scale) -> _Blob | None:
    """A blob of ``scale`` times the foreground's equivalent radius that fits inside it."""
    amplitudes = tuple(float(a) for a in rng.uniform(0.0, 0.12, size=3))
    phases = tuple(float(p) for p in rng.uniform(0.0, 2 * np.pi, size=3))
    spread = 1.0 + sum(amplitudes)
    largest = (float(room.max()) - _MARGIN) / spread
    if largest < MIN_RADIUS:
        return None
    radius = rng.uniform(*scale) * math.sqrt(area / math.pi)
    radius = min(max(radius, MIN_RADIUS), largest)
    centres = np.argwhere(room >= radius * spread + _MARGIN)
    if len(centres) == 0:
        return None
    cy, cx = centres[rng.integers(len(centres))]
    return _Blob(int(cy), int(cx), float(radius), amplitudes, phases)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------- families


def _intensity(image, foreground, rng, donor):
    room = _room(foreground)
    blob = _draw_blob(room, foreground.sum(), rng, (0.12, 0.3))
    if blob is None:
        return None
    rho = blob.polar(image.shape)[0]
    # The change fades from the centre over a random fraction of the radius: from a
    # flat plateau with a soft rim to a bump that is smooth all the way.
    fade = rng.uniform(0.2, 1.0)
    weight = _smoothstep((1.0 - rho) / fade)
    amplitude = rng.uniform(0.15, 0.45) * rng.choice((-1.0, 1.0))
    return image + amplitude * weight


def _deformation(image, foreground, rng, donor):
    room = _room(foreground)
    blob = _draw_blob(room, foreground.sum(), rng, (0.15, 0.35))
    if blob is None:
        return None
    rho, dy, dx, dist = blob.polar(image.shape)
    inside = rho < 1.0
    # Each pixel at normalised radius rho takes the value found at radius rho**gamma on
    # the same ray: gamma > 1 magnifies the centre (source), gamma < 1 shrinks it (sink).
    # rho**gamma = 1 on the border, so the field is continuous there.
    gamma = rng.uniform(1.6, 3.0) if rng.random() < 0.5 else rng.uniform(0.3, 0.6)
    ratio = np.ones_like(dist)
    moving = inside & (dist > 0)
    ratio[moving] = rho[moving] ** gamma / rho[moving]
    ratio[inside & (dist == 0)] = 0.0
    sy = blob.cy + dy[inside] * ratio[inside]
    sx = blob.cx + dx[inside] * ratio[inside]
    out = image.astype(np.float64)
    # Sampled points lie inside the blob, which lies inside the foreground with a margin.
    out[inside] = ndi.map_coordinates(image.astype(np.float64), [sy, sx], order=1)
    return out


def _poisson(image, foreground, rng, donor):
    donor_image, donor_fg = donor
    room = _room(foreground)
    blob = _draw_blob(room, foreground.sum(), rng, (0.12, 0.3))
    if blob is None:
        return None
    donor_centres = np.argwhere(_room(donor_fg) >= blob.outer + _MARGIN)
    if len(donor_centres) == 0:
        return None
    oy, ox = donor_centres[rng.integers(len(donor_centres))] - (blob.cy, blob.cx)
    omega = blob.polar(image.shape)[0] < 1.0
    py, px = np.nonzero(omega)
    n = py.size
    index = np.full(image.shape, -1, dtype=np.int64)
    index[py, px] = np.arange(n)
    source = donor_image.astype(np.float64)
    target = image.astype(np.float64)
    # Discrete Poisson equation on the blob: the Laplacian of the result equals the
    # donor's, and on the blob's border the result equals the target image.
    rhs = np.zeros(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.full(n, 4.0)]
    for sy, sx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        qy, qx = py + sy, px + sx
        rhs += source[py + oy, px + ox] - source[qy + oy, qx + ox]
        j = index[qy, qx]
        inner = j >= 0
        rows.append(np.flatnonzero(inner))
        cols.append(j[inner])
        vals.append(np.full(int(inner.sum()), -1.0))
        rhs[~inner] += target[qy[~inner], qx[~inner]]
    system = csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    out = target.copy()
    out[py, px] = spsolve(system, rhs)
    return out


_FAMILY_FUNCTIONS = {"intensity": _intensity, "deformation": _deformation, "poisson": _poisson}


def _check_slice(name, image, foreground):
    image = np.asarray(image, dtype=np.float32)
    foreground = np.asarray(foreground, dtype=bool)
    if image.ndim != 2 or foreground.shape != image.shape:
        raise ValueError(
            f"{name} must be a 2-D image with a foreground mask of the same shape; got "
            f"{image.shape} and {foreground.shape}."
        )
    return image, foreground


def insert_anomaly(image, foreground, family, rng, donor=None, donor_foreground=None):
    """Insert one anomaly of ``family`` into a ``[0, 1]`` slice.

    Returns ``(anomalous, mask)`` with ``mask == (anomalous != image)`` exactly, every
    masked pixel changed by at least :data:`MIN_CHANGE`, the background untouched and
    values in ``[0, 1]``; or ``None`` when the foreground has no room for the anomaly.
    ``donor`` (another slice and its foreground) gives the patch of ``"poisson"``; by
    default the image itself, at another place.
    """
    if family not in _FAMILY_FUNCTIONS:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
    image, foreground = _check_slice("image", image, foreground)
    if donor is None:
        donor, donor_foreground = image, foreground
    donor = _check_slice("donor", donor, donor_foreground)
    candidate = _FAMILY_FUNCTIONS[family](image, foreground, rng, donor)
    if candidate is None:
        return None
    candidate = np.clip(candidate, 0.0, 1.0).astype(np.float32)
    candidate[~foreground] = image[~foreground]
    mask = np.abs(candidate.astype(np.float64) - image) >= MIN_CHANGE
    if mask.sum() < _MIN_PIXELS:
        return None
    # Changes below MIN_CHANGE are undone: the mask is exactly where the image changed.
    return np.where(mask, candidate, image), mask


# --------------------------------------------------------------------------- the set


@dataclass
class ValidationSet:
    """Slices with one synthetic anomaly each, their exact masks and their family."""

    images: np.ndarray  # (m, H, W) float32 in [0, 1], with the anomaly
    clean: np.ndarray  # (m, H, W) the same slices before it
    masks: np.ndarray  # (m, H, W) bool
    foreground: np.ndarray  # (m, H, W) bool
    families: np.ndarray  # (m,) str

    def __len__(self) -> int:
        return len(self.images)

    def examples(self, per_family: int) -> dict[str, np.ndarray]:
        """The first ``per_family`` images of each family, as plain arrays."""
        keep = np.concatenate(
            [np.flatnonzero(self.families == f)[:per_family] for f in np.unique(self.families)]
        )
        keep.sort()
        return {
            "images": self.images[keep].copy(),
            "clean": self.clean[keep].copy(),
            "masks": self.masks[keep].copy(),
            "foreground": self.foreground[keep].copy(),
            "families": self.families[keep].copy(),
        }


def usable_slices(foreground: np.ndarray) -> np.ndarray:
    """Which ``(N, H, W)`` slices are large enough to host the validation anomalies."""
    area = foreground.reshape(len(foreground), -1).sum(1)
    ok = area >= max(1, _MIN_AREA_FRACTION * area.max(initial=0))
    for i in np.flatnonzero(ok):
        ok[i] = _room(foreground[i]).max() >= MIN_RADIUS + _MARGIN
    return ok


def make_validation_set(
    slices: np.ndarray,
    foreground: np.ndarray,
    rng: np.random.Generator,
    *,
    per_family: int | None = None,
    families=FAMILIES,
) -> ValidationSet | None:
    """Draw the validation set from ``[0, 1]`` slices; ``None`` when none is usable.

    Up to ``per_family`` (default :data:`IMAGES_PER_FAMILY`) usable slices are drawn;
    every family is inserted into each of them (cycling with fresh anomalies when there
    are fewer slices than images), so the families are scored on the same anatomy. A
    family that cannot be placed in any slice is left out.
    """
    per_family = IMAGES_PER_FAMILY if per_family is None else int(per_family)
    pool = np.flatnonzero(usable_slices(foreground))
    if pool.size == 0:
        return None
    chosen = np.sort(rng.choice(pool, size=min(per_family, pool.size), replace=False))
    parts: dict[str, list] = {"images": [], "clean": [], "masks": [], "fg": [], "fam": []}
    for family in families:
        for k in range(per_family):
            i = chosen[k % chosen.size]
            for _ in range(_TRIES):
                j = i if chosen.size == 1 else rng.choice(chosen[chosen != i])
                made = insert_anomaly(
                    slices[i], foreground[i], family, rng, slices[j], foreground[j]
                )
                if made is not None:
                    break
            if made is None:
                continue
            parts["images"].append(made[0])
            parts["masks"].append(made[1])
            parts["clean"].append(slices[i])
            parts["fg"].append(foreground[i])
            parts["fam"].append(family)
    # A family that found no room or no contrast to change (a deformation of flat
    # tissue changes nothing) in any slice is left out; the caller's note names it.
    if not parts["fam"]:
        return None
    return ValidationSet(
        images=np.stack(parts["images"]).astype(np.float32),
        clean=np.stack(parts["clean"]).astype(np.float32),
        masks=np.stack(parts["masks"]),
        foreground=np.stack(parts["fg"]).astype(bool),
        families=np.asarray(parts["fam"]),
    )
