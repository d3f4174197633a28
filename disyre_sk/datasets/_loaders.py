"""Local-folder loaders for public brain-MRI collections: BraTS, ATLAS, IXI, CamCAN.

Public through :mod:`disyre_sk.datasets`. Nothing here downloads: each loader reads a
user's own local copy, checks that the folder has the expected layout (the error says
what was expected and what was found) and returns a :class:`sklearn.utils.Bunch` of file
paths, with arrays too when ``load=True``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..io import NiftiLoader, load_nifti

__all__ = ["load_atlas", "load_brats", "load_camcan", "load_ixi"]

_NII = r"\.nii(?:\.gz)?"
_BRATS_SUBJECT = re.compile(r"^BraTS(?:20_(?:Training|Validation)_\d{3}|20\d\d_\d{5})$")
_BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
_IXI_FILE = re.compile(rf"^(IXI\d{{3}})-([A-Za-z]+)-(\d{{4}})-(T1|T2|PD|MRA){_NII}$")
_IXI_MODALITIES = ("T1", "T2", "PD", "MRA")
_CAMCAN_MODALITIES = ("T1w", "T2w")


# --------------------------------------------------------------------------- helpers


def _root(root: str | os.PathLike, dataset: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} folder not found (or not a folder): {path}")
    return path


def _peek(folder: Path, n: int = 5) -> str:
    """The first few entries of a folder, for error messages."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError as exc:
        return f"<unreadable: {exc}>"
    if not names:
        return "nothing (the folder is empty)"
    more = f" ... ({len(names)} entries)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _nifti_in(folder: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _pick_modality(modality: str, allowed: tuple[str, ...], dataset: str) -> str:
    for name in allowed:
        if isinstance(modality, str) and modality.lower() == name.lower():
            return name
    raise ValueError(f"{dataset} modality must be one of {allowed}, got {modality!r}")


def _check_preprocessing(preprocessing: str | None) -> str | None:
    if preprocessing not in (None, "upd"):
        raise ValueError(
            "preprocessing must be None (files as distributed) or 'upd' (the names written "
            f"by the UPD study's preparation scripts), got {preprocessing!r}"
        )
    return preprocessing


def _other_naming_hint(upd: bool) -> str:
    if upd:
        return " (for the file names of the official release, use preprocessing=None)"
    return " (for files prepared by the UPD study's scripts, use preprocessing='upd')"


def _limit(items: list, n_subjects: int | None) -> list:
    if n_subjects is None:
        return items
    if not isinstance(n_subjects, int) or n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive int or None, got {n_subjects!r}")
    return items[:n_subjects]


def _bunch(
    dataset: str,
    modality: str,
    subjects: list[str],
    images: list[Path],
    masks: list[Path] | None,
    *,
    load: bool,
    normalize: bool,
    descr: str,
    **extra,
) -> Bunch:
    out = Bunch(
        dataset=dataset,
        modality=modality,
        subject_ids=subjects,
        image_paths=[str(p) for p in images],
        mask_paths=None if masks is None else [str(p) for p in masks],
        images=None,
        masks=None,
        DESCR=descr,
        **extra,
    )
    if load:
        out.images = NiftiLoader(normalize=normalize).transform(out.image_paths)
        if masks is not None:
            out.masks = np.stack([load_nifti(p) > 0 for p in out.mask_paths])
            if out.masks.shape != out.images.shape:
                raise ValueError(
                    f"{dataset}: mask arrays {out.masks.shape} do not match the images "
                    f"{out.images.shape}"
                )
    return out


# --------------------------------------------------------------------------- BraTS


def load_brats(
    root: str | os.PathLike,
    *,
    modality: str = "t2",
    with_masks: bool = True,
    load: bool = False,
    normalize: bool = True,
    n_subjects: int | None = None,
    preprocessing: str | None = None,
) -> Bunch:
    """Index (and optionally load) a local BraTS 2020 or 2021 training folder.

    Expected layout: one folder per subject directly under ``root``, holding
    ``<subject>_<modality>.nii.gz`` and ``<subject>_seg.nii.gz``::

        root/BraTS20_Training_001/BraTS20_Training_001_t2.nii.gz   (2020)
        root/BraTS20_Training_001/BraTS20_Training_001_seg.nii.gz
        root/BraTS2021_00000/BraTS2021_00000_t2.nii.gz               (2021)

    BraTS 2020 subject 355's segmentation has a non-standard name; a single file with
    "seg" in its name is accepted as the mask when ``<subject>_seg`` is missing.

    With ``preprocessing="upd"``, the names written by the preparation scripts of the
    UPD study (Lagogiannis et al., 2023), which register each scan to an atlas::

        root/BraTS20_Training_001/BraTS20_Training_001_t2_registered.nii.gz
        root/BraTS20_Training_001/anomaly_segmentation.nii.gz

    Parameters
    ----------
    root : str or path-like
        The folder holding the subject folders (e.g. ``MICCAI_BraTS2020_TrainingData``).
    modality : {"t1", "t1ce", "t2", "flair"}, default="t2"
        Which scan of each subject to index (case-insensitive).
    with_masks : bool, default=True
        Pair each scan with its tumour segmentation; every subject must have one.
    load : bool, default=False
        Also read the scans into ``images`` (n, Z, Y, X) float32 (all must share one
        shape) and the masks into ``masks`` (n, Z, Y, X) bool (label > 0).
    normalize : bool, default=True
        With ``load=True``, normalise each scan's foreground 0th-98th percentile to
        [0, 1] (:func:`disyre_sk.io.normalize_intensity`).
    n_subjects : int, optional
        Keep only the first ``n_subjects`` subjects (sorted by identifier).
    preprocessing : {None, "upd"}, default=None
        ``None``: the file names of the official release; ``"upd"``:
        ``<subject>_<modality>_registered`` scans with ``anomaly_segmentation`` masks
        (``.nii`` or ``.nii.gz``).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``subject_ids``, ``image_paths``, ``mask_paths`` (None without masks),
        ``images`` and ``masks`` (None unless ``load=True``), ``dataset``,
        ``modality``, ``layout`` ("2020" or "2021"), ``preprocessing``, ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    ValueError
        If no subject folder matches, or a subject lacks the modality or mask file; the
        message names the expected names and lists what was found.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> from disyre_sk.datasets import load_brats
    >>> root = tempfile.mkdtemp()
    >>> sub = os.path.join(root, "BraTS2021_00000"); os.mkdir(sub)
    >>> for kind in ("t2", "seg"):
    ...     img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    ...     nib.save(img, os.path.join(sub, f"BraTS2021_00000_{kind}.nii.gz"))
    >>> b = load_brats(root)
    >>> b.subject_ids, b.layout
    (['BraTS2021_00000'], '2021')
    """
    root = _root(root, "BraTS")
    modality = _pick_modality(modality, _BRATS_MODALITIES, "BraTS")
    upd = _check_preprocessing(preprocessing) == "upd"
    image_suffix = "_registered" if upd else ""
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and _BRATS_SUBJECT.match(p.name))
    if not subjects:
        hint = ""
        nested = [
            p
            for p in root.iterdir()
            if p.is_dir() and any(_BRATS_SUBJECT.match(q.name) for q in p.iterdir() if q.is_dir())
        ]
        if nested:
            hint = f" Did you mean {nested[0]}?"
        raise ValueError(
            f"no BraTS subject folders in {root}: expected folders named like "
            "'BraTS20_Training_001' (2020) or 'BraTS2021_00000' (2021); found "
            f"{_peek(root)}.{hint}"
        )
    subjects = _limit(subjects, n_subjects)
    images, masks = [], []
    for sub in subjects:
        image = _nifti_in(sub, f"{sub.name}_{modality}{image_suffix}")
        if image is None:
            raise ValueError(
                f"BraTS subject {sub.name} has no {modality} scan: expected "
                f"{sub.name}_{modality}{image_suffix}.nii.gz in {sub}; found {_peek(sub)}"
                + _other_naming_hint(upd)
            )
        images.append(image)
        if with_masks:
            mask_stem = "anomaly_segmentation" if upd else f"{sub.name}_seg"
            mask = _nifti_in(sub, mask_stem)
            if mask is None and not upd:  # BraTS20_Training_355's seg has another name
                segs = [
                    p
                    for p in sub.iterdir()
                    if "seg" in p.name.lower() and re.search(rf"{_NII}$", p.name)
                ]
                mask = segs[0] if len(segs) == 1 else None
            if mask is None:
                raise ValueError(
                    f"BraTS subject {sub.name} has no segmentation: expected "
                    f"{mask_stem}.nii.gz in {sub}; found {_peek(sub)} "
                    "(use with_masks=False for the validation set)"
                )
            masks.append(mask)
    layout = "2021" if subjects[0].name.startswith("BraTS2021") else "2020"
    return _bunch(
        "BraTS",
        modality,
        [s.name for s in subjects],
        images,
        masks if with_masks else None,
        load=load,
        normalize=normalize,
        descr=(
            f"BraTS {layout} ({len(subjects)} subjects, {modality}) from {root}; masks are "
            "the whole tumour (label > 0) when loaded."
        ),
        layout=layout,
        preprocessing=preprocessing,
    )


# --------------------------------------------------------------------------- ATLAS


def load_atlas(
    root: str | os.PathLike,
    *,
    space: str = "MNI152NLin2009aSym",
    with_masks: bool = True,
    load: bool = False,
    normalize: bool = True,
    n_subjects: int | None = None,
    preprocessing: str | None = None,
) -> Bunch:
    """Index (and optionally load) a local ATLAS v2.0 (stroke lesions, T1w) folder.

    Searched recursively under ``root`` (so ``ATLAS_2/Training`` with its ``R001``...
    cohort folders works), BIDS-like::

        sub-r001s001/ses-1/anat/sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz
        sub-r001s001/ses-1/anat/sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz

    ATLAS scans are not skull-stripped; use a brain mask before normalising if needed.
    With ``preprocessing="upd"``, the skull-stripped, registered scans that the UPD
    study's preparation scripts write, each beside its mask::

        .../anat/sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w_stripped_registered.nii.gz
        .../anat/anomaly_segmentation.nii.gz

    Parameters
    ----------
    root : str or path-like
        A folder at or above the ``sub-*`` subject folders.
    space : str, default="MNI152NLin2009aSym"
        The ``space-`` entity of the file names.
    with_masks : bool, default=True
        Pair each scan with its lesion mask; every scan must have one.
    load : bool, default=False
        Also read the scans into ``images`` (n, Z, Y, X) float32 (all must share one
        shape) and the masks into ``masks`` (n, Z, Y, X) bool (label > 0).
    normalize : bool, default=True
        With ``load=True``, normalise each scan's foreground 0th-98th percentile to
        [0, 1] (:func:`disyre_sk.io.normalize_intensity`).
    n_subjects : int, optional
        Keep only the first ``n_subjects`` subjects (sorted by identifier).
    preprocessing : {None, "upd"}, default=None
        ``None``: the file names of the release; ``"upd"``: ``..._T1w_stripped_registered``
        scans with an ``anomaly_segmentation`` mask in the same folder.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``subject_ids`` ("sub-r001s001_ses-1"), ``image_paths``, ``mask_paths``,
        ``images``, ``masks``, ``dataset``, ``modality`` ("T1w"), ``preprocessing``,
        ``DESCR``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> from disyre_sk.datasets import load_atlas
    >>> anat = os.path.join(tempfile.mkdtemp(), "sub-r001s001", "ses-1", "anat")
    >>> os.makedirs(anat)
    >>> stem = "sub-r001s001_ses-1_space-MNI152NLin2009aSym_"
    >>> for suffix in ("T1w", "label-L_desc-T1lesion_mask"):
    ...     img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    ...     nib.save(img, os.path.join(anat, stem + suffix + ".nii.gz"))
    >>> load_atlas(anat.split("sub-")[0]).subject_ids
    ['sub-r001s001_ses-1']
    """
    root = _root(root, "ATLAS")
    upd = _check_preprocessing(preprocessing) == "upd"
    kind = "T1w_stripped_registered" if upd else "T1w"
    pattern = re.compile(
        rf"^(sub-[A-Za-z0-9]+)_(ses-[A-Za-z0-9]+)_space-{re.escape(space)}_{kind}{_NII}$"
    )
    found = sorted(
        (p for p in root.rglob(f"sub-*_{kind}.nii*") if pattern.match(p.name)),
        key=lambda p: p.name,
    )
    if not found:
        raise ValueError(
            f"no ATLAS scans in {root}: expected files named like "
            f"'sub-r001s001_ses-1_space-{space}_{kind}.nii.gz' (searched recursively); "
            f"found at the top: {_peek(root)}" + _other_naming_hint(upd)
        )
    found = _limit(found, n_subjects)
    masks = []
    if with_masks:
        for scan in found:
            stem = re.sub(rf"_{kind}{_NII}$", "", scan.name)
            mask_stem = "anomaly_segmentation" if upd else f"{stem}_label-L_desc-T1lesion_mask"
            mask = _nifti_in(scan.parent, mask_stem)
            if mask is None:
                raise ValueError(
                    f"ATLAS scan {scan.name} has no lesion mask: expected "
                    f"{mask_stem}.nii.gz in {scan.parent}; found {_peek(scan.parent)}"
                )
            masks.append(mask)
    ids = ["_".join(pattern.match(p.name).group(1, 2)) for p in found]
    return _bunch(
        "ATLAS",
        "T1w",
        ids,
        found,
        masks if with_masks else None,
        load=load,
        normalize=normalize,
        descr=f"ATLAS v2.0 ({len(found)} T1w scans, space {space}) from {root}.",
        preprocessing=preprocessing,
    )


# --------------------------------------------------------------------------- IXI


def load_ixi(
    root: str | os.PathLike,
    *,
    modality: str = "T2",
    load: bool = False,
    normalize: bool = True,
    n_subjects: int | None = None,
) -> Bunch:
    """Index (and optionally load) a local IXI folder (healthy subjects, no masks).

    Files are flat, as the IXI archives unpack: ``IXI002-Guys-0828-T2.nii.gz``
    (subject, site, scan id, modality), directly under ``root`` or one folder below
    (e.g. ``root/IXI-T2/``). IXI scans are neither skull-stripped nor registered: strip
    and register them before training (see :func:`disyre_sk.io.foreground_mask`).

    Parameters
    ----------
    root : str or path-like
        The folder holding the IXI files.
    modality : {"T1", "T2", "PD", "MRA"}, default="T2"
        Which scans to index (case-insensitive).
    load : bool, default=False
        Also read the scans into ``images`` (n, Z, Y, X) float32 (all must share one
        shape) and the masks into ``masks`` (n, Z, Y, X) bool (label > 0).
    normalize : bool, default=True
        With ``load=True``, normalise each scan's foreground 0th-98th percentile to
        [0, 1] (:func:`disyre_sk.io.normalize_intensity`).
    n_subjects : int, optional
        Keep only the first ``n_subjects`` subjects (sorted by identifier).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``subject_ids`` ("IXI002"), ``sites`` ("Guys", "HH", "IOP"), ``image_paths``,
        ``mask_paths`` (None), ``images``, ``masks`` (None), ``dataset``, ``modality``,
        ``DESCR``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> from disyre_sk.datasets import load_ixi
    >>> root = tempfile.mkdtemp()
    >>> img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    >>> nib.save(img, os.path.join(root, "IXI002-Guys-0828-T2.nii.gz"))
    >>> b = load_ixi(root)
    >>> b.subject_ids, b.sites
    (['IXI002'], ['Guys'])
    """
    root = _root(root, "IXI")
    modality = _pick_modality(modality, _IXI_MODALITIES, "IXI")
    candidates = [*root.glob("*.nii*"), *root.glob("*/*.nii*")]
    found = []
    for path in candidates:
        m = _IXI_FILE.match(path.name)
        if m and m.group(4) == modality:
            found.append((m.group(1), m.group(2), path))
    if not found:
        raise ValueError(
            f"no IXI {modality} scans in {root}: expected files named like "
            f"'IXI002-Guys-0828-{modality}.nii.gz' (in the folder or one level below); "
            f"found {_peek(root)}"
        )
    found = _limit(sorted(found, key=lambda t: (t[0], t[2].name)), n_subjects)
    return _bunch(
        "IXI",
        modality,
        [f[0] for f in found],
        [f[2] for f in found],
        None,
        load=load,
        normalize=normalize,
        descr=f"IXI ({len(found)} healthy {modality} scans) from {root}; no lesion masks.",
        sites=[f[1] for f in found],
    )


# --------------------------------------------------------------------------- CamCAN


def load_camcan(
    root: str | os.PathLike,
    *,
    modality: str = "T1w",
    load: bool = False,
    normalize: bool = True,
    n_subjects: int | None = None,
    preprocessing: str | None = None,
) -> Bunch:
    """Index (and optionally load) a local Cam-CAN BIDS folder (healthy, no masks).

    Searched recursively under ``root`` for the BIDS layout
    ``sub-CC110033/anat/sub-CC110033_T1w.nii.gz`` (e.g. under
    ``cc700/mri/pipeline/release004/BIDS_20190411/anat``). Raw Cam-CAN scans are not
    skull-stripped. With ``preprocessing="upd"``, the skull-stripped, registered scans
    that the UPD study's preparation scripts write, in the subject folder (or its
    ``anat`` folder): ``sub-CC110033/sub-CC110033_T2w_stripped_registered.nii.gz``.

    Parameters
    ----------
    root : str or path-like
        A folder at or above the ``sub-CC*`` subject folders.
    modality : {"T1w", "T2w"}, default="T1w"
        Which scans to index (case-insensitive).
    load : bool, default=False
        Also read the scans into ``images`` (n, Z, Y, X) float32 (all must share one
        shape) and the masks into ``masks`` (n, Z, Y, X) bool (label > 0).
    normalize : bool, default=True
        With ``load=True``, normalise each scan's foreground 0th-98th percentile to
        [0, 1] (:func:`disyre_sk.io.normalize_intensity`).
    n_subjects : int, optional
        Keep only the first ``n_subjects`` subjects (sorted by identifier).
    preprocessing : {None, "upd"}, default=None
        ``None``: raw BIDS names; ``"upd"``: ``<subject>_<modality>_stripped_registered``.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``subject_ids`` ("sub-CC110033"), ``image_paths``, ``mask_paths`` (None),
        ``images``, ``masks`` (None), ``dataset``, ``modality``, ``preprocessing``,
        ``DESCR``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nibabel as nib
    >>> from disyre_sk.datasets import load_camcan
    >>> root = tempfile.mkdtemp()
    >>> anat = os.path.join(root, "sub-CC110033", "anat"); os.makedirs(anat)
    >>> img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    >>> nib.save(img, os.path.join(anat, "sub-CC110033_T1w.nii.gz"))
    >>> load_camcan(root, load=True).images.shape
    (1, 4, 4, 4)
    """
    root = _root(root, "CamCAN")
    modality = _pick_modality(modality, _CAMCAN_MODALITIES, "CamCAN")
    upd = _check_preprocessing(preprocessing) == "upd"
    kind = f"{modality}_stripped_registered" if upd else modality
    pattern = re.compile(rf"^(sub-CC\d{{6}})_{kind}{_NII}$")

    def in_subject_folder(p: Path) -> bool:
        subject = pattern.match(p.name).group(1)
        if p.parent.name == "anat":
            return p.parent.parent.name == subject
        return upd and p.parent.name == subject  # the UPD scripts drop the anat level

    found = sorted(
        (
            p
            for p in root.rglob(f"sub-CC*_{kind}.nii*")
            if pattern.match(p.name) and in_subject_folder(p)
        ),
        key=lambda p: p.name,
    )
    if not found:
        where = "sub-CC110033/" if upd else "sub-CC110033/anat/"
        raise ValueError(
            f"no CamCAN {modality} scans in {root}: expected "
            f"'{where}sub-CC110033_{kind}.nii.gz' (searched recursively); "
            f"found at the top: {_peek(root)}" + _other_naming_hint(upd)
        )
    found = _limit(found, n_subjects)
    return _bunch(
        "CamCAN",
        modality,
        [pattern.match(p.name).group(1) for p in found],
        found,
        None,
        load=load,
        normalize=normalize,
        descr=f"Cam-CAN ({len(found)} healthy {modality} scans) from {root}; no masks.",
        preprocessing=preprocessing,
    )
