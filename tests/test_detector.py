import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from toy import smooth_brains

from disyre_sk import DISYREDetector, _data
from disyre_sk._demo import QUICK
from disyre_sk._engine.persist import ModelFileError
from disyre_sk._engine.reference import location_reference, reference_sums

TINY = dict(
    patch_size=16,
    widths=(8, 16),
    n_steps=4,
    batch_size=4,
    stride=8,
    severities=(0.25, 0.5),
    random_state=0,
)


# The demo's CPU recipe, shorter: many small patches, whole-slice maps, light smoothing,
# residuals normalised per intensity.
E2E = dict(QUICK["detector"], n_steps=150, batch_size=32, warmup_steps=15, random_state=0)


@pytest.fixture(scope="module")
def healthy():
    return smooth_brains(12, size=16, seed=0)


@pytest.fixture(scope="module")
def fitted(healthy):
    return DISYREDetector(**TINY).fit(healthy)


def test_init_only_stores():
    det = DISYREDetector(patch_size=7, device="nonsense")  # invalid but not checked yet
    assert det.patch_size == 7 and det.device == "nonsense"
    assert not hasattr(det, "network_")


def test_fit_returns_self_and_learned_state(healthy):
    det = DISYREDetector(**TINY)
    assert det.fit(healthy) is det
    for name in (
        "network_",
        "device_",
        "history_",
        "offset_",
        "image_shape_",
        "n_features_in_",
        "intensity_range_",
    ):
        assert hasattr(det, name)
    assert det.device == "auto" and det.device_.type in ("cpu", "cuda")
    assert det.image_shape_ == (16, 16) and det.n_features_in_ == 256
    assert len(det.history_["loss"]) == TINY["n_steps"]
    assert all(np.isfinite(det.history_["loss"]))


def test_map_contract(fitted, healthy):
    maps = fitted.decision_map(healthy[:3])
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert isinstance(maps, np.ndarray)
    assert np.all(maps >= 0)
    assert np.all(maps[healthy[:3] == 0] == 0)
    assert np.any(maps > 0)


def test_signs_agree(fitted, healthy):
    maps = fitted.decision_map(healthy)
    scores = fitted.score_samples(healthy)
    assert scores.shape == (len(healthy),)
    assert np.all(scores <= 0)
    # The most anomalous map has the lowest (most abnormal) score.
    top = [
        np.sort(m[h > 0])[-max(1, int(np.ceil(0.01 * (h > 0).sum()))) :].mean()
        for m, h in zip(maps, healthy)
    ]
    np.testing.assert_allclose(-scores, top, rtol=1e-5)
    np.testing.assert_allclose(fitted.decision_function(healthy), scores - fitted.offset_)
    labels = fitted.predict(healthy)
    assert set(labels) <= {-1, 1}
    np.testing.assert_array_equal(labels == -1, fitted.decision_function(healthy) < 0)


@pytest.mark.parametrize("reduction", ["mean", "max", "topk"])
def test_score_reductions(healthy, reduction):
    det = DISYREDetector(**TINY, score_reduction=reduction).fit(healthy)
    maps = det.decision_map(healthy[:2])
    fg = healthy[:2] > 0
    top = [np.sort(m[f])[-int(np.ceil(0.01 * f.sum())) :].mean() for m, f in zip(maps, fg)]
    expected = {
        "mean": [m[f].mean() for m, f in zip(maps, fg)],
        "max": [m[f].max() for m, f in zip(maps, fg)],
        "topk": top,
    }[reduction]
    np.testing.assert_allclose(-det.score_samples(healthy[:2]), expected, rtol=1e-5)
    both_maps, both_scores = det._map_and_score(healthy[:2])
    np.testing.assert_array_equal(both_maps, maps)
    np.testing.assert_allclose(-both_scores, expected, rtol=1e-5)


def test_volumes_and_slice_axis(healthy):
    vols = np.stack([healthy[:4], healthy[4:8]])  # (2, 4, 16, 16)
    for axis in (0, 1, 2):
        vol = np.moveaxis(vols, 1, 1 + axis) if axis else vols
        det = DISYREDetector(**TINY, slice_axis=axis).fit(vol)
        maps = det.decision_map(vol)
        assert maps.shape == vol.shape
        assert np.all(maps[vol == 0] == 0)
        assert det.score_samples(vol).shape == (2,)


def test_volume_maps_equal_slice_maps(healthy):
    vols = np.stack([healthy[:4], healthy[4:8]])
    det = DISYREDetector(**TINY).fit(vols)
    maps = det.decision_map(vols)
    # Every slice of a volume is mapped as a 2-D image; scaling is the learned one.
    restorer_maps = det._maps(vols.reshape(2, 4, 16, 16), vols > 0)
    np.testing.assert_allclose(maps, restorer_maps)


def test_table_input_with_and_without_image_shape(healthy):
    flat = healthy.reshape(len(healthy), -1)
    det = DISYREDetector(**TINY, image_shape=(16, 16)).fit(flat)
    maps = det.decision_map(flat[:2])
    assert maps.shape == (2, 256)
    ref = DISYREDetector(**TINY).fit(healthy).decision_map(healthy[:2])
    np.testing.assert_allclose(maps.reshape(2, 16, 16), ref, atol=1e-6)
    # Without image_shape, a table is n images of one row.
    table = np.random.default_rng(0).normal(size=(10, 5))
    det = DISYREDetector(patch_size=8, widths=(4, 8), n_steps=2, batch_size=4, random_state=0).fit(
        table
    )
    assert det.image_shape_ == (1, 5) and det.n_features_in_ == 5
    assert det.decision_map(table).shape == (10, 5)
    assert det.score_samples(table).shape == (10,)


def test_images_smaller_than_patch_and_odd_sizes():
    rng = np.random.default_rng(0)
    small = rng.uniform(0.1, 1, size=(6, 5, 11))
    det = DISYREDetector(
        patch_size=16, widths=(8, 16), n_steps=3, batch_size=4, random_state=0
    ).fit(small)
    assert det.decision_map(small).shape == (6, 5, 11)
    odd = rng.uniform(0.1, 1, size=(3, 37, 23))
    det = DISYREDetector(**TINY).fit(odd)
    maps = det.decision_map(odd)
    assert maps.shape == odd.shape and np.all(np.isfinite(maps))


def test_any_intensity_range(healthy):
    # Intensities in the thousands, offset: the learned scaling makes them equivalent.
    raw = np.where(healthy > 0, healthy * 3000 + 200, 0)
    det_raw = DISYREDetector(**TINY).fit(raw)
    assert det_raw.intensity_range_[1] > 1000
    maps = det_raw.decision_map(raw[:2])
    assert np.all(np.isfinite(maps)) and np.all(maps >= 0)
    negative = np.random.default_rng(0).normal(size=(8, 16, 16)) - 5
    det = DISYREDetector(**TINY).fit(negative)
    assert np.all(np.isfinite(det.score_samples(negative)))


def test_same_seed_same_maps_on_cpu(healthy):
    a = DISYREDetector(**TINY, device="cpu").fit(healthy).decision_map(healthy[:3])
    b = DISYREDetector(**TINY, device="cpu").fit(healthy).decision_map(healthy[:3])
    np.testing.assert_array_equal(a, b)
    c = DISYREDetector(**{**TINY, "random_state": 1}, device="cpu").fit(healthy)
    assert not np.array_equal(a, c.decision_map(healthy[:3]))


def test_global_torch_rng_untouched(healthy):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DISYREDetector(**TINY).fit(healthy)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


@pytest.mark.parametrize("mode", ["ensemble", "multistep"])
@pytest.mark.parametrize("corruption", ["dag", "fpi", "gaussian"])
def test_modes_and_corruptions(healthy, mode, corruption):
    det = DISYREDetector(**TINY, inference=mode, corruption=corruption).fit(healthy)
    maps = det.decision_map(healthy[:2])
    assert maps.shape == (2, 16, 16) and np.all(np.isfinite(maps)) and np.all(maps >= 0)


def test_corruption_object(healthy):
    from disyre_sk.corruption import FPICorruption

    det = DISYREDetector(**TINY, corruption=FPICorruption()).fit(healthy)
    assert det.decision_map(healthy[:1]).shape == (1, 16, 16)


def test_contamination_sets_offset(healthy):
    det = DISYREDetector(**TINY, contamination=0.25).fit(healthy)
    assert (det.predict(healthy) == -1).sum() == pytest.approx(0.25 * len(healthy), abs=1)


@pytest.mark.parametrize(("size", "pick"), [(3, [0, 6, 11]), (0.25, [0, 6, 11]), (1, [0])])
def test_calibration_size_scores_evenly_spaced_samples_for_offset(fitted, healthy, size, pick):
    det = DISYREDetector(**TINY, calibration_size=size).fit(healthy)
    # The training and the maps are those of the default fit; only offset_ moves.
    np.testing.assert_array_equal(det.decision_map(healthy), fitted.decision_map(healthy))
    scores = det.score_samples(healthy[pick])
    assert det.offset_ == pytest.approx(float(np.percentile(scores, 1.0)))
    assert fitted.offset_ == pytest.approx(float(np.percentile(fitted.score_samples(healthy), 1)))


@pytest.mark.parametrize("size", [0, -1, 0.0, 1.5, "all"])
def test_calibration_size_refuses_what_is_not_a_count_or_fraction(healthy, size):
    with pytest.raises(ValueError, match="calibration_size"):
        DISYREDetector(**TINY, calibration_size=size).fit(healthy)


def test_clone_pipeline_gridsearch_joblib(healthy, tmp_path):
    det = DISYREDetector(**TINY)
    twin = clone(det)
    assert twin.get_params() == det.get_params() and not hasattr(twin, "network_")
    flat = healthy.reshape(len(healthy), -1)
    pipe = make_pipeline(
        FunctionTransformer(lambda x: x * 2.0), DISYREDetector(**TINY, image_shape=(16, 16))
    )
    pipe.fit(flat)
    assert pipe.predict(flat).shape == (len(flat),)
    assert pipe.score_samples(flat).shape == (len(flat),)

    def scorer(estimator, X, y=None):
        return float(np.mean(estimator.score_samples(X)))

    search = GridSearchCV(
        DISYREDetector(**TINY), {"corruption": ["dag", "fpi"]}, scoring=scorer, cv=2
    ).fit(healthy)
    # The search ranks the two settings by the scorer's mean over folds, and refits the best.
    means = search.cv_results_["mean_test_score"]
    assert means[0] != means[1]  # the two corruptions train different networks
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(means))]
    assert search.best_estimator_.corruption == search.best_params_["corruption"]
    det.fit(healthy)
    path = tmp_path / "det.joblib"
    joblib.dump(det, path)
    loaded = joblib.load(path)
    np.testing.assert_allclose(loaded.decision_map(healthy[:2]), det.decision_map(healthy[:2]))


def test_pickle_holds_cpu_weights(fitted, healthy):
    state = fitted.__getstate__()
    assert all(t.device.type == "cpu" for t in state["network_"]["state_dict"].values())
    # A detector pickled with a CUDA device loads on a CPU-only machine.
    fake = dict(state, device_=torch.device("cuda"), precision_="bf16")
    clone_ = DISYREDetector.__new__(DISYREDetector)
    if not torch.cuda.is_available():
        clone_.__setstate__(fake)
        assert clone_.device_.type == "cpu" and clone_.precision_ == "fp32"
        np.testing.assert_allclose(
            clone_.decision_map(healthy[:2]), fitted.decision_map(healthy[:2])
        )
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(
        restored.decision_map(healthy[:2]), fitted.decision_map(healthy[:2])
    )


def test_auto_precision_maps_in_fp32_and_bf16_is_kept_when_asked(fitted, healthy):
    det = pickle.loads(pickle.dumps(fitted))
    det.precision_ = "bf16"  # as a CUDA fit under 'auto' resolves it
    assert det.precision == "auto" and det._restorer().precision == "fp32"
    det.set_params(precision="bf16")
    assert det._restorer().precision == "bf16"
    det.set_params(precision="fp32")
    assert det._restorer().precision == "fp32"
    # bf16 autocast changes the maps on a CPU too: the setting reaches the network.
    bf16 = det.set_params(precision="bf16").decision_map(healthy[:2])
    assert not np.array_equal(bf16, fitted.decision_map(healthy[:2]))


@pytest.mark.gpu
def test_gpu_trained_pickle_loads_on_cpu(healthy):
    det = DISYREDetector(**TINY, device="cuda").fit(healthy)
    state = pickle.loads(pickle.dumps(det)).__getstate__()
    assert all(t.device.type == "cpu" for t in state["network_"]["state_dict"].values())
    cpu = DISYREDetector.__new__(DISYREDetector)
    cpu.__setstate__(dict(state, device_=torch.device("cpu"), precision_="fp32"))
    np.testing.assert_allclose(
        cpu.decision_map(healthy[:3]), det.decision_map(healthy[:3]), atol=2e-2
    )


@pytest.mark.gpu
@pytest.mark.parametrize("window_size, map_smoothing", [(None, 0.0), ("slice", 0.0), (None, 1.5)])
def test_cpu_and_gpu_maps_agree(healthy, window_size, map_smoothing):
    """Same weights on both devices: maps agree to 1e-4 in strict fp32, 5e-3 with
    TF32 convolutions (torch's default on CUDA) and 3e-2 in bf16."""
    det = DISYREDetector(
        **TINY,
        device="cuda",
        precision="fp32",
        window_size=window_size,
        map_smoothing=map_smoothing,
    )
    det.fit(healthy)
    cpu_det = pickle.loads(pickle.dumps(det))
    cpu_det.device_, cpu_det.network_ = torch.device("cpu"), cpu_det.network_.cpu()
    cpu = cpu_det.decision_map(healthy)
    tf32 = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = False
        strict = det.decision_map(healthy)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    default = det.decision_map(healthy)
    det.precision_ = "bf16"
    bf16 = det.decision_map(healthy)
    gaps = {
        k: float(np.abs(m - cpu).max())
        for k, m in [("fp32", strict), ("tf32", default), ("bf16", bf16)]
    }
    print(f"max |GPU - CPU| map difference ({window_size=}, {map_smoothing=}): {gaps}")
    assert gaps["fp32"] <= 1e-4
    assert gaps["tf32"] <= 5e-3
    assert gaps["bf16"] <= 3e-2
    assert np.all(bf16[healthy == 0] == 0)


# ---------------------------------------------------------------- bad input
def test_predict_before_fit(healthy):
    with pytest.raises(NotFittedError):
        DISYREDetector().decision_map(healthy)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((4, 16, 16), np.nan), "NaN"),
        (np.full((4, 16, 16), np.inf), "infinity"),
        (np.zeros((0, 16, 16)), "0 sample"),
        (np.zeros((4, 16, 16)), "no foreground"),
        (np.ones((2, 2, 2, 2, 2)), "shape"),
        (np.ones(5), "2D array"),
    ],
)
def test_bad_fit_input(bad, match):
    with pytest.raises(ValueError, match=match):
        DISYREDetector(**TINY).fit(bad)


def test_bad_predict_input(fitted, healthy):
    with pytest.raises(ValueError, match="shape"):
        fitted.decision_map(np.ones((2, 12, 16)))
    with pytest.raises(ValueError, match="dimensions"):
        fitted.decision_map(np.ones((2, 3, 16, 16)))
    bad = healthy[:2].copy()
    bad[0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.score_samples(bad)
    with pytest.raises(ValueError, match="no foreground"):
        fitted.decision_map(np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="different shapes"):
        fitted.decision_map([np.ones((16, 16)), np.ones((8, 8))])


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(patch_size=15), "multiple of 2"),
        (dict(severities=(0.0, 0.5)), "severity"),
        (dict(intensity_percentiles=(50, 10)), "percentiles"),
        (dict(device="nonsense-device"), "torch device"),
    ],
)
def test_bad_parameters(healthy, params, match):
    with pytest.raises(ValueError, match=match):
        DISYREDetector(**{**TINY, **params}).fit(healthy)


def test_cuda_requested_without_cuda(healthy):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(ValueError, match="CUDA"):
        DISYREDetector(**TINY, device="cuda").fit(healthy)


# ---------------------------------------------------------------- it works
@pytest.fixture(scope="module")
def unseen_brain_scores():
    """Trained on subjects of two real brains, mapped on a third (about a minute and a
    half on 2 cores): pixel AP and slice AUROC of DISYRE and of three simple maps."""
    from disyre_sk.datasets import make_brain_cohort
    from disyre_sk.metrics import (
        pixel_average_precision,
        sample_auroc,
        slice_labels,
        slice_scores,
    )

    c = make_brain_cohort(
        8, 9, voxel_size=4.0, train_bases=("mni", "itk"), test_bases=("colin",),
        random_state=0,
    )  # fmt: skip
    det = DISYREDetector(**E2E).fit(c.X_train)
    fg, masks = c.brain_masks_test, c.masks_test
    les = np.array([f != "healthy" for f in c.families_test])
    median = np.array([np.median(x[f]) for x, f in zip(c.X_test, fg)])[:, None, None, None]
    maps = {
        "disyre": det.decision_map(c.X_test),
        "intensity": c.X_test * fg,
        "two-sided": np.abs(c.X_test - median) * fg,
        "mean image": np.abs(c.X_test - c.X_train.mean(0)) * fg,
    }
    keep = fg.mean(axis=(2, 3)) >= 0.02
    ap, auroc = {}, {}
    for name, m in maps.items():
        ap[name] = pixel_average_precision(m[les], masks[les], fg[les])
        s = slice_scores(m, axis=1, reduction="topk", k=0.05, foreground=fg)
        auroc[name] = sample_auroc(s[keep], slice_labels(masks, axis=1)[keep])
    print("pixel AP", ap, "slice AUROC", auroc)
    return ap, auroc


BASELINES = ("intensity", "two-sided", "mean image")


@pytest.mark.slow
def test_pixel_ap_beats_simple_baselines_on_a_brain_it_never_saw(unseen_brain_scores):
    ap, _ = unseen_brain_scores
    for name in BASELINES:
        assert ap["disyre"] > 2 * ap[name], (name, ap)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known gap: at this test's size (4 mm voxels, a short training) DISYRE's slice "
    "AUROC on a brain it never saw does not lead intensity thresholding by 0.05 (run with "
    "-s to see both); at the demo's size it leads on every seed "
    "(benchmarks/results/demo_cpu.md) and reaches 0.85 on two seeds of three. Strict, "
    "so this test fails the day it passes and the marker must go",
)
def test_slice_auroc_beats_simple_baselines_on_a_brain_it_never_saw(unseen_brain_scores):
    _, auroc = unseen_brain_scores
    for name in BASELINES:
        assert auroc["disyre"] > auroc[name] + 0.05, (name, auroc)


def test_window_size_options(fitted, healthy):
    default = fitted.decision_map(healthy[:3])
    whole = clone(fitted).set_params(window_size="slice")
    # Inference settings apply at predict time: reuse the fitted state.
    whole.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    whole._layout = fitted._layout
    maps = whole.decision_map(healthy[:3])
    assert maps.shape == default.shape and np.all(maps[healthy[:3] == 0] == 0)
    fitted.set_params(window_size=32, stride=16)
    try:
        assert fitted.decision_map(healthy[:3]).shape == default.shape
    finally:
        fitted.set_params(window_size=None, stride=8)
    with pytest.raises(ValueError, match="window_size"):
        DISYREDetector(**{**TINY, "window_size": 15}).fit(healthy)


def test_inference_settings_change_without_refit(fitted, healthy):
    before = fitted.decision_map(healthy[:2])
    fitted.set_params(inference="multistep")
    try:
        after = fitted.decision_map(healthy[:2])
    finally:
        fitted.set_params(inference="ensemble")
    assert not np.allclose(before, after)


def test_stale_offset_warns(fitted, healthy):
    fitted.set_params(score_reduction="max")
    try:
        with pytest.warns(UserWarning, match="stale threshold"):
            fitted.predict(healthy[:2])
    finally:
        fitted.set_params(score_reduction="topk")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.predict(healthy[:2])


def test_map_smoothing_at_predict_time(fitted, healthy):
    x = healthy[:3]
    assert DISYREDetector().map_smoothing == 1.0  # one pixel unless asked otherwise
    original = fitted.map_smoothing
    try:
        fitted.set_params(map_smoothing=0.0)
        with pytest.warns(UserWarning, match="stale threshold"):
            fitted.predict(x)  # offset_ was set on maps smoothed by the default
        raw = fitted.decision_map(x)
        fitted.set_params(map_smoothing=1.5)
        smooth = fitted.decision_map(x)
    finally:
        fitted.set_params(map_smoothing=original)
    fg = x != 0
    assert smooth.shape == raw.shape and np.all(smooth[~fg] == 0)
    assert smooth[fg].std() < raw[fg].std()
    assert np.isclose(smooth[fg].mean(), raw[fg].mean(), rtol=0.2)
    for bad in (-1.0, float("nan"), "wide"):
        fitted.set_params(map_smoothing=bad)
        try:
            with pytest.raises(ValueError, match="map_smoothing"):
                fitted.decision_map(x)
        finally:
            fitted.set_params(map_smoothing=original)
    for bad in (-2, float("inf")):
        with pytest.raises(ValueError, match="map_smoothing"):
            DISYREDetector(**{**TINY, "map_smoothing": bad}).fit(healthy)


# ---------------------------------------------------------- smoothing across slices
def _across_by_hand(maps, support, sigma, axis):
    """The normalised convolution along one axis, written out with a dense kernel."""
    depth = maps.shape[1 + axis]
    idx = np.arange(depth)
    kernel = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)
    kernel[np.abs(idx[:, None] - idx[None, :]) > min(np.ceil(4 * sigma), depth - 1)] = 0
    m = np.moveaxis(np.where(support, maps, 0.0), 1 + axis, -1).astype(np.float64)
    w = np.moveaxis(support, 1 + axis, -1).astype(np.float64)
    out = (m @ kernel.T) / np.maximum(w @ kernel.T, 1e-12)
    return np.where(support, np.moveaxis(out, -1, 1 + axis), 0.0)


@pytest.mark.parametrize("axis", [0, 2])
def test_map_smoothing_across_averages_neighbouring_slices(healthy, axis):
    vols = np.stack([healthy[:6], healthy[6:12]])  # (2, 6, 16, 16)
    vols = np.moveaxis(vols, 1, 1 + axis)
    det = DISYREDetector(**TINY, slice_axis=axis).fit(vols)
    raw = det.decision_map(vols)
    det.set_params(map_smoothing_across=1.5)
    across = det.decision_map(vols)
    fg = vols != 0
    np.testing.assert_allclose(across, _across_by_hand(raw, fg, 1.5, axis), atol=1e-5)
    assert np.all(across[~fg] == 0)

    # Slice-to-slice differences shrink; the mean level stays.
    def step(m):
        return np.abs(np.diff(m, axis=1 + axis)).mean()

    assert step(across) < 0.7 * step(raw)
    assert np.isclose(across[fg].mean(), raw[fg].mean(), rtol=0.15)


def test_map_smoothing_across_keeps_the_eroded_rim_at_zero(healthy):
    vols = np.stack([healthy[:6], healthy[6:12]])
    det = DISYREDetector(**TINY, map_erosion=1).fit(vols)
    eroded = det.decision_map(vols)
    det.set_params(map_smoothing_across=2.0)
    across = det.decision_map(vols)
    # The rim that erosion zeroed neither takes values from the neighbouring slices'
    # interior nor pulls that interior down: it is left out of the convolution.
    cross = ndi.generate_binary_structure(2, 1)[None, None]
    support = ndi.binary_erosion(vols != 0, structure=cross, border_value=0)
    rim = (vols != 0) & ~support
    assert rim.any() and np.all(eroded[rim] == 0) and np.all(across[rim] == 0)
    np.testing.assert_allclose(across, _across_by_hand(eroded, support, 2.0, 0), atol=1e-5)


def test_map_smoothing_across_leaves_2d_images_alone(fitted, healthy):
    raw = fitted.decision_map(healthy[:4])
    fitted.set_params(map_smoothing_across=3.0)
    try:
        with pytest.warns(UserWarning, match="stale threshold"):
            fitted.predict(healthy[:4])  # a scoring setting: offset_ knows its value
        np.testing.assert_array_equal(fitted.decision_map(healthy[:4]), raw)
    finally:
        fitted.set_params(map_smoothing_across=0.0)
    for bad in (-1.0, float("inf"), float("nan")):
        fitted.set_params(map_smoothing_across=bad)
        try:
            with pytest.raises(ValueError, match="map_smoothing_across"):
                fitted.decision_map(healthy[:1])
        finally:
            fitted.set_params(map_smoothing_across=0.0)


def test_map_smoothing_across_enters_the_location_reference(healthy):
    vols = np.stack([healthy[:6], healthy[6:12], healthy[3:9]])
    plain = DISYREDetector(**TINY, map_standardization="location").fit(vols)
    smooth = DISYREDetector(**TINY, map_standardization="location", map_smoothing_across=2.0).fit(
        vols
    )
    # Same network (same seed); the reference is learned from the maps as they are mapped.
    assert not np.allclose(plain.location_mean_, smooth.location_mean_)
    raw = clone(smooth).set_params(map_standardization=None)
    raw.__dict__.update({k: v for k, v in vars(smooth).items() if k.endswith("_")})
    raw._layout = smooth._layout
    sums = reference_sums(raw.decision_map(vols), vols != 0)
    mean, _ = location_reference(sums)
    np.testing.assert_allclose(smooth.location_mean_, mean, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------- median filter
def test_map_median_filters_the_finished_map_at_predict_time(fitted, healthy):
    x = healthy[:3]
    assert DISYREDetector().map_median == 0  # off unless asked
    plain = fitted.decision_map(x)
    fitted.set_params(map_median=3)
    try:
        with pytest.warns(UserWarning, match="stale threshold"):
            fitted.predict(x)  # a scoring setting: offset_ knows its value
        filtered = fitted.decision_map(x)
    finally:
        fitted.set_params(map_median=0)
    fg = x != 0
    # 2-D images: a 3 x 3 median per image, the zeros outside the brain included.
    by_hand = np.stack([ndi.median_filter(m, size=3, mode="constant") for m in plain])
    np.testing.assert_allclose(filtered, np.where(fg, by_hand, 0.0), rtol=1e-6)
    assert np.all(filtered[~fg] == 0) and not np.allclose(filtered, plain)
    for bad in (2, 1, -3, 1.5, True, "3", 17):  # 17: wider than the 16-pixel images
        fitted.set_params(map_median=bad)
        try:
            with pytest.raises(ValueError, match="map_median"):
                fitted.decision_map(x)
        finally:
            fitted.set_params(map_median=0)
    with pytest.raises(ValueError, match="map_median"):
        DISYREDetector(**{**TINY, "map_median": 4}).fit(healthy)


def test_map_median_is_3d_on_volumes_and_removes_an_isolated_hot_voxel():
    maps = np.zeros((1, 5, 7, 7), np.float32)
    maps[0, 2, 6, 6] = 9.0  # one hot voxel
    maps[0, 1:4, 1:6, 1:6] = 1.0  # a 3 x 5 x 5 lesion
    fg = np.ones_like(maps, bool)
    fg[0, :, 0, :] = False
    out = _data.median_filter_maps(maps, fg, 3)
    by_hand = ndi.median_filter(maps[0], size=(3, 3, 3), mode="constant")
    np.testing.assert_array_equal(out[0], np.where(fg[0], by_hand, 0.0))
    assert out[0, 2, 6, 6] == 0.0 and out[0, 2, 3, 3] == 1.0  # spike gone, lesion kept
    assert _data.median_filter_maps(maps, fg, 0) is maps


def test_map_median_enters_the_threshold_with_location_standardisation(healthy):
    vols = np.stack([healthy[:6], healthy[6:12], healthy[3:9]])
    det = DISYREDetector(**TINY, map_standardization="location", map_median=3).fit(vols)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # offset_ was set on median-filtered maps
        scores = det.score_samples(vols)
    maps = det.decision_map(vols)
    expected = -_data.reduce_scores(maps, vols != 0, det.score_reduction, det.top_k)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


# ---------------------------------------------------------------- map normalisation
def test_map_normalization_learns_a_profile_and_divides_by_it(healthy, tmp_path):
    det = DISYREDetector(**TINY, map_normalization="intensity", map_smoothing=0.0).fit(healthy)
    profile = np.asarray(det.residual_profile_)
    assert profile.shape == (20,) and (profile > 0).all()
    normalised = det.decision_map(healthy[:3])
    raw = clone(det).set_params(map_normalization=None)
    raw.__dict__.update({k: v for k, v in vars(det).items() if k.endswith("_")})
    raw._layout = det._layout
    raw_maps = raw.decision_map(healthy[:3])
    # Windowed maps without smoothing: normalised = raw / profile[bin of the scaled pixel].
    scaled = np.clip(
        (healthy[:3] - det.intensity_range_[0])
        / (det.intensity_range_[1] - det.intensity_range_[0]),
        0,
        1,
    )
    bins = np.clip((scaled * 20).astype(int), 0, 19)
    fg = healthy[:3] != 0
    np.testing.assert_allclose(normalised[fg], raw_maps[fg] / profile[bins][fg], rtol=1e-5)
    # The profile travels with the model file.
    path = det.save(tmp_path / "m.disyre")
    loaded = DISYREDetector.load(path)
    assert loaded.residual_profile_ == det.residual_profile_
    np.testing.assert_allclose(loaded.decision_map(healthy[:3]), normalised, rtol=1e-6)


def test_map_normalization_without_profile_is_a_clear_error(fitted, healthy):
    assert fitted.residual_profile_ is None
    det = clone(fitted).set_params(map_normalization="intensity")
    det.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    det._layout = fitted._layout
    with pytest.raises(ValueError, match="Fit again with map_normalization='intensity'"):
        det.decision_map(healthy[:1])
    det.set_params(map_normalization="Intensity")
    with pytest.raises(ValueError, match="'map_normalization' parameter"):
        det.decision_map(healthy[:1])


def test_model_file_without_residual_profile_still_loads(fitted, healthy, tmp_path):
    """Files written before map normalisation existed carry no profile: None on load."""
    import json

    path = fitted.save(tmp_path / "old.disyre")
    payload = torch.load(path, weights_only=True)
    state = json.loads(payload["state"])
    del state["residual_profile_"], state["offset_settings"]
    payload["state"] = json.dumps(state)
    # Such files are format 1: no checksums.
    del payload["checksums"]
    payload["format_version"] = 1
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="no checksum"):
        loaded = DISYREDetector.load(path)
    assert loaded.residual_profile_ is None
    np.testing.assert_array_equal(
        loaded.decision_map(healthy[:2]), fitted.decision_map(healthy[:2])
    )


# ------------------------------------------------------------------ location standardisation
@pytest.fixture(scope="module")
def standardized(healthy):
    return DISYREDetector(**TINY, map_standardization="location").fit(healthy)


def _without_standardization(det):
    raw = clone(det).set_params(map_standardization=None)
    raw.__dict__.update({k: v for k, v in vars(det).items() if k.endswith("_")})
    raw._layout = det._layout
    return raw


def test_location_reference_is_learned_from_the_training_maps(standardized, healthy):
    det = standardized
    assert det.location_mean_.shape == det.image_shape_ == healthy.shape[1:]
    assert det.location_mean_.dtype == det.location_scale_.dtype == np.float32
    assert (det.location_scale_ > 0).all()
    # An independent recomputation from the raw maps of the same network.
    raw = _without_standardization(det).decision_map(healthy)
    fg = healthy != 0
    expected_mean, expected_scale = location_reference(reference_sums(raw, fg))
    np.testing.assert_allclose(det.location_mean_, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(det.location_scale_, expected_scale, rtol=1e-6)


def test_location_standardized_maps_and_offset(standardized, healthy):
    det = standardized
    maps = det.decision_map(healthy[:4])
    raw = _without_standardization(det).decision_map(healthy[:4])
    fg = healthy[:4] != 0
    z = np.maximum(raw - det.location_mean_, 0) / det.location_scale_
    np.testing.assert_allclose(maps[fg], z[fg], rtol=1e-6)
    assert (maps[~fg] == 0).all()
    # offset_ is the 1st percentile of the standardised training scores, as for raw maps.
    assert det.offset_ == pytest.approx(np.percentile(det.score_samples(healthy), 1.0), rel=1e-9)


def test_location_reference_travels_with_the_model_file(standardized, healthy, tmp_path):
    path = standardized.save(tmp_path / "m.disyre")
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == 3 and set(payload["reference_maps"]) == {"mean", "scale"}
    loaded = DISYREDetector.load(path)
    np.testing.assert_array_equal(loaded.location_mean_, standardized.location_mean_)
    np.testing.assert_array_equal(
        loaded.decision_map(healthy[:2]), standardized.decision_map(healthy[:2])
    )
    # Damage to the reference maps is caught by the checksum.
    payload["reference_maps"]["scale"][0, 0] += 1.0
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="SHA-256 check in reference_maps/scale"):
        DISYREDetector.load(path)


def test_files_without_standardization_keep_format_2(fitted, tmp_path):
    payload = torch.load(fitted.save(tmp_path / "m.disyre"), weights_only=True)
    assert payload["format_version"] == 2 and "reference_maps" not in payload


def test_reference_maps_of_the_wrong_shape_are_refused(standardized, tmp_path):
    import json

    from disyre_sk._engine.persist import _checksums

    path = standardized.save(tmp_path / "m.disyre")
    payload = torch.load(path, weights_only=True)
    payload["reference_maps"] = {k: v[:-1] for k, v in payload["reference_maps"].items()}
    payload["checksums"] = json.dumps(_checksums(payload))
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="invalid reference maps"):
        DISYREDetector.load(path)


def test_location_standardization_without_reference_is_a_clear_error(fitted, healthy):
    assert fitted.location_mean_ is None and fitted.location_scale_ is None
    det = clone(fitted).set_params(map_standardization="location")
    det.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    det._layout = fitted._layout
    with pytest.raises(ValueError, match="Fit again with map_standardization='location'"):
        det.decision_map(healthy[:1])


def test_files_from_before_standardization_raise_no_stale_offset_warning(fitted, healthy, tmp_path):
    import json
    import warnings

    from disyre_sk._engine.persist import _checksums

    path = fitted.save(tmp_path / "old.disyre")
    payload = torch.load(path, weights_only=True)
    params, state = json.loads(payload["params"]), json.loads(payload["state"])
    del params["map_standardization"], state["offset_settings"]["map_standardization"]
    payload["params"], payload["state"] = json.dumps(params), json.dumps(state)
    payload["checksums"] = json.dumps(_checksums(payload))
    torch.save(payload, path)
    loaded = DISYREDetector.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            loaded.decision_function(healthy[:2]), fitted.decision_function(healthy[:2])
        )


# ------------------------------------------------------------------ network extension point
class _TinyRestorer(torch.nn.Module):
    """x + f(x): two convolutions, ignoring the severity (a custom network)."""

    def __init__(self, **config):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(8, 1, 3, padding=1),
        )

    def forward(self, x, severity):
        return x + self.body(x)


def test_network_unet_class_is_the_default_path(healthy):
    from disyre_sk.nn import UNet

    a = DISYREDetector(**TINY).fit(healthy)
    b = DISYREDetector(**TINY, network=UNet).fit(healthy)
    np.testing.assert_array_equal(a.decision_map(healthy[:2]), b.decision_map(healthy[:2]))


def test_custom_network_trains_maps_and_pickles(healthy):
    import pickle

    det = DISYREDetector(**TINY, network=_TinyRestorer).fit(healthy)
    assert isinstance(det.network_, _TinyRestorer)
    maps = det.decision_map(healthy[:2])
    assert maps.shape == healthy[:2].shape and np.isfinite(maps).all() and maps.any()
    again = pickle.loads(pickle.dumps(det))
    assert isinstance(again.network_, _TinyRestorer)
    np.testing.assert_array_equal(again.decision_map(healthy[:2]), maps)
    assert isinstance(det.network_.body[0].weight, torch.nn.Parameter)  # the original stays


def test_custom_network_cannot_go_to_a_safe_model_file(healthy, tmp_path):
    det = DISYREDetector(**TINY, network=_TinyRestorer).fit(healthy)
    with pytest.raises(TypeError, match="custom network"):
        det.save(tmp_path / "m.disyre")


def test_network_that_breaks_the_contract_is_refused_before_training(healthy):
    class Wrong(torch.nn.Module):
        def __init__(self, **config):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1)

        def forward(self, x, severity):
            return self.conv(x)  # half the size

    with pytest.raises(TypeError, match="input's shape"):
        DISYREDetector(**TINY, network=Wrong).fit(healthy)

    class Deep(_TinyRestorer):
        size_multiple = 32  # e.g. five halvings: a 16-px patch cannot go through

    with pytest.raises(ValueError, match="multiple of 32, the network's size_multiple"):
        DISYREDetector(**TINY, network=Deep).fit(healthy)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        DISYREDetector(**TINY, network=lambda **config: "not a module").fit(healthy)


class _CountingNet(torch.nn.Module):
    """The UNet, counting the windows it is given outside training."""

    def __init__(self, **config):
        super().__init__()
        from disyre_sk.nn import UNet

        self.net = UNet(**config)
        self.size_multiple = self.net.size_multiple
        self.inputs = []

    def forward(self, x, severity):
        if not self.training:
            self.inputs.append(tuple(x.shape))
        return self.net(x, severity)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"window_size": "slice"},
        {"inference": "multistep", "severities": (0.25, 0.5, 0.75)},
        {"stride": 16},
    ],
)
def test_inference_plan_is_what_decision_map_runs(settings):
    rng = np.random.default_rng(0)
    vols = np.zeros((3, 5, 40, 36), np.float32)
    vols[:, 1:, 6:34, 4:30] = rng.uniform(0.2, 1, (3, 4, 28, 26))
    vols[2, 4, :, :] = 0  # a slice without brain is not planned
    vols[2, 3, 6:34, 20:30] = 0  # a narrower slice
    det = DISYREDetector(
        **{**TINY, "patch_size": 16, "network": _CountingNet, "validation_fraction": 0.0},
    ).fit(vols)
    det.set_params(**settings)
    plan = det.inference_plan(vols)
    det.network_.inputs.clear()
    det.decision_map(vols)
    ran = det.network_.inputs
    assert plan.network_inputs == sum(n for n, *_ in ran)
    assert len(plan.steps) == (len(det.severities) if "inference" not in settings else 3)
    assert plan.sample.tolist() == sorted(plan.sample.tolist())
    assert (2, 4) not in set(zip(plan.sample.tolist(), plan.slice.tolist()))
    assert len(plan.sample) == 3 * 4 - 1
    if settings.get("window_size") == "slice":
        assert plan.window is None and set(plan.windows.tolist()) == {1}
        # Each slice its own box: the narrower slice gets a narrower input.
        narrow = (plan.sample == 2) & (plan.slice == 3)
        assert plan.box[narrow].tolist() == [[6, 34, 4, 20]]
        shapes = {tuple(shape) for _, _, *shape in ran}
        assert {tuple(s) for s in plan.input_shape.tolist()} == shapes
    else:
        assert plan.window == 16 and {tuple(s) for _, _, *s in ran} == {(16, 16)}
        assert (plan.windows >= 1).all()


def _site_volumes(n, seed):
    # (n, 4, 16, 16) smooth brains on one grid, as location standardisation needs.
    return np.stack([smooth_brains(4, 16, seed=seed + 10 * i) for i in range(n)])


CALIBRATED = dict(
    patch_size=16,
    widths=(8, 16),
    n_steps=3,
    batch_size=2,
    severities=(0.5,),
    map_normalization="intensity",
    map_standardization="location",
    device="cpu",
    random_state=0,
)


def test_calibrate_on_the_training_scans_gives_fit_s_references():
    X = _site_volumes(5, seed=0)
    det = DISYREDetector(**CALIBRATED).fit(X)
    mean, scale, offset = det.location_mean_, det.location_scale_, det.offset_
    weights = [p.detach().clone() for p in det.network_.parameters()]
    profile = det.residual_profile_
    det.calibrate(X)
    np.testing.assert_allclose(det.location_mean_, mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(det.location_scale_, scale, rtol=1e-6, atol=1e-9)
    assert det.offset_ == pytest.approx(offset, rel=1e-5)
    # The profile is re-estimated from a draw of slices: the same scans, close values.
    np.testing.assert_allclose(det.residual_profile_, profile, rtol=0.5)
    for before, after in zip(weights, det.network_.parameters()):
        assert torch.equal(before, after)  # the network is kept


def test_reference_fraction_learns_the_references_on_held_out_samples(tmp_path):
    X = _site_volumes(6, seed=0)
    det = DISYREDetector(**CALIBRATED, reference_fraction=0.5).fit(X)
    held = det.history_["reference_samples"]
    assert len(held) == 3 and held == sorted(held) and set(held) <= set(range(6))
    rest = [i for i in range(6) if i not in held]
    # The same seeds on the other samples: the same network, trained without the held-out
    # ones; its own references come from what it trained on.
    twin = DISYREDetector(**CALIBRATED).fit(X[rest])
    assert twin.history_["reference_samples"] is None
    for a, b in zip(det.network_.parameters(), twin.network_.parameters()):
        assert torch.equal(a, b)
    assert not np.allclose(twin.location_mean_, det.location_mean_)
    # ... and calibrated on the held-out samples, it has fit's references and offset_.
    twin.calibrate(X[held])
    np.testing.assert_allclose(det.location_mean_, twin.location_mean_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(det.location_scale_, twin.location_scale_, rtol=1e-6, atol=1e-9)
    assert det.offset_ == pytest.approx(twin.offset_, rel=1e-5)
    # The same draw from the same seed; the indices survive the model file.
    again = DISYREDetector(**CALIBRATED, reference_fraction=0.5).fit(X)
    assert again.history_["reference_samples"] == held
    loaded = DISYREDetector.load(det.save(tmp_path / "model.disyre"))
    assert loaded.history_["reference_samples"] == held


@pytest.mark.parametrize(
    ("n", "fraction", "location", "match"),
    [
        (5, 0.2, "location", "holds out 1 for the healthy references and leaves 4"),
        (2, 0.4, None, "holds out 0 for the healthy references and leaves 2"),
    ],
)
def test_reference_fraction_refuses_a_split_it_cannot_make(n, fraction, location, match):
    settings = dict(CALIBRATED, reference_fraction=fraction, map_standardization=location)
    det = DISYREDetector(**settings)
    with pytest.raises(ValueError, match=match) as err:
        det.fit(_site_volumes(n, seed=0))
    # Two for a per-voxel spread, one otherwise; refused before any training.
    assert ("map_standardization='location'" in str(err.value)) == (location is not None)
    assert not hasattr(det, "network_")


def test_reference_fraction_without_a_seed_resumes_with_the_same_held_out_samples(tmp_path):
    X = _site_volumes(6, seed=0)
    settings = dict(CALIBRATED, random_state=None, reference_fraction=0.5, n_steps=4)
    ckpt = tmp_path / "ckpt"
    first = DISYREDetector(**settings, checkpoint_dir=ckpt, checkpoint_every=1).fit(X)
    # Another unseeded fit draws the same samples, so it finds the checkpoint its own.
    again = DISYREDetector(**settings, checkpoint_dir=ckpt, verbose=True)
    again.fit(X)
    assert again.history_["reference_samples"] == first.history_["reference_samples"]
    for a, b in zip(first.network_.parameters(), again.network_.parameters()):
        assert torch.equal(a, b)  # resumed at the end: the same weights


def test_reference_and_validation_samples_are_disjoint_indices_of_x(monkeypatch):
    from disyre_sk._engine import monitor

    plans = []
    real = monitor.plan_validation

    def spy(*args, **kwargs):
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(monitor, "plan_validation", spy)
    X = _site_volumes(8, seed=0)
    settings = dict(CALIBRATED, n_steps=2, validation_every=1, validation_fraction=0.25)
    for seed in range(3):
        det = DISYREDetector(**dict(settings, random_state=seed), reference_fraction=0.25)
        det.fit(X)
        ref, val = det.history_["reference_samples"], det.history_["validation_samples"]
        assert len(ref) == 2 and len(val) == 1 and not set(ref) & set(val)
        # history_ names the scan of X that was validated on, not its place among the rest.
        np.testing.assert_array_equal(X[val], plans[-1].val_images)
        assert "validating on 1 of 6 samples" in det.history_["validation_note"]


def test_reference_fraction_leaves_one_sample_to_train_on():
    X = _site_volumes(3, seed=0)
    det = DISYREDetector(**CALIBRATED, reference_fraction=0.9).fit(X)
    assert len(det.history_["reference_samples"]) == 2 and det.history_["n_slices"] == 4


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.5, -0.1, "half"])
def test_reference_fraction_refuses_what_is_not_a_fraction(fraction):
    with pytest.raises(ValueError, match="reference_fraction"):
        DISYREDetector(**CALIBRATED, reference_fraction=fraction).fit(_site_volumes(4, seed=0))


def test_calibrate_on_another_site_learns_its_healthy_maps(tmp_path):
    X = _site_volumes(5, seed=0)
    # Another "site": darker, lower contrast scans of other brains.
    site = 0.6 * _site_volumes(6, seed=500)
    det = DISYREDetector(**CALIBRATED).fit(X)
    before = (det.location_mean_.copy(), det.offset_)
    assert det.calibrate(site) is det
    assert not np.allclose(det.location_mean_, before[0])
    assert det.offset_ != before[1]
    # offset_ flags 1 % of the calibration scans, as fit's flags 1 % of its training ones.
    assert (det.predict(site) == -1).sum() <= 1
    # The calibrated model survives its file.
    maps = det.decision_map(site)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = DISYREDetector.load(det.save(tmp_path / "model.disyre"))
    np.testing.assert_array_equal(again.decision_map(site), maps)


def test_calibrate_applies_map_settings_changed_after_fit():
    X = _site_volumes(4, seed=0)
    det = DISYREDetector(**{**CALIBRATED, "map_normalization": None, "map_standardization": None})
    det.fit(X)
    det.set_params(map_normalization="intensity", map_standardization="location")
    with pytest.raises(ValueError, match="needs the residual profile"):
        det.decision_map(X)
    det.calibrate(X)
    assert det.residual_profile_ is not None and det.location_mean_ is not None
    assert det.decision_map(X).shape == X.shape
    # And back: references the settings no longer ask for are dropped.
    det.set_params(map_normalization=None, map_standardization=None).calibrate(X)
    assert det.residual_profile_ is None and det.location_mean_ is None


def test_calibrate_refuses_and_keeps_the_earlier_references():
    X = _site_volumes(4, seed=0)
    with pytest.raises(NotFittedError):
        DISYREDetector(**CALIBRATED).calibrate(X)
    det = DISYREDetector(**CALIBRATED).fit(X)
    state = (det.location_mean_.copy(), det.offset_, det.residual_profile_)
    with pytest.raises(ValueError, match="at least two healthy scans"):
        det.calibrate(X[:1])
    with pytest.raises(ValueError, match="shape"):
        det.calibrate(np.zeros((3, 4, 8, 8)) + 0.5)
    # Interrupted half way (after the profile, in the mapping): nothing changed.
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    det._fit_location_reference = interrupt
    with pytest.raises(KeyboardInterrupt):
        det.calibrate(_site_volumes(4, seed=70))
    del det._fit_location_reference
    assert calls
    np.testing.assert_array_equal(det.location_mean_, state[0])
    assert det.offset_ == state[1] and det.residual_profile_ == state[2]


# ------------------------------------------------------------------- mirrored restoration
def test_map_flip_makes_the_map_mirror_with_the_scan_and_enters_the_threshold():
    rng = np.random.default_rng(0)
    X = rng.uniform(0.2, 1, (8, 16, 16))  # the whole square is foreground: no padding
    det = DISYREDetector(**{**TINY, "window_size": "slice"}).fit(X)
    x = X[:3]
    mirror = x[..., ::-1].copy()
    assert DISYREDetector().map_flip is False  # off unless asked
    plain = det.decision_map(x)
    assert not np.allclose(det.decision_map(mirror)[..., ::-1], plain, atol=1e-4)
    det.set_params(map_flip=True)
    with pytest.warns(UserWarning, match="stale threshold"):
        det.predict(x)  # a scoring setting: offset_ knows its value
    flipped = det.decision_map(x)
    assert not np.allclose(flipped, plain)
    np.testing.assert_allclose(det.decision_map(mirror)[..., ::-1], flipped, rtol=1e-4, atol=1e-6)
    det.calibrate(X)  # the references learned again with the mirrored restorations
    refit = DISYREDetector(**{**TINY, "window_size": "slice"}, map_flip=True)
    np.testing.assert_allclose(refit.fit(X).offset_, det.offset_, rtol=1e-5)


# ------------------------------------------------------------------ left-right symmetry
def _mirrored_brains(n, seed):
    # Centred ellipses made mirror-symmetric, plus the noise no two sides share.
    brains = smooth_brains(n, size=16, seed=seed)
    noise = np.random.default_rng(seed).normal(0, 0.02, brains.shape)
    return np.where(brains > 0, (brains + brains[..., ::-1]) / 2 + noise, 0).astype(np.float32)


def test_map_symmetry_lowers_the_map_where_the_scan_mirrors_itself():
    from disyre_sk._engine import symmetry

    X = _mirrored_brains(8, seed=0)
    assert DISYREDetector().map_symmetry == 0.0  # off unless asked
    plain = DISYREDetector(**TINY).fit(X)
    det = DISYREDetector(**TINY, map_symmetry=0.5).fit(X)
    assert plain.symmetry_reference_ is None
    q = np.asarray(det.symmetry_reference_)
    assert q.shape == (101,) and np.all(np.diff(q) >= 0)
    scan = _mirrored_brains(1, seed=5)
    scan[0, 5:9, 3:6] = 1.0  # bright on one side only
    before, after = plain.decision_map(scan)[0], det.decision_map(scan)[0]
    # The same network (same seed); the map is the plain one times 1 - w * symmetry.
    lo, hi = det.intensity_range_
    scaled = np.where(scan[0] > 0, np.clip((scan[0] - lo) / (hi - lo), 0, 1), 0)
    expected = before * (1 - 0.5 * symmetry.symmetry(scaled, q))
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-7)
    # Kept at the one-sided patch, lowered (at most halved) where the scan is symmetric.
    np.testing.assert_allclose(after[6, 4], before[6, 4], rtol=1e-5)
    inside = scan[0] > 0
    ratio = after[inside] / np.maximum(before[inside], 1e-12)
    assert ratio.min() >= 0.5 - 1e-5 and (ratio < 0.75).sum() >= 10


def test_map_symmetry_enters_the_threshold_needs_its_reference_and_is_saved(tmp_path):
    from disyre_sk import load_model

    X = _mirrored_brains(8, seed=1)
    det = DISYREDetector(**TINY).fit(X)
    det.set_params(map_symmetry=0.5)
    with pytest.raises(ValueError, match="calibrate"):
        det.decision_map(X[:2])  # fitted without the healthy asymmetry
    det.calibrate(X)
    assert det.symmetry_reference_ is not None
    refit = DISYREDetector(**TINY, map_symmetry=0.5).fit(X)
    assert refit.offset_ == pytest.approx(det.offset_, rel=1e-5)
    refit.set_params(map_symmetry=1.0)
    with pytest.warns(UserWarning, match="stale threshold"):
        refit.predict(X[:2])  # a scoring setting: offset_ knows its value
    refit.set_params(map_symmetry=0.5)
    path = tmp_path / "sym.disyre"
    refit.save(path)
    loaded = load_model(path, device="cpu")
    assert loaded.symmetry_reference_ == refit.symmetry_reference_
    np.testing.assert_array_equal(loaded.decision_map(X[:2]), refit.decision_map(X[:2]))
    for damaged in (loaded.symmetry_reference_[:50], "abc", tuple(range(101))[::-1]):
        loaded.symmetry_reference_ = damaged
        with pytest.raises(ValueError, match="101 finite, non-decreasing"):
            loaded.decision_map(X[:2])
    table = DISYREDetector(**TINY).fit(X.reshape(len(X), -1))  # no image_shape: no sides
    table.set_params(map_symmetry=0.5)
    with pytest.raises(ValueError, match="no left and right"):
        table.calibrate(X.reshape(len(X), -1))
    with pytest.raises(ValueError, match="no left and right"):
        table.fit(X.reshape(len(X), -1))  # refused before training
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="map_symmetry"):
            DISYREDetector(**TINY, map_symmetry=bad).fit(X)


def test_foreground_of_a_background_beyond_float32_is_everything_without_warning():
    import warnings

    images = np.array([[0.0, 1.0, -3.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from casting 1e300 to float32
        assert _data.foreground_of(images, 1e300).all()
        assert _data.foreground_of(images, -1e300).all()
        np.testing.assert_array_equal(_data.foreground_of(images, 0.0), [[False, True, True]])
        np.testing.assert_array_equal(_data.foreground_of(images, float("inf")), [[True] * 3])
