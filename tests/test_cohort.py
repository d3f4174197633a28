"""Tests for the synthetic brain cohort built from the shipped real anatomy."""

import ast
import inspect
from importlib import resources

import numpy as np
import pytest

from disyre_sk.datasets import (
    _cohort,
    _lesions,
    cohort_slices,
    load_brain_anatomy,
    make_brain_cohort,
)

FAST = {"voxel_size": 4.0}


@pytest.fixture(scope="module")
def cohort():
    return make_brain_cohort(6, 10, random_state=0, **FAST)


# --------------------------------------------------------------------------- package data


def test_package_data_small_and_licensed():
    data = resources.files("disyre_sk").joinpath("data")
    names = {p.name for p in data.iterdir()}
    assert {"brain_anatomy_2mm.npz", "README.md", "LICENSE_nilearn.txt"} <= names
    assert {"COPYRIGHT_debian_mricron.txt", "COPYRIGHT_debian_insighttoolkit5.txt"} <= names
    total = sum(p.stat().st_size for p in data.iterdir() if p.is_file())
    assert total < 2_500_000
    readme = data.joinpath("README.md").read_text()
    assert "Colin27" in readme and "MNI" in readme and "BSD" in readme
    assert "ITK" in readme and "Apache-2.0" in readme


def test_load_brain_anatomy():
    anat = load_brain_anatomy()
    n, z, y, x = anat.t1.shape
    assert (
        n == 3
        and anat.names == ("mni", "colin", "itk")
        and all(80 <= s <= 100 for s in (z, y))
        and 70 <= x <= 100
    )
    brain = anat.brain_mask
    total = anat.gm + anat.wm + anat.csf
    np.testing.assert_allclose(total[brain], 1.0, atol=1e-5)
    assert (total[~brain] == 0).all() and (anat.t1[~brain] == 0).all()
    assert 0.2 < brain.mean() < 0.6
    np.testing.assert_allclose(np.diag(anat.affine)[:3], 2.0)
    # the bases are real, different brains, both roughly centred on MNI space
    assert not np.allclose(anat.gm[0], anat.gm[1])
    centre = anat.affine @ np.r_[np.argwhere(brain[0]).mean(0)[::-1], 1.0]
    assert np.all(np.abs(centre[:3]) < 25)
    anat.t1[:] = 0  # a copy: the cache is untouched
    assert load_brain_anatomy().t1.max() > 0.5
    small = load_brain_anatomy(4.0)
    assert small.t1.shape[1:] == tuple(round(s / 2) for s in (z, y, x))
    np.testing.assert_allclose(np.diag(small.affine)[:3], 4.0, rtol=0.03)
    with pytest.raises(ValueError, match="voxel_size"):
        load_brain_anatomy(1.0)


# --------------------------------------------------------------------------- cohort


def test_cohort_shapes_ranges(cohort):
    shape = load_brain_anatomy(4.0).t1.shape[1:]
    assert cohort.X_train.shape == (6, *shape) and cohort.X_train.dtype == np.float32
    assert cohort.X_test.shape == (10, *shape) and cohort.masks_test.dtype == bool
    assert cohort.masks_test.shape == cohort.brain_masks_test.shape == cohort.X_test.shape
    for X, B in (
        (cohort.X_train, cohort.brain_masks_train),
        (cohort.X_test, cohort.brain_masks_test),
    ):
        assert X.min() == 0.0 and X.max() == 1.0
        assert (X[~B] == 0).all()
        for x, b in zip(X, B):  # per-volume 0-98th percentile normalisation
            assert np.percentile(x[b], 98) == pytest.approx(1.0, abs=1e-4)
            assert x[b].min() == 0.0
    assert len(cohort.families_test) == 10 and cohort.voxel_size == 4.0
    assert cohort.contrast == "t2" and "Colin27" in cohort.description
    assert cohort.DESCR == cohort.description


def test_cohort_families_and_masks(cohort):
    fam = np.array(cohort.families_test)
    assert set(fam) == {"healthy", *_lesions.FAMILIES}
    assert (fam == "healthy").sum() == round(10 / 3)
    for f, m, b in zip(fam, cohort.masks_test, cohort.brain_masks_test):
        if f == "healthy":
            assert not m.any()
        else:
            assert m.sum() > 0 and not (m & ~b).any()  # lesions lie inside the brain
    assert set(cohort.bases_train) == {"mni", "colin"}


def test_every_family_on_both_bases_and_contrasts():
    for contrast in ("t2", "flair", "t1"):
        c = make_brain_cohort(0, 8, contrast=contrast, voxel_size=6.0, healthy_test_fraction=0)
        pairs = set(zip(c.families_test, c.bases_test))
        assert pairs == {(f, b) for f in _lesions.FAMILIES for b in ("mni", "colin")}
        assert all(m.any() for m in c.masks_test)


def test_held_out_anatomy_protocol():
    c = make_brain_cohort(
        4, 6, voxel_size=6.0, train_bases=("mni", "colin"), test_bases=("itk",), random_state=0
    )
    assert set(c.bases_train) == {"mni", "colin"} and set(c.bases_test) == {"itk"}
    assert c.held_out_anatomy and "held-out anatomy" in c.DESCR
    assert any(m.any() for m in c.masks_test)
    # Each real brain is held out in turn: the test brain never trains.
    for held in _cohort.BASES:
        rest = tuple(b for b in _cohort.BASES if b != held)
        fold = make_brain_cohort(3, 3, voxel_size=6.0, train_bases=rest, test_bases=held)
        assert held not in fold.bases_train and set(fold.bases_test) == {held}
    same = make_brain_cohort(2, 2, voxel_size=6.0, random_state=0)
    assert not same.held_out_anatomy


def test_held_out_anatomy_differs_from_training_brains():
    """The third brain is a different individual: its aligned brain mask overlaps the
    MNI template's well (the affine fit worked) but is not the same shape."""
    anat = load_brain_anatomy(voxel_size=4.0)
    mni, _, itk = anat.brain_mask
    dice = 2 * (mni & itk).sum() / (mni.sum() + itk.sum())
    assert 0.85 < dice < 0.99
    assert not np.allclose(anat.t1[2], anat.t1[1], atol=0.1)


@pytest.mark.parametrize("bad", [(), ("mni", "mni"), ("brainweb",), ["mni", 3]])
def test_bases_checked(bad):
    with pytest.raises(ValueError, match="train_bases"):
        make_brain_cohort(2, 2, voxel_size=6.0, train_bases=bad)


def test_cohort_seeded():
    a = make_brain_cohort(2, 4, random_state=3, voxel_size=6.0)
    b = make_brain_cohort(2, 4, random_state=3, voxel_size=6.0)
    c = make_brain_cohort(2, 4, random_state=4, voxel_size=6.0)
    for key in ("X_train", "X_test", "masks_test"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a.families_test == b.families_test
    assert not np.array_equal(a.X_train, c.X_train)
    assert not np.array_equal(a.X_test, c.X_test)


def test_bias_field_strength_changes_only_the_bias_field():
    kw = dict(n_healthy=2, n_test=4, voxel_size=6.0, random_state=5)
    default = make_brain_cohort(**kw)
    np.testing.assert_array_equal(make_brain_cohort(**kw, bias_field=1.0).X_test, default.X_test)
    flat = make_brain_cohort(**kw, bias_field=0.0)
    strong = make_brain_cohort(**kw, bias_field=2.0)
    assert flat.bias_field == 0.0 and "no bias field" in flat.description
    # The same subjects and lesions: only the intensities move.
    for c in (flat, strong):
        assert c.families_test == default.families_test
        np.testing.assert_array_equal(c.masks_test, default.masks_test)
        np.testing.assert_array_equal(c.brain_masks_train, default.brain_masks_train)
        assert not np.array_equal(c.X_train, default.X_train)

    def slow_variation(x, brain):
        # Spread of the image's log over the brain after heavy smoothing: the bias field.
        from scipy import ndimage as ndi

        w = ndi.gaussian_filter(brain.astype(float), 3)
        low = ndi.gaussian_filter(np.log(np.maximum(x, 0.05)) * brain, 3) / np.maximum(w, 1e-3)
        return float(np.std(low[brain & (w > 0.5)]))

    spreads = {
        name: np.mean([slow_variation(x, b) for x, b in zip(c.X_train, c.brain_masks_train)])
        for name, c in (("flat", flat), ("default", default), ("strong", strong))
    }
    assert spreads["flat"] < spreads["default"] < spreads["strong"]


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "strong"])
def test_bias_field_refused(bad):
    with pytest.raises((ValueError, TypeError), match="bias_field"):
        make_brain_cohort(1, 1, voxel_size=6.0, bias_field=bad)


def test_no_two_subjects_alike(cohort):
    X = cohort.X_train
    for i in range(len(X)):
        for j in range(i + 1, len(X)):
            assert np.abs(X[i] - X[j]).mean() > 0.02


def test_default_resolution_shape():
    c = make_brain_cohort(1, 1, healthy_test_fraction=1.0, random_state=0)
    assert c.X_train.shape[1:] == load_brain_anatomy().t1.shape[1:]
    assert all(80 <= s <= 100 for s in c.X_train.shape[1:3])
    c3 = make_brain_cohort(1, 0, voxel_size=3.0, random_state=0)
    ratio = np.divide(c.X_train.shape[1:], c3.X_train.shape[1:])
    np.testing.assert_allclose(ratio, 1.5, rtol=0.05)


def test_cohort_argument_errors():
    with pytest.raises(ValueError, match="contrast"):
        make_brain_cohort(1, 1, contrast="dwi")
    with pytest.raises(ValueError, match="families"):
        make_brain_cohort(1, 1, families=("glioma",))
    with pytest.raises(ValueError, match="n_healthy"):
        make_brain_cohort(-1, 1)
    with pytest.raises(ValueError, match="healthy_test_fraction"):
        make_brain_cohort(1, 1, healthy_test_fraction=2.0)
    with pytest.raises(ValueError, match="voxel_size"):
        make_brain_cohort(1, 1, voxel_size=20)
    empty = make_brain_cohort(0, 0, **FAST)
    assert empty.X_train.shape[0] == 0 and empty.X_test.shape[0] == 0


# --------------------------------------------------------------------------- lesions


@pytest.mark.parametrize("contrast", ["t2", "flair", "t1"])
@pytest.mark.parametrize("family", _lesions.FAMILIES)
def test_lesion_changes_only_its_mask(family, contrast):
    """Render one drawn subject with and without a lesion: the clean-space difference is
    exactly confined to the mask (plus, for tumours only, the mass-effect region)."""
    vs = 4.0
    anat = _cohort._anatomy(vs)
    rng = np.random.default_rng(7)
    for base in _cohort.BASES:
        params = _cohort._draw_subject(rng, base, contrast, anat)
        healthy = _cohort._render_subject(params, vs, None, details=True)
        lesioned = _cohort._render_subject(params, vs, family, details=True)
        mask, moved = lesioned["mask"], lesioned["moved"]
        assert mask.any() and not (mask & moved).any()
        if family != "tumour":
            assert not moved.any()
            np.testing.assert_array_equal(healthy["brain"], lesioned["brain"])
        else:
            assert moved.any()  # mass effect displaced tissue outside the lesion
            assert not np.array_equal(healthy["raw"][moved], lesioned["raw"][moved])
        outside = ~(mask | moved)
        np.testing.assert_array_equal(healthy["raw"][outside], lesioned["raw"][outside])
        diff = np.abs(healthy["raw"] - lesioned["raw"])[mask]
        scale = np.percentile(healthy["raw"][healthy["brain"]], 98)
        assert np.mean(diff / scale > 0.005) > 0.7  # nearly every mask voxel changed
        assert diff.mean() / scale > 0.02
        # after normalisation, outside the lesion only a global rescaling remains
        out = outside & lesioned["brain"]
        r = np.corrcoef(healthy["image"][out], lesioned["image"][out])[0, 1]
        assert r > 0.97


def test_lesion_sign_by_family():
    """Hyperintense families brighten T2, cavities darken it."""
    vs = 4.0
    anat = _cohort._anatomy(vs)
    rng = np.random.default_rng(11)
    for family, sign in (("stroke", 1), ("foci", 1), ("cavity", -1), ("tumour", 1)):
        params = _cohort._draw_subject(rng, "mni", "t2", anat)
        h = _cohort._render_subject(params, vs, None, details=True)
        les = _cohort._render_subject(params, vs, family, details=True)
        m = les["mask"]
        assert sign * (les["raw"][m].mean() - h["raw"][m].mean()) > 0


def test_healthy_and_lesioned_look_alike_outside_lesions():
    c = make_brain_cohort(0, 24, random_state=1, **FAST)
    fam = np.array(c.families_test)
    stats = np.array(
        [
            (x[b & ~m].mean(), x[b & ~m].std())
            for x, m, b in zip(c.X_test, c.masks_test, c.brain_masks_test)
        ]
    )
    healthy = stats[fam == "healthy"].mean(0)
    for f in _lesions.FAMILIES:
        np.testing.assert_allclose(stats[fam == f].mean(0), healthy, atol=0.05)


def test_lesions_do_not_use_training_corruption():
    for module in (_cohort, _lesions):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "corruption" not in (node.module or "")
                # ``from .. import corruption`` names the package only in its aliases.
                assert not any("corruption" in a.name for a in node.names)
            elif isinstance(node, ast.Import):
                assert not any("corruption" in a.name for a in node.names)


# --------------------------------------------------------------------------- slices


def test_cohort_slices(cohort):
    s = cohort_slices(cohort.X_test, cohort.masks_test)
    n, z, y, x = cohort.X_test.shape
    assert s.images.shape[1:] == (y, x) and s.masks.shape == s.images.shape
    assert 0 < len(s.images) < n * z
    assert ((s.images != 0).mean(axis=(1, 2)) >= 0.05).all()
    np.testing.assert_array_equal(s.images[0], cohort.X_test[s.volume_index[0], s.slice_index[0]])
    assert s.masks.sum() <= cohort.masks_test.sum()
    sag = cohort_slices(cohort.X_test, axis=2, min_foreground=0.0)
    assert sag.images.shape == (n * x, z, y) and sag.masks is None
    with pytest.raises(ValueError, match="axis"):
        cohort_slices(cohort.X_test, axis=3)
    with pytest.raises(ValueError, match="volumes"):
        cohort_slices(cohort.X_test[0])


def test_infarct_is_fluid_open_to_the_surface_and_only_on_request():
    from scipy import ndimage as ndi

    default = make_brain_cohort(0, 6, voxel_size=6.0, random_state=0)
    assert "infarct" not in default.families_test
    c = make_brain_cohort(
        0,
        3,
        voxel_size=4.0,
        contrast="t1",
        families=("infarct",),
        healthy_test_fraction=0,
        random_state=0,
    )
    assert c.families_test == ["infarct"] * 3
    for x, mask, brain in zip(c.X_test, c.masks_test, c.brain_masks_test):
        assert mask.any() and not (mask & ~brain).any()
        # Fluid: darker than the tissue around it on T1, as CSF is.
        ring = ndi.binary_dilation(mask, iterations=2) & brain & ~mask
        assert x[mask].mean() < x[ring].mean()
        # It reaches the brain's outer layer, where sulcal CSF is.
        rim = brain & ~ndi.binary_erosion(brain, iterations=2)
        assert (mask & rim).any()
