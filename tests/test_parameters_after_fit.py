"""Parameters changed after fit: checked where they are used, never a hang or a silent fallback.

Every predict-time call runs the same constraint table as ``fit``; a value that ``fit``
refuses is refused by ``decision_map``, ``score_samples`` and ``predict`` too, with a
clear error, in bounded time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy import smooth_brains, time_limit

from disyre_sk import DISYREDetector

TINY = dict(
    patch_size=8,
    widths=(4, 8),
    n_steps=2,
    batch_size=4,
    severities=(0.5,),
    stride=4,
    random_state=0,
)
LIMIT = 30  # seconds: a tiny detector maps two 12 x 12 images in milliseconds


@pytest.fixture(scope="module")
def data():
    return smooth_brains(6, size=12, seed=0)


@pytest.fixture(scope="module")
def detector(data):
    return DISYREDetector(**TINY).fit(data)


@pytest.fixture
def fresh(detector):
    """The module's detector with its parameters restored after each test."""
    params = detector.get_params()
    yield detector
    detector.set_params(**params)


@pytest.mark.parametrize(
    "name, value",
    [
        ("inference_batch_size", 0),  # used to loop forever
        ("inference_batch_size", -3),
        ("inference", "Ensemble"),  # used to run multistep silently
        ("inference", "ensemble "),
        ("score_reduction", "Max"),  # used to compute top-k silently
        ("top_k", -5),  # used to act as max
        ("top_k", 0),
        ("top_k", float("inf")),
        ("top_k", float("nan")),
        ("top_k", 5.0),  # a float above 1: once read as a count, now refused
        ("stride", 0),  # used to fall back to the default
        ("stride", 9),  # wider than the 8-pixel window: used to leave NaN between windows
        ("window_size", 0),
        ("window_size", 7),  # not a multiple of the network's size step
        ("window_size", "Slice"),
        ("severities", (0.0,)),
        ("severities", (1.5,)),
        ("severities", ()),
        ("map_smoothing", -1.0),
        ("map_smoothing", float("inf")),
        ("map_smoothing", float("nan")),
        ("map_smoothing_across", -1.0),
        ("map_smoothing_across", float("inf")),
        ("map_normalization", "Intensity"),
        ("map_normalization", "intensity"),  # fitted without the profile: refit needed
        ("map_standardization", "Location"),
        ("map_standardization", "location"),  # fitted without the reference: refit needed
        ("map_erosion", -1),
        ("map_erosion", 1.5),
        ("map_median", 2),  # an even median has no centre
        ("map_median", 1.5),
        ("map_median", 10**9 + 1),  # wider than the image: refused, not run
        ("background", "zero"),
        ("device", "tpu"),
    ],
)
def test_invalid_value_after_fit_is_refused_in_bounded_time(fresh, data, name, value):
    fresh.set_params(**{name: value})
    for method in (fresh.decision_map, fresh.score_samples, fresh.predict):
        with time_limit(LIMIT), pytest.raises((ValueError, TypeError), match=name[:7]):
            method(data[:2])


def test_fitted_detector_maps_again_once_the_value_is_fixed(fresh, data):
    reference = fresh.decision_map(data[:2])
    fresh.set_params(inference_batch_size=0)
    with pytest.raises(ValueError):
        fresh.decision_map(data[:2])
    fresh.set_params(inference_batch_size=64)
    np.testing.assert_array_equal(fresh.decision_map(data[:2]), reference)


def test_absurd_inference_sizes_fail_fast_with_the_estimate(fresh, data):
    fresh.set_params(inference_batch_size=10**12)
    with time_limit(LIMIT), pytest.raises(ValueError, match="GiB"):
        fresh.decision_map(data[:2])
    fresh.set_params(inference_batch_size=64, window_size=2**20)
    with time_limit(LIMIT), pytest.raises(ValueError, match="GiB"):
        fresh.decision_map(data[:2])


def test_absurd_training_sizes_fail_before_reading_the_data(data, monkeypatch):
    import disyre_sk._engine.training as training

    monkeypatch.setattr(training.SliceBank, "__init__", lambda *a, **k: pytest.fail("built"))
    with time_limit(LIMIT), pytest.raises(ValueError, match="GiB"):
        DISYREDetector(**{**TINY, "batch_size": 10**7}).fit(data)
    with time_limit(LIMIT), pytest.raises(ValueError, match="GiB"):
        DISYREDetector(**{**TINY, "patch_size": 2**20}).fit(data)


def test_huge_but_valid_smoothing_and_erosion_finish(fresh, data):
    # A kernel or an erosion longer than the image changes nothing past the image's side.
    fresh.set_params(map_smoothing=1e9, map_erosion=10**9)
    with time_limit(LIMIT):
        maps = fresh.decision_map(data[:2])
    assert np.isfinite(maps).all() and not maps.any()


def test_non_finite_maps_are_an_error_never_a_label(detector, data):
    import copy

    broken = copy.deepcopy(detector)
    with torch.no_grad():
        next(iter(broken.network_.parameters())).fill_(float("nan"))
    for method in (broken.decision_map, broken.score_samples, broken.predict):
        with pytest.raises(FloatingPointError, match="NaN or infinite"):
            method(data[:2])


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["ensemble", "multistep", "slice", "topk", "mean", "max", "intensity"]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
)
_PREDICT_TIME = (
    "inference",
    "severities",
    "stride",
    "window_size",
    "inference_batch_size",
    "map_smoothing",
    "map_smoothing_across",
    "map_erosion",
    "map_median",
    "map_flip",
    "map_symmetry",
    "score_reduction",
    "top_k",
    "background",
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(_PREDICT_TIME), value=_VALUES)
def test_any_value_after_fit_maps_correctly_or_is_refused(fresh, data, name, value):
    before = fresh.get_params()
    try:
        fresh.set_params(**{name: value})
        with time_limit(LIMIT):
            try:
                maps = fresh.decision_map(data[:2])
                scores = fresh.score_samples(data[:2])
            except (ValueError, TypeError) as exc:
                assert str(exc)  # a message, not a bare exception
                return
        assert maps.shape == data[:2].shape and maps.dtype == np.float32
        assert np.isfinite(maps).all() and (maps >= 0).all()
        assert np.isfinite(scores).all()
    finally:
        fresh.set_params(**before)


def test_top_k_int_is_a_count_float_a_fraction(fresh, data):
    maps = fresh.decision_map(data[:2])
    fg = data[:2] > 0
    fresh.set_params(top_k=1)
    np.testing.assert_allclose(
        -fresh.score_samples(data[:2]), [m[f].max() for m, f in zip(maps, fg)]
    )
    fresh.set_params(top_k=1.0)
    # float32 sums in another order than numpy's pairwise mean: a few ulps (1.2e-7) apart.
    np.testing.assert_allclose(
        -fresh.score_samples(data[:2]), [m[f].mean() for m, f in zip(maps, fg)], rtol=1e-6
    )
    fresh.set_params(top_k=3)
    top3 = [np.sort(m[f])[-3:].mean() for m, f in zip(maps, fg)]
    np.testing.assert_allclose(-fresh.score_samples(data[:2]), top3, rtol=1e-6)
