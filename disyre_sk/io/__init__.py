"""NIfTI input/output, foreground masks, intensity normalisation and cropping.

**Axis convention.** Every array this package hands to (or gets back from) the detector
puts the **axial (inferior→superior) axis first**: a volume is ``(Z, Y, X)`` and a batch
``(n, Z, Y, X)``. With ``reorient=True`` (the default) a scan is first reoriented to the
closest canonical RAS orientation (``nibabel.as_closest_canonical``), whose array axes
are ``(X, Y, Z)`` = (left→Right, posterior→Anterior, inferior→Superior); the package
array is its transpose ``(Z, Y, X)``, so ``volume[k]`` is the k-th axial slice counted
from the feet, with rows running posterior→anterior and columns left→right
(``imshow(volume[k], origin="lower")`` shows anterior up and the subject's right on the
right: the neurological convention). With ``reorient=False`` the stored voxel axes are
simply reversed. :func:`save_map` undoes exactly these steps, so a round trip recovers
the scan's geometry.
"""

from __future__ import annotations

import os
import secrets
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._arrays import (
    CropRecord,
    center_crop_or_pad,
    crop_to_foreground,
    foreground_mask,
    normalize_intensity,
    uncrop,
)

__all__ = [
    "CropRecord",
    "NiftiLoader",
    "center_crop_or_pad",
    "crop_to_foreground",
    "foreground_mask",
    "load_nifti",
    "normalize_intensity",
    "save_map",
    "uncrop",
]

PathOrImage = str | os.PathLike | nib.spatialimages.SpatialImage
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


# --------------------------------------------------------------------------- reading


def _describe(src: Any) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def _open_image(src: PathOrImage) -> nib.spatialimages.SpatialImage:
    """Open a path lazily (header only) or pass a nibabel image through, with clear errors."""
    if isinstance(src, nib.spatialimages.SpatialImage):
        return src
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(
            f"expected a path to a NIfTI file or a nibabel image, got {type(src).__name__}"
        )
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        raise ValueError(f"not a NIfTI file (expected a .nii or .nii.gz name): {path}")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise ValueError(f"could not read {path} as NIfTI: {exc}") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"not a NIfTI image ({type(img).__name__}): {path}")
    return img


def _spatial_image(img: nib.spatialimages.SpatialImage, name: str):
    """Drop a trailing singleton 4th dimension; refuse real 4-D (or 2-D) images."""
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise ValueError(f"expected a 3-D image, got shape {shape} ({len(shape)}-D): {name}")
    return img


def load_nifti(
    src: PathOrImage, *, reorient: bool = True, return_image: bool = False
) -> np.ndarray | tuple[np.ndarray, nib.spatialimages.SpatialImage]:
    """Read a 3-D NIfTI scan as a float32 array in the package's ``(Z, Y, X)`` convention.

    Parameters
    ----------
    src : str, path-like or nibabel image
        A ``.nii`` / ``.nii.gz`` file or an already opened image.
    reorient : bool, default=True
        Reorient to the closest canonical RAS orientation first, so axis 0 is the
        inferior→superior (axial) axis whatever the file's storage order.
    return_image : bool, default=False
        Also return the image whose voxel grid the array is on (the RAS-reoriented image
        when ``reorient=True``).

    Returns
    -------
    volume : ndarray of shape (Z, Y, X), float32
        Intensities with scaling (``scl_slope``/``scl_inter``) applied.
    image : nibabel image
        Only when ``return_image=True``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the message names it).
    ValueError
        If the file is not NIfTI, is truncated or damaged, is 4-D (other than a
        trailing singleton), or holds NaN or infinite values; the message names it.

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> from disyre_sk.io import load_nifti
    >>> img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4))
    >>> load_nifti(img).shape  # (X, Y, Z) on disk -> (Z, Y, X)
    (6, 5, 4)
    """
    name = _describe(src)
    img = _spatial_image(_open_image(src), name)
    if reorient:
        img = nib.as_closest_canonical(img)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        # nibabel reads lazily: a truncated .nii.gz fails here with no file name.
        raise ValueError(
            f"could not read the voxels of {name}: the file is truncated or damaged "
            f"({type(exc).__name__}: {exc}); copy or export it again"
        ) from exc
    if not np.isfinite(data).all():
        n_bad = int(np.size(data) - np.isfinite(data).sum())
        raise ValueError(f"{n_bad} non-finite (NaN or inf) voxel values in {name}")
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))
    return (volume, img) if return_image else volume


# --------------------------------------------------------------------------- writing


def _write_image(img: nib.spatialimages.SpatialImage, path: str) -> None:
    # One seam for tests (and for a failure mid-write): everything that touches the file.
    nib.save(img, path)


def save_map(
    map_array: np.ndarray,
    reference: PathOrImage,
    path: str | os.PathLike,
    *,
    reoriented: bool = True,
    crop_record: CropRecord | None = None,
) -> Path:
    """Write a voxel map as NIfTI on the grid of the scan it was computed from.

    The map is in the package convention ``(Z, Y, X)`` of the reference scan as
    :func:`load_nifti` returned it (with the same ``reorient`` setting). It is transposed
    and reoriented back to the reference's storage order and written as float32 with the
    reference's affine, header and full shape. The write is atomic: the file is written
    under a temporary name in the same folder and moved into place with ``os.replace``,
    so an error leaves either no file or the previous one, never a half-written file.

    Parameters
    ----------
    map_array : ndarray of shape (Z, Y, X)
        E.g. one volume of ``DISYREDetector.decision_map``.
    reference : str, path-like or nibabel image
        The source scan (only its header and affine are read).
    path : str or path-like
        Output file, ending in ``.nii`` or ``.nii.gz``; its folder must exist.
    reoriented : bool, default=True
        Whether the map is on the RAS-reoriented grid (``load_nifti(reorient=True)``).
    crop_record : CropRecord, optional
        If the map was computed on a cropped array, the record of that crop; the map is
        put back with :func:`uncrop` (zeros outside) first.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Examples
    --------
    >>> import tempfile, os, numpy as np, nibabel as nib
    >>> from disyre_sk.io import load_nifti, save_map
    >>> ref = nib.Nifti1Image(np.random.rand(4, 5, 6).astype(np.float32), np.eye(4))
    >>> scan = load_nifti(ref)
    >>> out = os.path.join(tempfile.mkdtemp(), "map.nii.gz")
    >>> _ = save_map(scan * 2, ref, out)
    >>> bool(np.allclose(nib.load(out).get_fdata(), ref.get_fdata() * 2))
    True
    """
    path = Path(path)
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        raise ValueError(f"output name must end in .nii or .nii.gz: {path}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    raw = _open_image(reference)
    ref = _spatial_image(raw, _describe(reference))
    data = np.asarray(map_array, dtype=np.float32)
    if crop_record is not None:
        data = uncrop(data, crop_record)
    grid_shape = list(ref.shape)
    if reoriented:
        # Stored axis i becomes canonical axis ornt[i, 0] (see nibabel.io_orientation).
        ornt = nib.orientations.io_orientation(ref.affine)
        for i, (axis, _) in enumerate(ornt):
            grid_shape[int(axis)] = ref.shape[i]
    expected = tuple(grid_shape[::-1])
    if data.shape != expected:
        raise ValueError(
            f"map shape {data.shape} does not match the reference scan "
            f"{_describe(reference)}: expected (Z, Y, X) = {expected}"
        )
    data = data.transpose(2, 1, 0)
    if reoriented:
        # Undo as_closest_canonical: map canonical RAS axes back to the stored ones.
        to_stored = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt(("R", "A", "S")), ornt
        )
        data = nib.orientations.apply_orientation(data, to_stored)
    if len(raw.shape) == 4:  # keep a trailing singleton dimension if the reference had one
        data = data[..., None]
    header = raw.header.copy()
    header.set_data_dtype(np.float32)
    klass = type(ref) if isinstance(ref, (nib.Nifti1Image, nib.Nifti2Image)) else nib.Nifti1Image
    img = klass(np.ascontiguousarray(data, dtype=np.float32), ref.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)  # the values are the map; no rescaling
    img.header["cal_min"], img.header["cal_max"] = 0.0, 0.0

    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp{suffix}"
    # O_EXCL: never clobber another writer's temp file; mode 0o666 lets the umask decide,
    # so the final file gets ordinary permissions (mkstemp would leave it 0600).
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        _write_image(img, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- transformer


def _check_sources(X: Any) -> list:
    if isinstance(X, (str, os.PathLike, nib.spatialimages.SpatialImage)):
        raise TypeError(
            "expected a list of NIfTI paths or images, got a single one; wrap it in a list"
        )
    try:
        items = list(X)
    except TypeError:
        raise TypeError(
            f"expected a list of NIfTI paths or images, got {type(X).__name__}"
        ) from None
    if not items:
        raise ValueError("expected at least one NIfTI path or image, got an empty list")
    for item in items:
        if not isinstance(item, (str, os.PathLike, nib.spatialimages.SpatialImage)):
            raise TypeError(
                f"expected NIfTI paths or nibabel images, got an item of type "
                f"{type(item).__name__}: {item!r:.80}"
            )
    return items


class NiftiLoader(TransformerMixin, BaseEstimator):
    """Stateless pipeline step: NIfTI paths in, a ``(n, Z, Y, X)`` float32 array out.

    Put it in front of the detector so a pipeline takes file names::

        make_pipeline(NiftiLoader(), DISYREDetector()).fit(healthy_paths)

    ``fit`` only validates its input and returns ``self``; ``transform`` reads every
    scan with :func:`load_nifti` (axial axis first, see the module docstring), optionally
    normalises each volume with :func:`normalize_intensity` and centre-crops/pads it to
    ``target_shape``.

    Parameters
    ----------
    normalize : bool, default=True
        Per-volume foreground percentile normalisation to [0, 1], background 0.
    percentiles : (float, float), default=(0, 98)
        Percentiles used when ``normalize=True``.
    foreground : {"nonzero", "otsu"}, default="nonzero"
        ``foreground_mask`` method that defines the foreground for normalisation.
    reorient : bool, default=True
        Reorient every scan to RAS first (recommended; :func:`save_map` assumes it by
        default).
    target_shape : tuple of 3 int, optional
        If given, every volume is centre-cropped/zero-padded to this ``(Z, Y, X)`` shape
        (see :func:`center_crop_or_pad`); otherwise all scans must share one shape.

    See Also
    --------
    load_nifti : The reader used for each scan.
    save_map : Writes a map computed from these arrays back onto a scan's grid.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> from disyre_sk.io import NiftiLoader
    >>> folder = tempfile.mkdtemp()
    >>> paths = []
    >>> for i in range(2):
    ...     p = os.path.join(folder, f"s{i}.nii.gz")
    ...     nib.save(nib.Nifti1Image(np.random.rand(6, 7, 8).astype(np.float32), np.eye(4)), p)
    ...     paths.append(p)
    >>> X = NiftiLoader().fit_transform(paths)
    >>> X.shape, X.dtype.name, float(X.max())
    ((2, 8, 7, 6), 'float32', 1.0)
    """

    def __init__(
        self,
        normalize: bool = True,
        percentiles: tuple[float, float] = (0.0, 98.0),
        foreground: str = "nonzero",
        reorient: bool = True,
        target_shape: tuple[int, int, int] | None = None,
    ):
        self.normalize = normalize
        self.percentiles = percentiles
        self.foreground = foreground
        self.reorient = reorient
        self.target_shape = target_shape

    def _validate_params(self) -> None:
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {lo, hi}")
        if self.foreground not in ("nonzero", "otsu"):
            raise ValueError(f"foreground must be 'nonzero' or 'otsu', got {self.foreground!r}")
        if self.target_shape is not None and (
            len(self.target_shape) != 3 or min(int(s) for s in self.target_shape) < 1
        ):
            raise ValueError(f"target_shape must be 3 positive ints, got {self.target_shape}")

    def fit(self, X: Sequence[PathOrImage], y: Any = None) -> NiftiLoader:
        """Validate the parameters and the input list; learn nothing.

        Parameters
        ----------
        X : list of str, path-like or nibabel images
            The scans (only checked to be a non-empty list of paths or images).
        y : None
            Ignored.

        Returns
        -------
        self : NiftiLoader
            The loader itself, unchanged.

        Examples
        --------
        >>> from disyre_sk.io import NiftiLoader
        >>> NiftiLoader().fit(["a.nii.gz"])  # files are only opened by transform
        NiftiLoader()
        """
        self._validate_params()
        _check_sources(X)
        return self

    def transform(self, X: Sequence[PathOrImage]) -> np.ndarray:
        """Read, reorient, normalise and stack the scans.

        Parameters
        ----------
        X : list of str, path-like or nibabel images
            The scans.

        Returns
        -------
        volumes : ndarray of shape (n, Z, Y, X), float32
            The scans, axial axis first, stacked.

        Raises
        ------
        ValueError
            If the scans do not share one shape (and ``target_shape`` is None); the
            message lists the shapes and the files that have them.

        Examples
        --------
        >>> import numpy as np, nibabel as nib
        >>> from disyre_sk.io import NiftiLoader
        >>> img = nib.Nifti1Image(np.ones((2, 3, 4), np.float32), np.eye(4))
        >>> NiftiLoader(normalize=False, target_shape=(4, 4, 4)).transform([img]).shape
        (1, 4, 4, 4)
        """
        self._validate_params()
        items = _check_sources(X)
        volumes = []
        for item in items:
            vol = load_nifti(item, reorient=self.reorient)
            if self.normalize:
                mask = foreground_mask(vol, self.foreground)
                if not mask.any():
                    raise ValueError(f"no foreground to normalise in {_describe(item)}")
                vol = normalize_intensity(vol, mask, self.percentiles)
            if self.target_shape is not None:
                vol = center_crop_or_pad(vol, self.target_shape)[0]
            volumes.append(vol)
        shapes: dict[tuple, list[str]] = {}
        for item, vol in zip(items, volumes):
            shapes.setdefault(vol.shape, []).append(_describe(item))
        if len(shapes) > 1:
            detail = "; ".join(
                f"(Z, Y, X)={s}: {', '.join(names[:3])}" + (" ..." if len(names) > 3 else "")
                for s, names in shapes.items()
            )
            raise ValueError(
                "all scans must share one shape (resample them, or set target_shape); "
                f"found {len(shapes)} shapes: {detail}"
            )
        return np.stack(volumes).astype(np.float32, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # stateless: transform works without fit
        tags.input_tags.two_d_array = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"stateless": True, "requires_fit": False, "X_types": ["string"]}
