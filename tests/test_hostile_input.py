"""Hostile input: every case either works correctly or raises a clear ValueError/TypeError.

"Works correctly" means: a CPU numpy float32 map with the input's shape, finite and
non-negative, finite scores, labels in {-1, +1}, the caller's array left untouched.
"A clear error" means a ``ValueError`` or ``TypeError`` whose message names the problem;
an error from deep inside torch or numpy, a ``FloatingPointError`` from training, a hang
(guarded by ``signal.alarm``) or a NaN output is a failure.

The table of every case tried and what it got is ``docs/hostile_input.md``, written by
``benchmarks/hostile_input_table.py``.
"""

from __future__ import annotations

import signal
import threading
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from disyre_sk import DISYREDetector

TINY = {
    "patch_size": 8,
    "widths": (4, 8),
    "n_steps": 2,
    "batch_size": 4,
    "severities": (0.5,),
    "stride": 8,
    "random_state": 0,
}
# For tests that fit many times: input handling does not depend on the training length.
FAST = {**TINY, "n_steps": 1, "augment": False}

SHAPE = (12, 12)
HANG_SECONDS = 60
F64_MAX = float(np.finfo(np.float64).max)
CLEAR = (ValueError, TypeError)
REAL_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
# Today fit breaks on constant images beyond ~1e15 and on ranges wider than float64
# max (see the extreme-range tests below); property tests that must pass now stay inside this.
SAFE_BOUND = 1e12

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# --------------------------------------------------------------------------- fixtures
class Hang(BaseException):
    """Raised by the alarm; a BaseException so that hypothesis does not try to shrink it."""


@pytest.fixture(autouse=True)
def hang_guard():
    """Fail any test of this module that runs longer than ``HANG_SECONDS``."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"test ran longer than {HANG_SECONDS} s: treated as a hang")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run torch on one thread here: on a loaded 2-core machine, two OpenMP threads on
    these tiny networks spin against other processes and run 100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def healthy():
    return np.random.default_rng(0).uniform(0.2, 1.0, size=(6, *SHAPE))


@pytest.fixture(scope="module")
def detector(one_torch_thread, healthy):
    return DISYREDetector(**TINY).fit(healthy)


# --------------------------------------------------------------------------- helpers
def check_map(maps, shape):
    assert type(maps) is np.ndarray, type(maps)  # CPU numpy, not a tensor/memmap/subclass
    assert maps.dtype == np.float32
    assert maps.shape == tuple(shape)
    assert np.all(np.isfinite(maps)), "NaN or infinity in the map"
    assert np.all(maps >= 0)


def check_scores(det, X, n):
    scores = det.score_samples(X)
    assert type(scores) is np.ndarray and scores.shape == (n,)
    assert np.all(np.isfinite(scores))
    assert np.all(np.isfinite(det.decision_function(X)))
    assert set(np.unique(det.predict(X))) <= {-1, 1}


def check_works(det, X, shape=None):
    """``det`` maps and scores ``X`` correctly and leaves it untouched."""
    before = np.array(X, copy=True) if isinstance(X, np.ndarray) else None
    shape = np.shape(X) if shape is None else shape
    maps = det.decision_map(X)
    check_map(maps, shape)
    check_scores(det, X, shape[0])
    if before is not None:
        np.testing.assert_array_equal(X, before)
    return maps


def fit_works(X, **params):
    det = DISYREDetector(**{**FAST, **params}).fit(X)
    assert np.isfinite(det.offset_)
    low, high = det.intensity_range_
    assert np.isfinite(low) and np.isfinite(high) and high > low
    check_works(det, X)
    return det


def raises_clearly(match):
    return pytest.raises(CLEAR, match=match)


def has_foreground(X):
    return bool(np.any(np.asarray(X) != 0))


@st.composite
def batch_shapes(draw, max_side=16):
    n = draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, max_side), min_size=2, max_size=3))
    if len(spatial) == 3:
        spatial[0] = min(spatial[0], 3)  # keep volumes small
    return (n, *spatial)


def elements(dtype, bound):
    """Hypothesis elements of ``dtype``: finite, within ``±bound`` when given."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return hnp.from_dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if bound is None:
            return hnp.from_dtype(dtype)
        return hnp.from_dtype(
            dtype, min_value=max(info.min, -int(bound)), max_value=min(info.max, int(bound))
        )
    kw = {"allow_nan": False, "allow_infinity": False}
    if bound is not None:
        b = float(np.asarray(min(bound, float(np.finfo(dtype).max)), dtype=dtype))
        kw.update(min_value=-b, max_value=b)
    return hnp.from_dtype(dtype, **kw)


@st.composite
def batches(draw, shape=None, dtypes=REAL_DTYPES, bound=SAFE_BOUND):
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(batch_shapes()) if shape is None else shape
    return draw(hnp.arrays(dtype, shape, elements=elements(dtype, bound)))


def fit_or_no_foreground(X):
    if has_foreground(X):
        fit_works(X)
    else:
        with raises_clearly("no foreground"):
            DISYREDetector(**FAST).fit(X)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", REAL_DTYPES)
def test_real_dtypes_fit_and_predict(detector, healthy, dtype):
    X = (healthy > 0.5) if dtype == "bool" else (healthy * 100).astype(dtype)
    fit_works(X)
    maps = check_works(detector, X)
    # The dtype does not matter, only the values.
    np.testing.assert_allclose(maps, detector.decision_map(X.astype(np.float64)), atol=1e-6)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_is_refused(detector, healthy, dtype):
    X = healthy.astype(dtype)
    with raises_clearly("[Cc]omplex"):
        DISYREDetector(**FAST).fit(X)
    with raises_clearly("[Cc]omplex"):
        detector.decision_map(X)
    with raises_clearly("[Cc]omplex"):
        detector.decision_map(list(X))


def test_object_array_of_numbers_works(detector, healthy):
    X = healthy.astype(object)
    fit_works(X)
    check_works(detector, X)


@pytest.mark.parametrize("text", ["a", "", "nan-ish", "1,5"])
def test_object_and_string_arrays_of_words_are_refused(detector, healthy, text):
    for X in (np.full(healthy.shape, text, dtype=object), np.full(healthy.shape, text)):
        with raises_clearly("string|convert"):
            DISYREDetector(**FAST).fit(X)
        with raises_clearly("string|convert"):
            detector.decision_map(X)


def test_numeric_strings_are_read_as_numbers(detector, healthy):
    # scikit-learn's check_array converts numeric strings: documented here, not refused.
    check_works(detector, healthy.astype(str))


def test_object_array_with_none_is_nan(detector, healthy):
    X = np.where(healthy > 0.5, None, healthy)
    with raises_clearly("NaN"):
        detector.decision_map(X)


def test_sparse_and_matrix_are_refused(healthy):
    from scipy import sparse

    table = healthy.reshape(len(healthy), -1)
    with raises_clearly("[Ss]parse"):
        DISYREDetector(**FAST).fit(sparse.csr_matrix(table))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.asmatrix(table)
    with raises_clearly("matrix"):
        DISYREDetector(**FAST).fit(matrix)


# --------------------------------------------------------------------------- random shapes
@PROPERTY
@given(X=batches())
def test_fit_random_shapes_dtypes_values(X):
    fit_or_no_foreground(X)


@PROPERTY
@given(X=batches(bound=None))
@example(X=np.full((2, *SHAPE), 1e17))
@example(X=np.where(np.arange(2 * 144).reshape(2, *SHAPE) % 3, F64_MAX, -F64_MAX))
def test_fit_random_values_full_range(X):
    fit_or_no_foreground(X)


@PROPERTY
@given(X=batches(shape=st.tuples(st.integers(1, 4), st.just(12), st.just(12)), bound=None))
def test_predict_random_dtypes_full_range(detector, X):
    if has_foreground(X):
        check_works(detector, X)
    else:
        with raises_clearly("no foreground"):
            detector.decision_map(X)


# --------------------------------------------------------------------------- NaN / Inf
@PROPERTY
@given(
    X=batches(shape=st.just((3, *SHAPE)), dtypes=("float16", "float32", "float64")),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    index=st.integers(0, 3 * 144 - 1),
)
def test_nan_and_inf_anywhere_are_refused(detector, X, bad, index):
    X = X.copy()
    X.flat[index] = bad
    with raises_clearly("NaN|infinity"):
        DISYREDetector(**FAST).fit(X)
    for method in (detector.decision_map, detector.score_samples, detector.predict):
        with raises_clearly("NaN|infinity"):
            method(X)
    with raises_clearly("NaN|infinity"):
        detector.decision_map(list(X))


# --------------------------------------------------------------------------- constant images
@PROPERTY
@given(value=st.floats(-SAFE_BOUND, SAFE_BOUND).filter(lambda v: v != 0))
def test_constant_images(detector, value):
    X = np.full((2, *SHAPE), value)
    det = fit_works(X)
    check_works(detector, X)
    check_works(det, np.full((1, *SHAPE), value / 2 + 1))


@pytest.mark.parametrize("value", [1e17, -1e20, 1e300, F64_MAX, -F64_MAX])
def test_constant_huge_images(value):
    fit_works(np.full((2, *SHAPE), value))


def test_constant_background_image_is_refused(detector):
    X = np.zeros((2, *SHAPE))
    with raises_clearly("no foreground"):
        DISYREDetector(**FAST).fit(X)
    with raises_clearly("no foreground"):
        detector.decision_map(X)


def test_constant_background_with_background_none_works():
    fit_works(np.zeros((2, *SHAPE)), background=None)


def test_single_blank_sample_among_others_maps_to_zero(detector, healthy):
    X = healthy[:3].copy()
    X[1] = 0
    maps = check_works(detector, X)
    assert np.all(maps[1] == 0)


# --------------------------------------------------------------------------- empty input
@pytest.mark.parametrize("shape", [(0, *SHAPE), (0, 144), (0, 2, *SHAPE)])
def test_empty_batch_is_refused(detector, shape):
    X = np.zeros(shape)
    with raises_clearly("0 sample"):
        DISYREDetector(**FAST).fit(X)
    for method in (detector.decision_map, detector.score_samples, detector.predict):
        with raises_clearly("0 sample|dimensions"):
            method(X)


def test_empty_list_is_refused(detector):
    with raises_clearly("1D|empty|0 sample"):
        DISYREDetector(**FAST).fit([])
    with raises_clearly("1D|empty|0 sample"):
        detector.decision_map([])


@pytest.mark.parametrize("shape", [(3, 0, 5), (3, 5, 0), (2, 0, 4, 4), (2, 3, 4, 0)])
@pytest.mark.parametrize("background", [0.0, None])
def test_zero_size_images_are_refused_by_fit(shape, background):
    with raises_clearly("zero-size"):
        DISYREDetector(**FAST, background=background).fit(np.ones(shape))


def test_zero_size_images_are_refused_by_predict(detector):
    for shape in [(3, 0, 12), (3, 12, 0)]:
        with raises_clearly("shape"):
            detector.decision_map(np.ones(shape))
    with raises_clearly("0 feature"):
        DISYREDetector(**FAST).fit(np.ones((3, 0)))


# --------------------------------------------------------------------------- extreme values
@pytest.mark.parametrize(
    "name, make",
    [
        ("1e30", lambda X: X * 1e30),
        ("1e300", lambda X: X * 1e300),
        ("float64 max", lambda X: X / X.max() * F64_MAX),
        ("mixed ±1e300", lambda X: np.where(X > 0.6, 1e300, -1e300)),
        ("mixed signs ±1e30", lambda X: X * 1e30 * np.sign(X - 0.6)),
        ("float32 near max", lambda X: (X * 3e38).astype(np.float32)),
        ("int64 near max", lambda X: (X * 2**62).astype(np.int64)),
        ("1e-300", lambda X: X * 1e-300),
        ("subnormal 5e-324", lambda X: np.where(X > 0.6, 5e-324, 1e-323)),
        ("negative", lambda X: -X),
        ("negative and positive", lambda X: X - 0.6),
        ("spike of 1e300", lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, 1e300, X)),
    ],
)
def test_extreme_values_fit_and_predict(detector, healthy, name, make):
    X = make(healthy)
    fit_works(X)
    check_works(detector, X)


@pytest.mark.parametrize(
    "make",
    [
        lambda X: np.where(X > 0.6, F64_MAX, -F64_MAX),
        lambda X: (2 * X - 1.2) * F64_MAX,
    ],
    ids=["±float64 max", "uniform ±0.8 float64 max"],
)
def test_extreme_ranges_fit(healthy, make):
    fit_works(make(healthy))


@pytest.mark.parametrize(
    "make",
    [
        lambda X: np.where(X > 0.6, F64_MAX, -F64_MAX),
        lambda X: X / X.max() * F64_MAX,
        lambda X: (2 * X - 1.2) * 1e308,
    ],
    ids=["±float64 max", "float64 max", "uniform ±1e308"],
)
def test_extreme_values_predict(detector, healthy, make):
    check_works(detector, make(healthy))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_extreme_values_do_not_warn(detector, healthy):
    check_works(detector, np.where(healthy > 0.6, F64_MAX, -F64_MAX))
    check_works(detector, healthy * 1e300)


# --------------------------------------------------------------------------- memory layouts
@pytest.mark.filterwarnings("error::UserWarning")
@PROPERTY
@given(
    steps=st.tuples(st.sampled_from([1, -1, 2, -2]), st.sampled_from([1, -1, 2, -2])),
    order=st.sampled_from(["C", "F"]),
    transpose=st.booleans(),
)
def test_non_contiguous_views(detector, healthy, steps, order, transpose):
    big = np.asarray(np.repeat(np.repeat(healthy, 2, axis=1), 2, axis=2), order=order)
    sh, sw = steps
    X = big[:, ::sh, ::sw][:, :12, :12]
    if transpose:
        X = X.transpose(0, 2, 1)
    assert X.shape == (6, *SHAPE)
    maps = check_works(detector, X)
    np.testing.assert_array_equal(maps, detector.decision_map(np.ascontiguousarray(X)))


@pytest.mark.filterwarnings("error::UserWarning")
def test_fortran_broadcast_and_read_only_inputs(detector, healthy):
    fortran = np.asfortranarray(healthy)
    broadcast = np.broadcast_to(healthy[0], (3, *SHAPE))  # read-only, zero strides
    read_only = healthy.copy()
    read_only.flags.writeable = False
    for X in (fortran, broadcast, read_only):
        fit_works(X)
        check_works(detector, X)


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("mode", ["r", "c"])
@pytest.mark.parametrize("dtype", ["float32", "int16", "float64"])
def test_memory_mapped_inputs(detector, healthy, tmp_path, mode, dtype):
    path = tmp_path / "scans.dat"
    writer = np.memmap(path, dtype=dtype, mode="w+", shape=healthy.shape)
    writer[:] = healthy * (100 if dtype == "int16" else 1)
    writer.flush()
    del writer
    X = np.memmap(path, dtype=dtype, mode=mode, shape=healthy.shape)
    fit_works(X)
    check_works(detector, X)
    npy = tmp_path / "scans.npy"
    np.save(npy, healthy)
    check_works(detector, np.load(npy, mmap_mode="r"))


# --------------------------------------------------------------------------- lists
@PROPERTY
@given(shapes=st.lists(st.tuples(st.integers(1, 14), st.integers(1, 14)), min_size=2, max_size=4))
def test_list_of_arrays_of_different_shapes(detector, shapes):
    if len(set(shapes)) == 1:
        shapes = [*shapes, (shapes[0][0] + 1, shapes[0][1])]
    X = [np.ones(s) for s in shapes]
    with raises_clearly("different shapes"):
        DISYREDetector(**FAST).fit(X)
    with raises_clearly("different shapes"):
        detector.decision_map(X)
    with raises_clearly("different shapes"):
        detector.decision_map(tuple(X))


def test_list_of_arrays_of_different_ndim(detector, healthy):
    with raises_clearly("different shapes"):
        detector.decision_map([healthy[0], healthy[1, 0]])


def test_lists_of_one_shape_work(detector, healthy):
    check_works(detector, list(healthy), healthy.shape)
    check_works(detector, tuple(healthy), healthy.shape)
    check_works(detector, healthy.tolist(), healthy.shape)
    check_works(detector, [healthy[0], healthy[1].tolist()], (2, *SHAPE))
    fit_works(list(healthy))


@pytest.mark.parametrize(
    "X",
    [
        [[1.0, 2.0, 3.0], [1.0, 2.0]],
        [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0]]],
        [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0]]],
    ],
    ids=["ragged rows", "ragged images", "ragged pixels"],
)
def test_nested_ragged_lists(detector, X):
    with raises_clearly("rectangular|different"):
        DISYREDetector(**FAST).fit(X)
    with raises_clearly("rectangular|different"):
        detector.decision_map(X)


def test_object_array_of_ragged_images(detector, healthy):
    X = np.empty(2, dtype=object)
    X[0], X[1] = healthy[0], healthy[1, :10]
    with raises_clearly("different shapes"):
        detector.decision_map(X)


# --------------------------------------------------------------------------- dimensions
@pytest.mark.parametrize("X", [np.ones(12), np.float64(3.0), np.ones((1, 1, 2, *SHAPE))])
def test_wrong_number_of_dimensions(detector, X):
    with raises_clearly("1D|scalar|dimensions|must be"):
        DISYREDetector(**FAST).fit(X)
    with raises_clearly("1D|scalar|dimensions"):
        detector.decision_map(X)


def test_six_dimensions_are_refused():
    with raises_clearly(r"\(n, H, W\)"):
        DISYREDetector(**FAST).fit(np.ones((1, 1, 1, 2, 4, 4)))


def test_predict_with_another_shape_or_layout(detector, healthy):
    with raises_clearly("shape"):
        detector.decision_map(healthy[:, :10])
    with raises_clearly("shape"):
        detector.decision_map(np.ones((2, 12, 13)))
    with raises_clearly("dimensions"):
        detector.decision_map(healthy.reshape(6, -1))
    with raises_clearly("dimensions"):
        detector.decision_map(healthy.reshape(2, 3, *SHAPE))


def test_tables_without_and_with_image_shape(healthy):
    table = healthy.reshape(6, -1)
    det = fit_works(table)
    assert det.image_shape_ == (1, 144)
    with raises_clearly("features"):
        det.decision_map(table[:, :100])
    with raises_clearly("dimensions"):
        det.decision_map(healthy)
    for image_shape in [(12, 12), (2, 6, 12), (144, 1)]:
        det = fit_works(table, image_shape=image_shape)
        assert det.image_shape_ == image_shape
    with raises_clearly("features"):
        det.decision_map(table[:, :100])


@pytest.mark.parametrize("image_shape", [(12, 11), (13, 12), (144,), (1, 1, 12, 12), (-12, -12)])
def test_wrong_image_shape(healthy, image_shape):
    with raises_clearly("image_shape"):
        DISYREDetector(**FAST, image_shape=image_shape).fit(healthy.reshape(6, -1))


def test_non_integral_image_shape_is_refused(healthy):
    with raises_clearly("image_shape"):
        DISYREDetector(**FAST, image_shape=(12.5, 12)).fit(healthy.reshape(6, -1))


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    "shape", [(1, 1), (3, 5), (7, 7), (8, 8), (9, 9), (11, 9), (13, 7), (1, 40), (3, 5, 7)]
)
def test_small_and_odd_image_sizes(healthy, shape):
    rng = np.random.default_rng(1)
    X = rng.uniform(0.2, 1.0, size=(3, *shape))
    fit_works(X)


def test_single_sample(healthy):
    det = fit_works(healthy[:1])
    check_works(det, healthy[1:2])


def test_one_foreground_voxel(detector):
    X = np.zeros((2, *SHAPE))
    X[0, 5, 5] = 1.0
    det = fit_works(X)
    maps = check_works(det, X)
    assert np.all(maps[1] == 0)
    check_works(detector, X)


# --------------------------------------------------------------------------- torch tensors
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.int32])
def test_cpu_tensors_work(detector, healthy, dtype):
    X = torch.from_numpy(healthy * 100).to(dtype)
    maps = check_works(detector, X, healthy.shape)
    np.testing.assert_allclose(maps, detector.decision_map(X.numpy()), atol=1e-6)
    check_works(detector, list(X), healthy.shape)
    fit_works(X)


def test_complex_and_nan_tensors_are_refused(detector, healthy):
    with raises_clearly("[Cc]omplex"):
        detector.decision_map(torch.from_numpy(healthy).to(torch.complex64))
    with raises_clearly("NaN"):
        detector.decision_map(torch.full((2, *SHAPE), float("nan")))


def test_tensor_requiring_grad_works(detector, healthy):
    X = torch.from_numpy(healthy).requires_grad_()
    check_works(detector, X, healthy.shape)
    check_works(detector, list(X), healthy.shape)


def test_bfloat16_tensor_works(detector, healthy):
    check_works(detector, torch.from_numpy(healthy).bfloat16(), healthy.shape)


@pytest.mark.gpu
def test_cuda_tensor_works(detector, healthy):
    check_works(detector, torch.from_numpy(healthy).cuda(), healthy.shape)
