"""Tests for the local-folder loaders in disyre_sk.datasets, on tiny fake folders."""

import nibabel as nib
import numpy as np
import pytest

from disyre_sk.datasets import load_atlas, load_brats, load_camcan, load_ixi

SHAPE = (6, 7, 5)


def _nii(path, value=1.0, label=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros(SHAPE, np.float32)
    data[1:5, 2:6, 1:4] = value
    if label:
        data = (data > 0).astype(np.uint8) * 2
        data[1, 2, 1] = 4
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


# --------------------------------------------------------------------------- BraTS


def _brats(root, names, modalities=("t1", "t1ce", "t2", "flair"), seg=True):
    for i, name in enumerate(names):
        for mod in modalities:
            _nii(root / name / f"{name}_{mod}.nii.gz", value=10.0 * (i + 1))
        if seg:
            _nii(root / name / f"{name}_seg.nii.gz", label=True)
    return root


@pytest.mark.parametrize(
    "names,layout",
    [
        (["BraTS20_Training_002", "BraTS20_Training_001"], "2020"),
        (["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_01666"], "2021"),
    ],
)
def test_brats_layouts(tmp_path, names, layout):
    root = _brats(tmp_path / "data", names)
    (root / "README.txt").write_text("not a subject")
    (root / "other_folder").mkdir()
    b = load_brats(root)
    assert b.layout == layout and b.modality == "t2" and b.dataset == "BraTS"
    assert b.subject_ids == sorted(names)
    for sid, img, mask in zip(b.subject_ids, b.image_paths, b.mask_paths):
        assert img.endswith(f"{sid}/{sid}_t2.nii.gz")
        assert mask.endswith(f"{sid}/{sid}_seg.nii.gz")
    assert b.images is None and b.masks is None
    flair = load_brats(root, modality="FLAIR", with_masks=False, n_subjects=1)
    assert flair.image_paths[0].endswith("_flair.nii.gz") and flair.mask_paths is None
    assert len(flair.subject_ids) == 1


def test_brats_load_arrays(tmp_path):
    root = _brats(tmp_path, ["BraTS2021_00000", "BraTS2021_00001"])
    b = load_brats(root, load=True)
    assert b.images.shape == (2, *SHAPE[::-1]) and b.images.dtype == np.float32
    assert b.images.max() == 1.0
    assert b.masks.dtype == bool and b.masks.shape == b.images.shape
    assert b.masks.sum() == 2 * 4 * 4 * 3  # labels 2 and 4 both count as tumour
    raw = load_brats(root, load=True, normalize=False)
    assert raw.images.max() == 20.0


def test_brats_seg_with_odd_name(tmp_path):
    # BraTS20_Training_355 ships its segmentation as W39_1998.09.19_Segm.nii
    root = _brats(tmp_path, ["BraTS20_Training_355"], seg=False)
    _nii(root / "BraTS20_Training_355" / "W39_1998.09.19_Segm.nii", label=True)
    b = load_brats(root)
    assert b.mask_paths[0].endswith("W39_1998.09.19_Segm.nii")


def test_brats_errors_name_expected_and_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"BraTS"):
        load_brats(tmp_path / "absent")
    root = tmp_path / "wrong"
    for name in ("patient1", "patient2"):
        (root / name).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"BraTS20_Training_001") as err:
        load_brats(root)
    assert "patient1/" in str(err.value)
    nested = _brats(tmp_path / "top" / "MICCAI_BraTS2020_TrainingData", ["BraTS20_Training_001"])
    with pytest.raises(ValueError, match=r"Did you mean .*MICCAI_BraTS2020_TrainingData"):
        load_brats(nested.parent)
    no_t2 = _brats(tmp_path / "no_t2", ["BraTS20_Training_001"], modalities=("t1",))
    with pytest.raises(ValueError, match=r"BraTS20_Training_001_t2.nii.gz") as err:
        load_brats(no_t2)
    assert "BraTS20_Training_001_t1.nii.gz" in str(err.value)  # what was found
    no_seg = _brats(tmp_path / "no_seg", ["BraTS20_Training_001"], seg=False)
    with pytest.raises(ValueError, match=r"_seg.nii.gz.*with_masks=False"):
        load_brats(no_seg)
    assert load_brats(no_seg, with_masks=False).mask_paths is None
    with pytest.raises(ValueError, match=r"modality"):
        load_brats(no_seg, modality="dwi")
    with pytest.raises(ValueError, match=r"n_subjects"):
        load_brats(no_seg, with_masks=False, n_subjects=0)


# --------------------------------------------------------------------------- ATLAS

_SPACE = "space-MNI152NLin2009aSym"


def _atlas(root, subjects, masks=True):
    for cohort, sub in subjects:
        anat = root / cohort / sub / "ses-1" / "anat"
        _nii(anat / f"{sub}_ses-1_{_SPACE}_T1w.nii.gz", value=50.0)
        if masks:
            _nii(anat / f"{sub}_ses-1_{_SPACE}_label-L_desc-T1lesion_mask.nii.gz", label=True)
    return root


def test_atlas_found_and_paired(tmp_path):
    root = _atlas(
        tmp_path / "ATLAS_2" / "Training",
        [("R002", "sub-r002s007"), ("R001", "sub-r001s001"), ("R001", "sub-r001s002")],
    )
    b = load_atlas(tmp_path / "ATLAS_2", load=True)
    assert b.subject_ids == ["sub-r001s001_ses-1", "sub-r001s002_ses-1", "sub-r002s007_ses-1"]
    assert b.modality == "T1w"
    for img, mask in zip(b.image_paths, b.mask_paths):
        assert mask.replace("_label-L_desc-T1lesion_mask", "_T1w") == img
    assert b.images.shape == (3, *SHAPE[::-1]) and b.masks.any()
    assert load_atlas(root, n_subjects=2, with_masks=False).mask_paths is None


def test_atlas_errors(tmp_path):
    (tmp_path / "empty" / "derivatives").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"_T1w.nii.gz.*derivatives/"):
        load_atlas(tmp_path / "empty")
    root = _atlas(tmp_path / "nomask", [("R001", "sub-r001s001")], masks=False)
    with pytest.raises(ValueError, match=r"lesion mask.*T1lesion_mask.nii.gz.*found .*_T1w"):
        load_atlas(root)
    with pytest.raises(ValueError, match=r"no ATLAS scans"):
        load_atlas(root, space="MNI152NLin6Asym")


# --------------------------------------------------------------------------- IXI


def test_ixi_flat_and_nested(tmp_path):
    for name in (
        "IXI002-Guys-0828-T2.nii.gz",
        "IXI002-Guys-0828-T1.nii.gz",
        "IXI012-HH-1211-T2.nii.gz",
        "IXI013-HH-1212-PD.nii.gz",
        "notes.txt",
    ):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            _nii(tmp_path / name)
    _nii(tmp_path / "IXI-T2" / "IXI100-IOP-0001-T2.nii.gz")
    b = load_ixi(tmp_path)
    assert b.subject_ids == ["IXI002", "IXI012", "IXI100"]
    assert b.sites == ["Guys", "HH", "IOP"]
    assert b.mask_paths is None and all(p.endswith("-T2.nii.gz") for p in b.image_paths)
    pd = load_ixi(tmp_path, modality="pd", load=True)
    assert pd.subject_ids == ["IXI013"] and pd.images.shape == (1, *SHAPE[::-1])


def test_ixi_errors(tmp_path):
    _nii(tmp_path / "scan_001.nii.gz")
    with pytest.raises(ValueError, match=r"IXI002-Guys-0828-T2.nii.gz.*scan_001.nii.gz"):
        load_ixi(tmp_path)
    with pytest.raises(ValueError, match=r"modality"):
        load_ixi(tmp_path, modality="DWI")


# --------------------------------------------------------------------------- CamCAN


def test_camcan_found(tmp_path):
    bids = tmp_path / "cc700" / "mri" / "pipeline" / "release004" / "BIDS_20190411" / "anat"
    for sub in ("sub-CC110037", "sub-CC110033"):
        _nii(bids / sub / "anat" / f"{sub}_T1w.nii.gz")
        _nii(bids / sub / "anat" / f"{sub}_T2w.nii.gz")
    b = load_camcan(tmp_path)
    assert b.subject_ids == ["sub-CC110033", "sub-CC110037"]
    assert all(p.endswith("_T1w.nii.gz") for p in b.image_paths)
    t2 = load_camcan(tmp_path, modality="t2w", load=True)
    assert t2.modality == "T2w" and t2.images.shape == (2, *SHAPE[::-1])


def test_camcan_errors(tmp_path):
    _nii(tmp_path / "sub-CC110033_T1w.nii.gz")  # not inside sub-*/anat/
    with pytest.raises(ValueError, match=r"sub-CC110033/anat/sub-CC110033_T1w.nii.gz"):
        load_camcan(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"CamCAN"):
        load_camcan(tmp_path / "nope")


# --------------------------------------------------------------------------- UPD names


def test_upd_preprocessing_names(tmp_path):
    brats = tmp_path / "MICCAI_BraTS2020_TrainingData"
    for name in ("BraTS20_Training_002", "BraTS20_Training_001"):
        _nii(brats / name / f"{name}_t2_registered.nii.gz", value=3.0)
        _nii(brats / name / f"{name}_t2.nii.gz")  # the unregistered original is ignored
        _nii(brats / name / "anomaly_segmentation.nii", label=True)
    b = load_brats(brats, preprocessing="upd", load=True)
    assert b.subject_ids == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert all(p.endswith("_t2_registered.nii.gz") for p in b.image_paths)
    assert all(p.endswith("/anomaly_segmentation.nii") for p in b.mask_paths)
    assert b.preprocessing == "upd" and b.masks.any()

    camcan = tmp_path / "CamCAN"
    _nii(camcan / "sub-CC110033" / "sub-CC110033_T2w_stripped_registered.nii.gz")
    _nii(camcan / "sub-CC110037" / "anat" / "sub-CC110037_T2w_stripped_registered.nii.gz")
    _nii(camcan / "elsewhere" / "sub-CC110045_T2w_stripped_registered.nii.gz")  # no subject
    c = load_camcan(camcan, modality="T2w", preprocessing="upd")
    assert c.subject_ids == ["sub-CC110033", "sub-CC110037"]

    anat = tmp_path / "ATLAS" / "R001" / "sub-r001s001" / "ses-1" / "anat"
    _nii(anat / f"sub-r001s001_ses-1_{_SPACE}_T1w_stripped_registered.nii.gz")
    _nii(anat / "anomaly_segmentation.nii.gz", label=True)
    a = load_atlas(tmp_path / "ATLAS", preprocessing="upd")
    assert a.subject_ids == ["sub-r001s001_ses-1"]
    assert a.mask_paths[0].endswith("anat/anomaly_segmentation.nii.gz")


def test_upd_preprocessing_errors_point_to_the_other_naming(tmp_path):
    root = _brats(tmp_path / "b", ["BraTS20_Training_001"])  # official names only
    with pytest.raises(ValueError, match=r"_t2_registered.nii.gz.*preprocessing=None"):
        load_brats(root, preprocessing="upd")
    (root / "BraTS20_Training_001" / "BraTS20_Training_001_t2_registered.nii.gz").write_bytes(
        (root / "BraTS20_Training_001" / "BraTS20_Training_001_t2.nii.gz").read_bytes()
    )
    with pytest.raises(ValueError, match=r"anomaly_segmentation.nii.gz"):
        load_brats(root, preprocessing="upd")
    with pytest.raises(ValueError, match=r"preprocessing must be None .* got 'UPD'"):
        load_brats(root, preprocessing="UPD")
    camcan = tmp_path / "c" / "sub-CC110033" / "anat"
    _nii(camcan / "sub-CC110033_T1w.nii.gz")
    with pytest.raises(ValueError, match=r"_T1w_stripped_registered.nii.gz.*preprocessing=None"):
        load_camcan(tmp_path / "c", preprocessing="upd")
    _nii(tmp_path / "c2" / "sub-CC110033" / "sub-CC110033_T1w_stripped_registered.nii.gz")
    with pytest.raises(ValueError, match=r"preprocessing='upd'"):
        load_camcan(tmp_path / "c2")
    atlas = _atlas(tmp_path / "a", [("R001", "sub-r001s001")])
    with pytest.raises(ValueError, match=r"T1w_stripped_registered"):
        load_atlas(atlas, preprocessing="upd")
