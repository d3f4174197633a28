"""Send hostile input to DISYREDetector and write what each case got as a markdown table.

    python benchmarks/hostile_input_table.py [--out docs/hostile_input.md]

Every case either fits a tiny detector on the input ("fit": then maps and scores the same
input) or scores it with a detector fitted on healthy 12×12 images ("predict"). The table
records the outcome (the error type and the first line of its message, or the map's
shape, dtype and finiteness), every warning raised on the way, and a verdict:

* ``ok``: the expected outcome. "works" means a CPU numpy float32 map of the input's
  shape, finite and non-negative, with finite scores; an expected error is a
  ``ValueError`` or ``TypeError`` whose message matches the expected words.
* ``ISSUE``: anything else (an error from inside torch or numpy, a ``FloatingPointError``
  from training, a NaN in the map, a hang of more than a minute).

The same cases are property-tested in ``tests/test_hostile_input.py``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
import torch

import disyre_sk
from disyre_sk import DISYREDetector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit
from _hostile_files import (
    checkpoint_probes,
    cli_probes,
    model_file_probes,
    nifti_probes,
    parameter_probes,
    run_probe,
)

CONFIG = {
    "patch_size": 8,
    "widths": (4, 8),
    "n_steps": 2,
    "batch_size": 4,
    "severities": (0.5,),
    "stride": 8,
    "random_state": 0,
}
SHAPE = (12, 12)
HANG_SECONDS = 60
F64_MAX = float(np.finfo(np.float64).max)
WORKS = "works"


class Hang(BaseException):
    pass


@dataclass
class Case:
    group: str
    name: str
    method: str  # "fit" or "predict"
    make: Callable  # healthy images -> X
    expect: str  # WORKS or a regex the error message must match
    params: dict = field(default_factory=dict)
    patch: str = ""  # key of the proposed fix in PATCHES, for cases that fail today


def _memmap(healthy, mode, dtype, tmp):
    path = tmp / f"scans-{mode}-{dtype}.dat"
    writer = np.memmap(path, dtype=dtype, mode="w+", shape=healthy.shape)
    writer[:] = healthy * (100 if dtype == "int16" else 1)
    writer.flush()
    del writer
    return np.memmap(path, dtype=dtype, mode=mode, shape=healthy.shape)


def _npy_memmap(healthy, tmp):
    path = tmp / "scans.npy"
    np.save(path, healthy)
    return np.load(path, mmap_mode="r")


def _read_only(healthy):
    out = healthy.copy()
    out.flags.writeable = False
    return out


def _object_ragged(healthy):
    out = np.empty(2, dtype=object)
    out[0], out[1] = healthy[0], healthy[1, :10]
    return out


def _matrix(healthy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(healthy.reshape(len(healthy), -1))


def _sparse(healthy):
    from scipy import sparse

    return sparse.csr_matrix(healthy.reshape(len(healthy), -1))


def _with(healthy, index, value):
    out = healthy.copy()
    out.flat[index] = value
    return out


def _one_blank(healthy):
    out = healthy[:3].copy()
    out[1] = 0
    return out


def _doubled(healthy):
    return np.repeat(np.repeat(healthy, 2, axis=1), 2, axis=2)


def _ragged(healthy):
    return [healthy[0], healthy[1, :10], healthy[2, :, :7]]


def _volumes(healthy):
    return healthy.reshape(2, 3, *SHAPE)


def _table(healthy):
    return healthy.reshape(len(healthy), -1)


def _one_voxel(healthy):
    out = np.zeros((2, *SHAPE))
    out[0, 5, 5] = 1.0
    return out


def cases(tmp: Path) -> list[Case]:
    both = ("fit", "predict")
    out: list[Case] = []

    def add(group, name, make, expect=WORKS, methods=both, **kw):
        for method in methods:
            out.append(Case(group, name, method, make, expect, **kw))

    for dtype in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint64"):
        make = (lambda h: h > 0.5) if dtype == "bool" else (lambda h, d=dtype: (h * 100).astype(d))
        add("dtype", dtype, make)
    for dtype in ("float16", "float32", "float64", "longdouble"):
        add("dtype", dtype, lambda h, d=dtype: h.astype(d))
    for dtype in ("complex64", "complex128"):
        add("dtype", dtype, lambda h, d=dtype: h.astype(d), "[Cc]omplex")
    add("dtype", "list of complex images", lambda h: list(h.astype(complex)), "[Cc]omplex")
    add("dtype", "object array of floats", lambda h: h.astype(object))
    add("dtype", "object array of words ('a')", lambda h: np.full(h.shape, "a", object), "string")
    add("dtype", "str array of words ('abc')", lambda h: np.full(h.shape, "abc"), "string")
    add("dtype", "str array of numbers ('0.53…')", lambda h: h.astype(str))
    add("dtype", "object array with None", lambda h: np.where(h > 0.5, None, h), "NaN")
    add("dtype", "scipy.sparse CSR table", _sparse, "[Ss]parse", methods=("fit",))
    add("dtype", "np.matrix table", _matrix, "matrix", methods=("fit",))

    for label, value in (("NaN", np.nan), ("+inf", np.inf), ("-inf", -np.inf)):
        add("NaN/Inf", f"one {label} voxel", lambda h, v=value: _with(h, 100, v), "NaN|infinity")
    add(
        "NaN/Inf",
        "NaN in float16",
        lambda h: _with(h.astype(np.float16), 5, np.nan),
        "NaN|infinity",
    )
    add("NaN/Inf", "NaN in a list of images", lambda h: list(_with(h, 7, np.nan)), "NaN|infinity")
    add("NaN/Inf", "all NaN", lambda h: np.full(h.shape, np.nan), "NaN|infinity")

    for value in (5.0, -3.0, 1e-300, 1e12, 1e17, -1e20, 1e300, F64_MAX, -F64_MAX):
        add(
            "constant",
            f"constant {value:g}",
            lambda h, v=value: np.full((2, *SHAPE), v),
            patch="P1",
        )
    add("constant", "constant 0 (= background)", lambda h: np.zeros((2, *SHAPE)), "no foreground")
    add(
        "constant",
        "constant 0, background=None",
        lambda h: np.zeros((2, *SHAPE)),
        methods=("fit",),
        params={"background": None},
    )
    add("constant", "one blank sample among 3", _one_blank, methods=("predict",))
    add("constant", "one foreground voxel", _one_voxel)

    add("empty", "(0, 12, 12)", lambda h: np.zeros((0, *SHAPE)), "0 sample")
    add("empty", "(0, 144) table", lambda h: np.zeros((0, 144)), "0 sample", methods=("fit",))
    add("empty", "(0, 2, 12, 12)", lambda h: np.zeros((0, 2, *SHAPE)), "0 sample", methods=("fit",))
    add("empty", "[] (empty list)", lambda h: [], "1D|empty|0 sample")
    for shape in ((3, 0, 5), (3, 5, 0), (2, 3, 4, 0)):
        add(
            "empty",
            str(shape),
            lambda h, s=shape: np.ones(s),
            "zero-size",
            methods=("fit",),
            patch="P3",
        )
    add("empty", "(3, 0, 12)", lambda h: np.ones((3, 0, 12)), "shape", methods=("predict",))
    add("empty", "(3, 0) table", lambda h: np.ones((3, 0)), "0 feature", methods=("fit",))

    add("extreme", "× 1e30", lambda h: h * 1e30)
    add("extreme", "× 1e300", lambda h: h * 1e300)
    add("extreme", "scaled to float64 max", lambda h: h / h.max() * F64_MAX)
    add("extreme", "±1e30 mixed signs", lambda h: h * 1e30 * np.sign(h - 0.6))
    add("extreme", "±1e300 mixed signs", lambda h: np.where(h > 0.6, 1e300, -1e300))
    add("extreme", "±float64 max", lambda h: np.where(h > 0.6, F64_MAX, -F64_MAX), patch="P1")
    add("extreme", "uniform in ±0.8 float64 max", lambda h: (2 * h - 1.2) * F64_MAX, patch="P1")
    add("extreme", "float32 × 3e38", lambda h: (h * 3e38).astype(np.float32))
    add("extreme", "int64 × 2**62", lambda h: (h * 2**62).astype(np.int64))
    add(
        "extreme",
        "uint64 max and 1",
        lambda h: np.where(h > 0.5, np.uint64(2**64 - 1), np.uint64(1)),
    )
    add("extreme", "one voxel of 1e300", lambda h: _with(h, 7, 1e300))
    add("extreme", "× 1e-300 (tiny)", lambda h: h * 1e-300)
    add("extreme", "subnormal (5e-324, 1e-323)", lambda h: np.where(h > 0.6, 5e-324, 1e-323))
    add("extreme", "negative (−x)", lambda h: -h)
    add("extreme", "negative and positive (x − 0.6)", lambda h: h - 0.6)

    add("memory", "view X[:, ::2, ::-2]", lambda h: _doubled(h)[:, ::2, ::-2])
    add("memory", "transposed view", lambda h: h.transpose(0, 2, 1))
    add("memory", "Fortran order", np.asfortranarray)
    add("memory", "np.broadcast_to (read-only, stride 0)", lambda h: np.broadcast_to(h[0], h.shape))
    add("memory", "writeable=False", _read_only)
    add("memory", "np.memmap mode='r' float32", lambda h: _memmap(h, "r", "float32", tmp))
    add("memory", "np.memmap mode='c' int16", lambda h: _memmap(h, "c", "int16", tmp))
    add("memory", "np.load(mmap_mode='r')", lambda h: _npy_memmap(h, tmp))

    add("lists", "list of arrays, different shapes", _ragged, "different shapes")
    add("lists", "tuple, different shapes", lambda h: tuple(_ragged(h)), "different shapes")
    add("lists", "list of arrays, different ndim", lambda h: [h[0], h[1, 0]], "different shapes")
    add("lists", "list of arrays, one shape", list)
    add("lists", "nested lists (X.tolist())", lambda h: h.tolist())
    add("lists", "list: an array and a nested list", lambda h: [h[0], h[1].tolist()])
    add("lists", "ragged rows [[1,2,3],[1,2]]", lambda h: [[1.0, 2, 3], [1.0, 2]], "rectangular")
    add(
        "lists",
        "ragged images",
        lambda h: [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0]]],
        "rectangular",
    )
    add("lists", "object ndarray of ragged images", _object_ragged, "different shapes", patch="P4")

    add("dims", "1-D (12,)", lambda h: np.ones(12), "1D")
    add("dims", "0-D scalar", lambda h: np.float64(3.0), "scalar")
    add("dims", "5-D (1, 1, 6, 12, 12)", lambda h: h.reshape(1, 1, 6, *SHAPE), r"\(n, H, W\)|dim")
    add("dims", "6-D", lambda h: np.ones((1, 1, 1, 2, 4, 4)), r"\(n, H, W\)", methods=("fit",))
    add("dims", "other image shape (6, 10, 12)", lambda h: h[:, :10], "shape", methods=("predict",))
    add("dims", "volumes (2, 3, 12, 12)", _volumes, methods=("fit",))
    add("dims", "volumes, fitted on slices", _volumes, "dimensions", methods=("predict",))
    add(
        "dims",
        "(n, F) table, fitted on images",
        lambda h: h.reshape(6, -1),
        "dimensions",
        ("predict",),
    )

    add("table", "(6, 144)", _table, methods=("fit",))
    for image_shape in ((12, 12), (2, 6, 12)):
        add(
            "table",
            "(6, 144)",
            _table,
            methods=("fit",),
            params={"image_shape": image_shape},
        )
    for image_shape in ((12, 11), (144,), (-12, -12), (12.5, 12)):
        add(
            "table",
            "(6, 144)",
            _table,
            "image_shape",
            methods=("fit",),
            params={"image_shape": image_shape},
            patch="P5",
        )

    for shape in ((1, 1), (3, 5), (7, 7), (11, 9), (13, 7), (1, 40), (3, 5, 7)):
        add(
            "sizes",
            f"images {shape} (patch 8)",
            lambda h, s=shape: np.random.default_rng(1).uniform(0.2, 1, (3, *s)),
            methods=("fit",),
        )
    add("sizes", "single sample", lambda h: h[:1])

    add("torch", "CPU tensor float64", torch.from_numpy)
    add("torch", "CPU tensor float16", lambda h: torch.from_numpy(h).half())
    add("torch", "CPU tensor int32", lambda h: torch.from_numpy(h * 100).int())
    add("torch", "list of CPU tensors", lambda h: list(torch.from_numpy(h)))
    add(
        "torch",
        "tensor requiring grad",
        lambda h: torch.from_numpy(h).requires_grad_(),
        patch="P6",
    )
    add("torch", "bfloat16 tensor", lambda h: torch.from_numpy(h).bfloat16(), patch="P6")
    add("torch", "complex tensor", lambda h: torch.from_numpy(h).to(torch.complex64), "[Cc]omplex")
    add("torch", "NaN tensor", lambda h: torch.full(h.shape, float("nan")), "NaN")
    if torch.cuda.is_available():
        add("torch", "CUDA tensor", lambda h: torch.from_numpy(h).cuda(), patch="P6")
    return out


def _first_line(text: str, limit: int = 140) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _check_map(maps, shape) -> str | None:
    if type(maps) is not np.ndarray:
        return f"map is a {type(maps).__name__}, not a numpy array"
    if maps.dtype != np.float32:
        return f"map dtype {maps.dtype}"
    if maps.shape != tuple(shape):
        return f"map shape {maps.shape}, input {tuple(shape)}"
    if np.isnan(maps).any():
        return "NaN in the map"
    if not np.isfinite(maps).all():
        return "infinity in the map"
    if (maps < 0).any():
        return "negative map values"
    return None


def run_case(case: Case, healthy, fitted) -> tuple[str, list[str], bool]:
    X = case.make(healthy)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            signal.alarm(HANG_SECONDS)
            try:
                if case.method == "fit":
                    det = DISYREDetector(**{**CONFIG, **case.params}).fit(X)
                else:
                    det = fitted
                maps = det.decision_map(X)
                scores = det.score_samples(X)
            finally:
                signal.alarm(0)
    except Hang:
        return f"hang: no answer after {HANG_SECONDS} s", _warnings(caught), False
    except Exception as exc:  # every outcome is recorded
        got = f"{type(exc).__name__}: {_first_line(str(exc))}"
        ok = (
            case.expect != WORKS
            and isinstance(exc, (ValueError, TypeError))
            and re.search(case.expect, str(exc)) is not None
        )
        return got, _warnings(caught), ok
    problem = _check_map(maps, tuple(np.shape(X)))
    if problem is None and not np.all(np.isfinite(scores)):
        problem = "non-finite scores"
    if problem is not None:
        return f"returned, but {problem}", _warnings(caught), False
    got = f"works: map {maps.shape} float32, finite, max {maps.max():.3g}"
    return got, _warnings(caught), case.expect == WORKS


def _warnings(caught) -> list[str]:
    seen = []
    for w in caught:
        text = f"{w.category.__name__}: {_first_line(str(w.message), 70)} ({Path(w.filename).name})"
        if text not in seen:
            seen.append(text)
    return seen


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _expected(case: Case) -> str:
    if case.expect == WORKS:
        return "works"
    return f"ValueError/TypeError ~ `{case.expect}`"


def _verdict(case: Case, warns: list[str], ok: bool) -> str:
    if not ok:
        return "**ISSUE**" + (f" ({case.patch})" if case.patch else "")
    if warns:
        return f"ok, but warns ({WARNING_PATCH})"
    return "ok"


def build_table(results) -> str:
    lines = [
        "| # | group | input | call | expected | got | warnings | verdict |",
        "| ---: | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, (case, got, warns, ok) in enumerate(results, 1):
        name = case.name
        if case.params:
            name += ", " + ", ".join(f"{k}={v!r}" for k, v in case.params.items())
        cells = [
            str(i),
            case.group,
            name,
            case.method,
            _expected(case),
            got,
            "; ".join(warns),
            _verdict(case, warns, ok),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def build_probe_table(probed) -> str:
    lines = [
        "| # | group | case | expected | got | verdict |",
        "| ---: | --- | --- | --- | --- | --- |",
    ]
    for i, (probe, got, ok) in enumerate(probed, 1):
        cells = [str(i), probe.group, probe.name, probe.expected, got, "ok" if ok else "**ISSUE**"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


# Proposed fixes, printed below the table for the cases that still need them.
WARNING_PATCH = "P2"
PATCHES = {
    "P1": """\
### P1: fit breaks on constant huge images and on ranges wider than float64 max

`FloatingPointError: the training loss became non-finite` (a `FloatingPointError`, not a
`ValueError`, and it blames the learning rate). Two causes in `disyre_sk/_data.py`:
`learn_intensity_range` falls back to `high = low + 1.0` for constant intensities, which
equals `low` once `|low| >= 2**53`, so `scale_intensities` computes `0 / 0 = NaN`; and for
intensities spanning more than float64 max, `np.percentile`'s interpolation and
`x - low` / `high - low` overflow to `inf`, and `inf / inf = NaN`. NaN then reaches the
network. Halving (exact for normal floats, so ordinary results do not change) keeps every
difference finite:

```python
_F64_MAX = float(np.finfo(np.float64).max)  # module level


def learn_intensity_range(images, foreground, percentiles, rng):
    ...
    # Percentiles of halved values (exact for normal floats): interpolating between
    # -max and +max would overflow to inf and NaN.
    halved = np.percentile(0.5 * values.astype(np.float64), percentiles)
    low, high = (2.0 * float(p) for p in halved)
    if not 0.5 * high - 0.5 * low > 0:
        # Constant training intensities. A unit width keeps them at 0, but low + 1.0 == low
        # beyond 2**53: the width grows with |low| so that it stays representable.
        width = max(1.0, abs(low) * 2.0**-40)
        if low + width <= _F64_MAX:
            high = low + width
        else:
            low, high = low - width, low
    return float(low), float(high)


def scale_intensities(images, foreground, intensity_range):
    low, high = intensity_range
    # Halving first (exact for normal floats) keeps x - low and high - low finite for any
    # finite float64, so extreme intensities clip to 0 or 1 instead of turning into NaN.
    out = images.astype(np.float64)
    out *= 0.5
    out -= 0.5 * low
    with np.errstate(over="ignore"):
        out /= 0.5 * high - 0.5 * low
    np.clip(out, 0.0, 1.0, out=out)
    out[~foreground] = 0.0
    return out.astype(np.float32)
```
""",
    "P2": """\
### P2: valid finite input warns

`RuntimeWarning: overflow encountered in divide` from `_data.scale_intensities` (values far
outside the learned range; P1's `np.errstate(over="ignore")` silences it) and
`RuntimeWarning: invalid value encountered in reduce` from scikit-learn's finiteness fast
path, which sums `X` (`+max + -max`). In `DISYREDetector._validate_input`
(`disyre_sk/_detector.py`), wrap the two validation calls:

```python
        # scikit-learn's finiteness fast path sums X: +max + -max warns 'invalid value'.
        with np.errstate(over="ignore", invalid="ignore"):
            if ndim == 2 and (reset or self._layout.kind == "table"):
                X = validate_data(self, X, reset=reset, dtype=dtype)
            else:
                X = check_array(X, allow_nd=True, dtype=dtype)
                ...
```
""",
    "P3": """\
### P3: zero-size images get a misleading 'no foreground' message from fit

`X of shape (3, 0, 5)` is refused because "every voxel equals the background value", which
sends the user after the background. At the top of `resolve_layout`
(`disyre_sk/_data.py`):

```python
    if X.ndim in (3, 4) and 0 in X.shape[1:]:
        raise ValueError(
            f"X has zero-size images: shape {X.shape}. Every image axis needs at least one voxel."
        )
```
""",
    "P4": """\
### P4: an object ndarray of differently shaped images

`np.array([img_a, img_b], dtype=object)` fails inside numpy with "setting an array element
with a sequence." In `_ensure_array` (`disyre_sk/_detector.py`), read it as the list it is:

```python
    if (
        isinstance(X, np.ndarray)
        and X.dtype == object
        and X.ndim == 1
        and X.size
        and all(hasattr(x, "shape") for x in X)
    ):
        # An object array of images (np.array(list_of_images, dtype=object)) is a list.
        X = list(X)
```
""",
    "P5": """\
### P5: a non-integral image_shape is truncated

`image_shape=(12.5, 12)` is read as `(12, 12)` by `int()`. In `resolve_layout`
(`disyre_sk/_data.py`):

```python
        raw = np.asarray(image_shape).ravel()
        integral = (
            raw.dtype.kind in "iuf" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))
        )
        shape = tuple(int(s) for s in raw) if integral else ()
        if len(shape) not in (2, 3) or any(s < 1 for s in shape):
            raise ValueError(
                "image_shape must be (H, W) or (D, H, W) with positive integer sizes, got "
                f"{image_shape!r}."
            )
```
""",
    "P6": """\
### P6: torch tensors that numpy cannot read directly

CPU tensors work through `np.asarray`, but a tensor that requires grad raises torch's
`RuntimeError: Can't call numpy() on Tensor that requires grad`, a bfloat16 tensor
`TypeError: Got unsupported ScalarType BFloat16`, and a CUDA tensor `TypeError: can't
convert cuda:0 device type tensor to numpy`. A detector on `device='cuda'` should take its
own device's tensors. In `disyre_sk/_detector.py`:

```python
def _tensor_to_numpy(x):
    \"\"\"A CPU numpy view of a torch tensor from any device, with or without autograd.\"\"\"
    if not isinstance(x, torch.Tensor):
        return x
    x = x.detach().cpu().resolve_conj().resolve_neg()
    if x.dtype == torch.bfloat16:  # numpy has no bfloat16
        x = x.float()
    return x.numpy()


def _ensure_array(X):
    X = _tensor_to_numpy(X)
    ...  # P4
    if isinstance(X, (list, tuple)) and X and all(hasattr(x, "shape") for x in X):
        X = [_tensor_to_numpy(x) for x in X]
        ...  # unchanged
```
""",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/hostile_input.md"))
    args = parser.parse_args(argv)

    def on_alarm(signum, frame):
        raise Hang

    signal.signal(signal.SIGALRM, on_alarm)
    # Tiny networks on a shared machine: one thread avoids OpenMP oversubscription.
    torch.set_num_threads(1)
    healthy = np.random.default_rng(0).uniform(0.2, 1.0, size=(6, *SHAPE))
    fitted = DISYREDetector(**CONFIG).fit(healthy)
    results = []
    probed = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(Path(tmp)):
            got, warns, ok = run_case(case, healthy, fitted)
            results.append((case, got, warns, ok))
            print(f"{_verdict(case, warns, ok):20s} {case.method:7s} {case.name}: {got}")
        folders = [Path(tmp) / name for name in ("model", "checkpoint", "nifti", "cli")]
        for folder in folders:
            folder.mkdir()
        probes = [
            *parameter_probes(fitted, healthy),
            *model_file_probes(fitted, healthy, folders[0]),
            *checkpoint_probes(healthy, CONFIG, folders[1]),
            *nifti_probes(folders[2]),
            *cli_probes(folders[3]),
        ]
        for probe in probes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got, ok = run_probe(probe)
            probed.append((probe, got, ok))
            print(f"{'ok' if ok else 'ISSUE':20s} {probe.group}: {probe.name}: {got}")
        signal.signal(signal.SIGALRM, on_alarm)

    issues = [case for case, _, _, ok in results if not ok]
    n_warned = sum(bool(warns) for _, _, warns, ok in results if ok)
    needed = sorted({case.patch for case in issues if case.patch})
    if n_warned:
        needed = sorted({*needed, WARNING_PATCH})
    header = [
        "# Hostile input: what each bad input gets",
        "",
        "Generated by `python benchmarks/hostile_input_table.py`; do not edit by hand. "
        "The same cases are property-tested with hypothesis in `tests/test_hostile_input.py`, "
        "each as the input should behave.",
        "",
        f"- Command: `{command_line()}`; commit {git_commit()}.",
        f"- disyre_sk {disyre_sk.__version__}, numpy {np.__version__}, torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}, Python "
        f"{sys.version.split()[0]}; device: {fitted.device_}; "
        f"{datetime.date.today().isoformat()}.",
        f"- Detector: `DISYREDetector({', '.join(f'{k}={v!r}' for k, v in CONFIG.items())})`. "
        "*fit*: fit on the input, then map and score the same input. *predict*: map and "
        "score the input with a detector fitted on 6 healthy 12×12 images in [0.2, 1].",
        "- *works*: `decision_map` returns a CPU numpy float32 array of the input's shape, "
        "finite and ≥ 0, and `score_samples` is finite. An expected error is a `ValueError` "
        "or `TypeError` whose message matches the regular expression shown.",
        f"- {len(results)} cases: {len(results) - len(issues)} as expected "
        f"({n_warned} of them with a warning), **{len(issues)} issues**"
        + (f"; proposed fixes: {', '.join(needed)} below." if needed else "."),
        "",
        "",
    ]
    beyond_issues = sum(not ok for _, _, ok in probed)
    header[-2:-2] = [
        f"- Beyond arrays ({len(probed)} cases: parameters changed after fit, model files, "
        "checkpoints, NIfTI files, every subcommand of the command line): "
        f"{len(probed) - beyond_issues} as expected, **{beyond_issues} issues**; the "
        "second table. Each case ran under a {} s limit.".format(HANG_SECONDS),
    ]
    text = "\n".join(header) + build_table(results) + "\n"
    text += (
        "\n## Beyond arrays\n\n"
        "An expected error is the type shown whose message matches the regular expression "
        "(for files: names the file); on the command line, exit status 2 with the message "
        "on stderr and no traceback. *works* is the result of the intact input; for a "
        "flipped bit, either the load is refused or the bit sits in bytes the format never "
        "reads and the model is exactly the saved one.\n\n" + build_probe_table(probed) + "\n"
    )
    if needed:
        text += "\n## Proposed fixes\n\n" + "\n".join(PATCHES[key] for key in needed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(
        f"{len(results)} array cases, {len(issues)} issues, {n_warned} warned; "
        f"{len(probed)} cases beyond arrays, {beyond_issues} issues: wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
