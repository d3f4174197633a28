"""Tests for disyre_sk.io: NIfTI reading/writing, masks, normalisation, cropping, loader."""

import os

import nibabel as nib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import make_pipeline

from disyre_sk import io
from disyre_sk.io import (
    CropRecord,
    NiftiLoader,
    center_crop_or_pad,
    crop_to_foreground,
    foreground_mask,
    load_nifti,
    normalize_intensity,
    save_map,
    uncrop,
)

RNG = np.random.default_rng(0)


def _lsa_affine():
    # Stored axes: x -> Left, y -> Superior, z -> Anterior (like the ITK example T1).
    return np.array([[-2.0, 0, 0, 10.0], [0, 0, 3.0, -20.0], [0, 2.0, 0, 5.0], [0, 0, 0, 1.0]])


def _write(path, data, affine=None, dtype=None):
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    nib.save(img, str(path))
    return str(path)


def _brain_like(shape=(10, 12, 9)):
    vol = np.zeros(shape, np.float32)
    vol[2:-2, 3:-3, 2:-2] = RNG.uniform(10, 100, size=vol[2:-2, 3:-3, 2:-2].shape)
    return vol


# --------------------------------------------------------------------------- load_nifti


def test_load_transposes_ras_to_axial_first(tmp_path):
    data = RNG.random((4, 5, 6)).astype(np.float32)
    vol = load_nifti(_write(tmp_path / "a.nii.gz", data))
    assert vol.shape == (6, 5, 4) and vol.dtype == np.float32
    np.testing.assert_array_equal(vol[2], data[:, :, 2].T)  # axial slice z=2


def test_load_reorients_non_ras_scan(tmp_path):
    data = RNG.random((4, 5, 6)).astype(np.float32)
    path = _write(tmp_path / "lsa.nii", data, _lsa_affine())
    vol, img = load_nifti(path, return_image=True)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    # RAS of an LSA scan: x flipped, A <- stored z, S <- stored y.
    expected = data[::-1, :, :].transpose(0, 2, 1)  # (R, A, S)
    np.testing.assert_array_equal(vol, expected.transpose(2, 1, 0))
    raw = load_nifti(path, reorient=False)
    np.testing.assert_array_equal(raw, data.transpose(2, 1, 0))


def test_load_accepts_images_and_singleton_4d(tmp_path):
    data = RNG.random((3, 4, 5, 1)).astype(np.float32)
    img = nib.Nifti1Image(data, np.eye(4))
    assert load_nifti(img).shape == (5, 4, 3)
    assert load_nifti(_write(tmp_path / "s.nii.gz", data)).shape == (5, 4, 3)


def test_load_applies_scaling(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(2.0, 1.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, path)
    vol = load_nifti(path)
    assert vol.max() == 2.0 * 23 + 1.0


def test_load_errors(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    with pytest.raises(FileNotFoundError, match=r"nope.nii.gz"):
        load_nifti(missing)
    txt = tmp_path / "scan.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match=r"not a NIfTI"):
        load_nifti(txt)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match=r"broken.nii.gz"):
        load_nifti(bad)
    four = _write(tmp_path / "4d.nii.gz", np.zeros((3, 3, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"4-D"):
        load_nifti(four)
    nan = np.ones((3, 3, 3), np.float32)
    nan[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*nan.nii.gz"):
        load_nifti(_write(tmp_path / "nan.nii.gz", nan))
    with pytest.raises(TypeError):
        load_nifti(42)


# --------------------------------------------------------------------------- masks


def test_foreground_mask_methods():
    vol = np.zeros((20, 20, 20))
    vol[5:15, 5:15, 5:15] = 100.0
    vol[9:11, 9:11, 9:11] = 0.0  # an enclosed hole
    nonzero = foreground_mask(vol)
    assert nonzero.sum() == 1000 - 8
    assert foreground_mask(vol, fill_holes=True).sum() == 1000
    noisy = vol + np.random.default_rng(1).normal(0, 5, size=vol.shape)
    noisy[0, 0, 0] = 300.0  # a bright speck far from the brain
    otsu = foreground_mask(noisy, "otsu")
    np.testing.assert_array_equal(otsu, foreground_mask(vol, fill_holes=True))
    assert foreground_mask(vol, "threshold", threshold=50).sum() == 1000 - 8 + 8  # filled
    with pytest.raises(ValueError, match=r"threshold"):
        foreground_mask(vol, "threshold")
    with pytest.raises(ValueError, match=r"method"):
        foreground_mask(vol, "magic")
    assert not foreground_mask(np.ones((4, 4)), "otsu").any()  # constant: nothing to split


# --------------------------------------------------------------------------- normalise


def test_normalize_range_background_and_percentiles():
    vol = _brain_like()
    mask = vol != 0
    out = normalize_intensity(vol)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert (out[~mask] == 0).all()
    vals = vol[mask]
    lo, hi = np.percentile(vals, [0, 98])
    above = vol >= hi
    assert np.allclose(out[above & mask], 1.0)  # the top 2 % are clipped to 1
    assert 0.015 < (out[mask] == 1.0).mean() < 0.03
    assert out[vol == lo] == pytest.approx(0.0)
    inner = mask & (vol < hi)
    np.testing.assert_allclose(out[inner], (vol[inner] - lo) / (hi - lo), rtol=1e-5)
    custom = normalize_intensity(vol, mask, percentiles=(10, 90))
    assert (custom[mask] == 0).mean() == pytest.approx(0.10, abs=0.01)


def test_normalize_edge_cases():
    vol = np.zeros((4, 4))
    vol[1:3, 1:3] = 7.0
    out = normalize_intensity(vol)
    assert set(np.unique(out)) == {0.0, 1.0}  # constant foreground maps to 1
    with pytest.raises(ValueError, match=r"empty"):
        normalize_intensity(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"percentiles"):
        normalize_intensity(vol, percentiles=(50, 10))
    with pytest.raises(ValueError, match=r"shape"):
        normalize_intensity(vol, np.ones((2, 2), bool))


# --------------------------------------------------------------------------- crop


@pytest.mark.parametrize("margin", [0, 1, 3, (0, 2, 5)])
def test_crop_uncrop_identity(margin):
    vol = _brain_like((11, 13, 9))
    cropped, rec = crop_to_foreground(vol, margin=margin)
    assert isinstance(rec, CropRecord) and cropped.shape == rec.cropped_shape
    np.testing.assert_array_equal(uncrop(cropped, rec), vol)
    assert cropped.sum() == pytest.approx(vol.sum())


def test_crop_margin_clipped_and_errors():
    vol = np.zeros((6, 6))
    vol[0, 0] = 1
    cropped, rec = crop_to_foreground(vol, margin=2)
    assert cropped.shape == (3, 3) and rec.start == (0, 0)
    with pytest.raises(ValueError, match=r"empty"):
        crop_to_foreground(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"does not match"):
        uncrop(np.zeros((2, 2)), rec)


@pytest.mark.parametrize("target", [(5, 5, 5), (12, 3, 9), (20, 20, 1)])
def test_center_crop_or_pad_roundtrip(target):
    vol = RNG.random((8, 6, 9))
    out, rec = center_crop_or_pad(vol, target)
    assert out.shape == target
    back = uncrop(out, rec)
    kept = tuple(slice(a, b) for a, b in zip(rec.start, rec.stop))
    np.testing.assert_array_equal(back[kept], vol[kept])
    assert back.shape == vol.shape


# --------------------------------------------------------------------------- save_map


@pytest.mark.parametrize("affine", [None, "lsa"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_save_map_roundtrip_geometry(tmp_path, affine, suffix):
    aff = _lsa_affine() if affine == "lsa" else np.diag([1.5, 1.5, 2.0, 1.0])
    data = RNG.random((7, 8, 5)).astype(np.float32) * 100
    ref_path = _write(tmp_path / f"scan{suffix}", data.astype(np.int16), aff, np.int16)
    ref = nib.load(ref_path)
    vol = load_nifti(ref_path)
    out = save_map(vol * 0.5, ref_path, tmp_path / f"map{suffix}")
    img = nib.load(out)
    assert img.shape == ref.shape
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, ref.affine)
    for key in ("pixdim", "qform_code", "sform_code", "xyzt_units", "srow_x", "quatern_b"):
        np.testing.assert_array_equal(img.header[key], ref.header[key])
    np.testing.assert_allclose(img.get_fdata(), ref.get_fdata() * 0.5, rtol=1e-6)
    # reload through the loader: identical array
    np.testing.assert_allclose(load_nifti(out), vol * 0.5, rtol=1e-6)


def test_save_map_not_reoriented_and_cropped(tmp_path):
    data = _brain_like((9, 10, 11))
    ref_path = _write(tmp_path / "scan.nii.gz", data, _lsa_affine())
    raw = load_nifti(ref_path, reorient=False)
    out = save_map(raw, ref_path, tmp_path / "raw.nii.gz", reoriented=False)
    np.testing.assert_array_equal(nib.load(out).get_fdata(), data)
    vol = load_nifti(ref_path)
    cropped, rec = crop_to_foreground(vol, margin=1)
    out = save_map(cropped, ref_path, tmp_path / "crop.nii.gz", crop_record=rec)
    np.testing.assert_array_equal(nib.load(out).get_fdata(), data)


def test_save_map_singleton_4d_reference(tmp_path):
    data = RNG.random((3, 4, 5, 1)).astype(np.float32)
    ref = nib.Nifti1Image(data, np.eye(4))
    out = save_map(load_nifti(ref), ref, tmp_path / "m.nii.gz")
    assert nib.load(out).shape == (3, 4, 5, 1)


def test_save_map_errors(tmp_path):
    ref = nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=r"expected \(Z, Y, X\) = \(5, 4, 3\)"):
        save_map(np.zeros((3, 4, 5)), ref, tmp_path / "m.nii.gz")
    with pytest.raises(ValueError, match=r".nii"):
        save_map(np.zeros((5, 4, 3)), ref, tmp_path / "m.png")
    with pytest.raises(FileNotFoundError, match=r"missing"):
        save_map(np.zeros((5, 4, 3)), ref, tmp_path / "missing" / "m.nii.gz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_save_map_is_atomic(tmp_path, monkeypatch, existing):
    ref = nib.Nifti1Image(np.ones((3, 4, 5), np.float32), np.eye(4))
    target = tmp_path / "map.nii.gz"
    if existing:
        save_map(np.full((5, 4, 3), 7.0), ref, target)
        before = target.read_bytes()

    def broken_write(img, path):
        with open(path, "wb") as fh:  # half a file, then the disk "fills up"
            fh.write(b"\x1f\x8b partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(io, "_write_image", broken_write)
    with pytest.raises(OSError, match=r"No space"):
        save_map(np.zeros((5, 4, 3)), ref, target)
    if existing:
        assert target.read_bytes() == before
        assert np.all(nib.load(target).get_fdata() == 7.0)
    else:
        assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == (["map.nii.gz"] if existing else [])


def test_save_map_file_permissions_follow_umask(tmp_path):
    ref = nib.Nifti1Image(np.ones((3, 4, 5), np.float32), np.eye(4))
    out = save_map(np.zeros((5, 4, 3)), ref, tmp_path / "m.nii")
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)


# --------------------------------------------------------------------------- NiftiLoader


class _MeanDetector(BaseEstimator):
    """A trivial detector: distance of a scan's mean intensity to the training mean."""

    def fit(self, X, y=None):
        assert X.ndim == 4 and X.dtype == np.float32
        self.mean_ = float(X.mean())
        return self

    def score_samples(self, X):
        return -np.abs(X.mean(axis=(1, 2, 3)) - self.mean_)


def _scans(tmp_path, n=3, shape=(6, 7, 8)):
    paths = []
    base = _brain_like(shape)
    for i in range(n):
        vol = base * (i + 1)
        paths.append(_write(tmp_path / f"s{i}.nii.gz", vol))
    return paths


def test_loader_transform_and_pipeline(tmp_path):
    paths = _scans(tmp_path)
    X = NiftiLoader().fit_transform(paths)
    assert X.shape == (3, 8, 7, 6) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    # per-volume normalisation removes the global scale differences
    np.testing.assert_allclose(X[0], X[2], atol=1e-6)
    pipe = make_pipeline(NiftiLoader(), _MeanDetector()).fit(paths)
    scores = pipe.score_samples(paths)
    assert scores.shape == (3,)
    raw = NiftiLoader(normalize=False).transform(paths)
    assert raw.max() > 100


def test_loader_is_stateless(tmp_path):
    paths = _scans(tmp_path, n=1)
    loader = NiftiLoader()
    assert loader.__sklearn_tags__().requires_fit is False
    assert loader.transform(paths).shape[0] == 1  # no fit needed
    assert loader.fit(["not/read/by/fit.nii.gz"]) is loader
    assert vars(loader) == vars(NiftiLoader())  # fit learned nothing
    clone(NiftiLoader(target_shape=(4, 4, 4)))


def test_loader_shape_mismatch_names_files(tmp_path):
    paths = _scans(tmp_path, n=2)
    odd = _write(tmp_path / "odd.nii.gz", _brain_like((9, 9, 9)))
    with pytest.raises(ValueError, match=r"odd\.nii\.gz") as err:
        NiftiLoader().transform([*paths, odd])
    assert "(9, 9, 9)" in str(err.value) and "(8, 7, 6)" in str(err.value)
    X = NiftiLoader(target_shape=(6, 6, 6)).transform([*paths, odd])
    assert X.shape == (3, 6, 6, 6)


def test_loader_input_errors(tmp_path):
    with pytest.raises(TypeError, match=r"single"):
        NiftiLoader().fit("one.nii.gz")
    with pytest.raises(ValueError, match=r"empty"):
        NiftiLoader().transform([])
    with pytest.raises(TypeError, match=r"ndarray"):
        NiftiLoader().transform([np.zeros((3, 3, 3))])
    with pytest.raises(ValueError, match=r"percentiles"):
        NiftiLoader(percentiles=(90, 10)).fit(["a.nii"])
    with pytest.raises(FileNotFoundError, match=r"gone.nii"):
        NiftiLoader().transform([str(tmp_path / "gone.nii")])
    blank = _write(tmp_path / "blank.nii.gz", np.zeros((3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"blank.nii.gz"):
        NiftiLoader().transform([blank])


def test_save_map_ignores_reference_scaling_and_keeps_nifti2(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    ref = nib.Nifti1Image(data, np.eye(4))
    ref.header.set_slope_inter(3.0, -2.0)  # the scan is scaled; the map must not be
    ref_path = tmp_path / "scaled.nii.gz"
    nib.save(ref, ref_path)
    values = np.linspace(0, 1, 60, dtype=np.float32).reshape(5, 4, 3)
    out = nib.load(save_map(values, ref_path, tmp_path / "m.nii.gz"))
    np.testing.assert_allclose(load_nifti(out), values, rtol=1e-6)
    ni2 = nib.Nifti2Image(data.astype(np.float32), np.eye(4))
    out2 = nib.load(save_map(values, ni2, tmp_path / "m2.nii"))
    assert isinstance(out2, nib.Nifti2Image)
