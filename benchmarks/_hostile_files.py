"""Hostile input beyond arrays: parameters after fit, model files, checkpoints, NIfTI, CLI.

Each probe runs one bad (or borderline) thing under a time limit and says whether the
package answered as it should: the expected result, or a clear error (the expected type,
a message naming the problem and, for files, the file), never a hang, a traceback on the
command line, or a silently wrong result. Used by ``hostile_input_table.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from disyre_sk import DISYREDetector
from disyre_sk.cli import main as cli_main
from disyre_sk.io import NiftiLoader, load_nifti

LIMIT = 60  # seconds per probe


class _Hang(BaseException):
    pass


@dataclass
class Probe:
    """One hostile thing to try, and what counts as the right answer.

    ``errors`` and ``message``: the acceptable exception types and a regular expression
    its message must match (the command line: exit status 2 and the regex on stderr).
    ``works``: a result starting with "works" is right too (a bit flip in bytes the
    format never reads must leave the model exactly as saved).
    """

    group: str
    name: str
    run: Callable[[], str]
    errors: tuple[type, ...] = ()
    message: str = ""
    works: bool = False
    cli: bool = False

    @property
    def expected(self) -> str:
        parts = []
        if self.cli:
            parts.append(f"exit 2, stderr ~ `{self.message}`, no traceback")
        elif self.errors:
            names = "/".join(t.__name__ for t in self.errors)
            parts.append(f"{names} ~ `{self.message}`")
        if self.works:
            parts.append("works (same result as intact)" if parts else "works")
        return " or ".join(parts)


def run_probe(probe: Probe) -> tuple[str, bool]:
    """``(what happened, as expected?)`` for one probe, under the time limit."""

    def on_alarm(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(LIMIT)
    try:
        got = probe.run()
    except _Hang:
        return f"hang: no answer after {LIMIT} s", False
    except Exception as exc:
        ok = isinstance(exc, probe.errors) and re.search(probe.message, str(exc)) is not None
        return f"{type(exc).__name__}: {_first_line(str(exc))}", ok
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if probe.cli:
        ok = got.startswith("exit 2:") and re.search(probe.message, got) is not None
        return _first_line(got, 200), ok
    return got, probe.works and got.startswith("works")


def _first_line(text: str, limit: int = 150) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _maps_ok(maps, shape) -> str:
    if not (isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == shape):
        return f"wrong map: {type(maps).__name__} {getattr(maps, 'shape', None)}"
    if not np.isfinite(maps).all() or (maps < 0).any():
        return "map not finite or negative"
    return f"works: map {maps.shape}, finite, max {maps.max():.3g}"


# ------------------------------------------------------------------ parameters
_INVALID_AFTER_FIT = [
    ("inference_batch_size", 0),
    ("inference_batch_size", -3),
    ("inference_batch_size", 2.5),
    ("inference_batch_size", 10**12),
    ("inference", "Ensemble"),
    ("inference", "ensemble "),
    ("inference", None),
    ("score_reduction", "Max"),
    ("score_reduction", "median"),
    ("top_k", -5),
    ("top_k", 0),
    ("top_k", float("inf")),
    ("top_k", float("nan")),
    ("top_k", "1%"),
    ("top_k", 5.0),
    ("stride", 0),
    ("stride", -4),
    ("stride", 9),
    ("window_size", 0),
    ("window_size", 7),
    ("window_size", "Slice"),
    ("window_size", 2**20),
    ("severities", (0.0,)),
    ("severities", (1.5,)),
    ("severities", ()),
    ("severities", (float("nan"),)),
    ("map_smoothing", -1.0),
    ("map_smoothing", float("inf")),
    ("map_smoothing", float("nan")),
    ("map_smoothing", "1"),
    ("map_smoothing_across", -1.0),
    ("map_smoothing_across", float("inf")),
    ("map_smoothing_across", "2"),
    ("map_normalization", "Intensity"),
    ("map_normalization", "intensity"),
    ("map_erosion", -1),
    ("map_erosion", 1.5),
    ("background", "zero"),
    ("device", "tpu"),
    ("contamination", 0.9),
]
_VALID_AFTER_FIT = [
    ("map_smoothing", 2.0),
    ("map_smoothing", 1e9),
    ("map_smoothing_across", 2.0),
    ("map_smoothing_across", 1e9),
    ("map_erosion", 1),
    ("map_erosion", 10**9),
    ("window_size", "slice"),
    ("window_size", 16),
    ("inference", "multistep"),
    ("score_reduction", "max"),
    ("top_k", 5),
    ("top_k", 10**9),
    ("stride", 2),
    ("inference_batch_size", 1),
]


def parameter_probes(fitted, healthy) -> list[Probe]:
    probes = []

    def invalid(name, value):
        def run():
            before = fitted.get_params()
            try:
                fitted.set_params(**{name: value})
                return _maps_ok(fitted.decision_map(healthy[:2]), healthy[:2].shape)
            finally:
                fitted.set_params(**before)

        return run

    for name, value in _INVALID_AFTER_FIT:
        probes.append(
            Probe(
                "parameters after fit",
                f"set_params({name}={value!r}), then decision_map",
                invalid(name, value),
                (ValueError, TypeError),
                f"{name[:7]}|GiB",
            )
        )
    for name, value in _VALID_AFTER_FIT:
        probes.append(
            Probe(
                "parameters after fit",
                f"set_params({name}={value!r}), then decision_map",
                invalid(name, value),
                works=True,
            )
        )

    def nan_weights():
        import copy

        broken = copy.deepcopy(fitted)
        with torch.no_grad():
            next(iter(broken.network_.parameters())).fill_(float("nan"))
        return f"predict labels {broken.predict(healthy[:2]).tolist()}"

    probes.append(
        Probe(
            "parameters after fit",
            "NaN weights, then predict",
            nan_weights,
            (FloatingPointError,),
            "NaN",
        )
    )
    for name, value in (
        ("batch_size", 10**7),
        ("patch_size", 2**20),
        ("learning_rate", float("inf")),
    ):
        probes.append(
            Probe(
                "parameters at fit",
                f"fit with {name}={value!r}",
                errors=(ValueError,),
                message=f"{name}|GiB",
                run=lambda n=name, v=value: _maps_ok(
                    DISYREDetector(**{**fitted.get_params(), n: v})
                    .fit(healthy)
                    .decision_map(healthy),
                    healthy.shape,
                ),
            )
        )
    return probes


# ------------------------------------------------------------------ model files
def _payload(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _encode(h, value) -> None:
    """Feed ``value`` to ``h`` in the tagged encoding the user guide's format page gives."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=repr):
            _encode(h, key)
            _encode(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}|".encode())
        for item in value:
            _encode(h, item)
    elif isinstance(value, str):
        h.update(f"S{len(value.encode())}|".encode() + value.encode())
    elif isinstance(value, bytes):
        h.update(f"B{len(value)}|".encode() + value)
    else:
        h.update(f"{type(value).__name__}:{value!r}|".encode())


def _sha256(value) -> str:
    h = hashlib.sha256()
    _encode(h, value)
    return h.hexdigest()


def resign(payload: dict) -> dict:
    """The ``checksums`` entry an editor of ``payload`` would write, from the documented
    recipe alone (no package code): one digest per entry, tensor by tensor for
    ``state_dict`` and ``reference_maps``."""
    sums = {}
    for key, value in payload.items():
        if key == "checksums":
            continue
        if key in ("state_dict", "reference_maps"):
            sums.update({f"{key}/{name}": _sha256(t) for name, t in value.items()})
        else:
            sums[key] = _sha256(value)
    return sums


def _resave(payload: dict, path: Path, resum: bool = True) -> Path:
    payload = dict(payload)
    if resum and "checksums" in payload:
        payload["checksums"] = json.dumps(resign(payload))
    torch.save(payload, path)
    return path


def model_file_probes(fitted, healthy, tmp: Path) -> list[Probe]:
    good = fitted.save(tmp / "good.disyre")
    raw = good.read_bytes()
    reference = fitted.decision_map(healthy[:2])
    probes = []

    def load_and_map(path):
        def run():
            loaded = DISYREDetector.load(path)
            maps = loaded.decision_map(healthy[:2])
            if not np.array_equal(maps, reference):
                return "loaded, maps differ from the saved model's"
            return "works: loaded, maps identical to the saved model's"

        return run

    def write(name: str, data: bytes) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    for keep in (0.0, 0.1, 0.5, 0.9, 0.999):
        path = write(f"cut{keep}.disyre", raw[: int(keep * len(raw))])
        probes.append(
            Probe(
                "model file",
                f"truncated to {keep:.1%}",
                load_and_map(path),
                (ValueError,),
                re.escape(path.name),
            )
        )
    rng = np.random.default_rng(0)
    for i, offset in enumerate(sorted(rng.choice(len(raw), size=16, replace=False))):
        flipped = bytearray(raw)
        flipped[offset] ^= 1 << int(rng.integers(8))
        path = write(f"flip{i}.disyre", bytes(flipped))
        probes.append(
            Probe(
                "model file",
                f"one bit flipped at byte {offset} of {len(raw)}",
                load_and_map(path),
                (ValueError,),
                re.escape(path.name),
                works=True,  # in bytes the archive never reads: exactly the saved model
            )
        )
    payload = _payload(good)
    params = json.loads(payload["params"])
    config = json.loads(payload["network_config"])
    edits = {
        "tensor edited, checksum not updated": (
            dict(
                payload,
                state_dict={
                    **payload["state_dict"],
                    **{k: v + 1 for k, v in list(payload["state_dict"].items())[:1]},
                },
            ),
            False,
            "SHA-256",
        ),
        "params edited, checksum not updated": (
            dict(payload, params=json.dumps({**params, "top_k": 0.5})),
            False,
            "SHA-256",
        ),
        "re-signed: inference_batch_size=0": (
            dict(payload, params=json.dumps({**params, "inference_batch_size": 0})),
            True,
            "invalid parameters",
        ),
        "re-signed: unknown parameter": (
            dict(payload, params=json.dumps({**params, "future_option": 1})),
            True,
            "newer version",
        ),
        "re-signed: params not JSON": (dict(payload, params="{oops"), True, "malformed params"),
        "re-signed: params a list": (dict(payload, params="[1, 2]"), True, "malformed params"),
        "re-signed: offset_ NaN": (
            dict(
                payload, state=json.dumps({**json.loads(payload["state"]), "offset_": float("nan")})
            ),
            True,
            "invalid learned state",
        ),
        "re-signed: state lacks offset_": (
            dict(
                payload,
                state=json.dumps(
                    {k: v for k, v in json.loads(payload["state"]).items() if k != "offset_"}
                ),
            ),
            True,
            "lacks the learned state",
        ),
        "re-signed: extra entry": (dict(payload, extra="x"), True, "unexpected entries"),
        "re-signed: 25 GB architecture": (
            dict(
                payload,
                network_config=json.dumps({**config, "widths": [8, 16, 50000], "n_groups": 8}),
            ),
            True,
            "do not fit",
        ),
        "re-signed: 100,000 levels": (
            dict(payload, network_config=json.dumps({**config, "widths": [8] * 100000})),
            True,
            "larger than",
        ),
        "re-signed: unknown network setting": (
            dict(payload, network_config=json.dumps({**config, "experts": 8})),
            True,
            "upgrade",
        ),
        "checksum table malformed": (dict(payload, checksums="[]"), False, "malformed checksum"),
        "format version 99": (dict(payload, format_version=99), True, "Upgrade disyre_sk"),
        "format version 'two'": (
            dict(payload, format_version="two"),
            True,
            "invalid format version",
        ),
        "not a disyre_sk archive": (
            {"weights": torch.zeros(3)},
            False,
            "not a disyre_sk model file",
        ),
    }
    for i, (name, (edited, resum, message)) in enumerate(edits.items()):
        path = _resave(edited, tmp / f"edit{i}.disyre", resum)
        probes.append(Probe("model file", name, load_and_map(path), (ValueError,), message))

    v1 = dict(payload, format_version=1)
    del v1["checksums"]
    probes.append(
        Probe(
            "model file",
            "format 1 file (no checksum): loads with a warning",
            load_and_map(_resave(v1, tmp / "v1.disyre", False)),
            works=True,
        )
    )
    marker = tmp / "payload-ran"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    evil = tmp / "evil.disyre"
    with open(evil, "wb") as handle:
        pickle.dump({"format": "disyre_sk.model", "x": Evil()}, handle)

    def malicious():
        try:
            DISYREDetector.load(evil)
        finally:
            if marker.exists():
                raise AssertionError("the pickle payload ran")
        return "loaded"

    probes.append(
        Probe(
            "model file",
            "malicious pickle (payload writes a file)",
            malicious,
            (ValueError,),
            "without unpickling",
        )
    )
    empty = write("empty.disyre", b"")
    probes += [
        Probe("model file", "empty file", load_and_map(empty), (ValueError,), "empty"),
        Probe("model file", "a folder", load_and_map(tmp), (FileNotFoundError,), "no model"),
        Probe(
            "model file",
            "missing file",
            load_and_map(tmp / "missing.disyre"),
            (FileNotFoundError,),
            "missing",
        ),
        Probe("model file", "intact file", load_and_map(good), works=True),
    ]
    return probes


# ------------------------------------------------------------------ checkpoints
def checkpoint_probes(healthy, config: dict, tmp: Path) -> list[Probe]:
    folder = tmp / "ckpt"
    params = {**config, "n_steps": 20, "checkpoint_dir": folder, "checkpoint_every": 5}
    intact = DISYREDetector(**params).fit(healthy)
    path = folder / "checkpoint.pt"
    raw = path.read_bytes()
    probes = []

    def resume(data: bytes | None):
        def run():
            if data is not None:
                path.write_bytes(data)
            try:
                det = DISYREDetector(**params).fit(healthy)
            finally:
                path.write_bytes(raw)  # the next probe starts from the intact file
            same = all(
                torch.equal(a, b)
                for a, b in zip(
                    det.network_.state_dict().values(), intact.network_.state_dict().values()
                )
            )
            return "works: resumed, same weights" if same else "resumed, but other weights"

        return run

    for keep in (0.1, 0.5, 0.99):
        probes.append(
            Probe(
                "checkpoint",
                f"truncated to {keep:.0%}",
                resume(raw[: int(keep * len(raw))]),
                (ValueError,),
                "checkpoint.pt",
            )
        )
    rng = np.random.default_rng(1)
    for offset in sorted(rng.choice(len(raw), size=6, replace=False)):
        flipped = bytearray(raw)
        flipped[offset] ^= 1 << int(rng.integers(8))
        probes.append(
            Probe(
                "checkpoint",
                f"one bit flipped at byte {offset} of {len(raw)}",
                resume(bytes(flipped)),
                (ValueError,),
                "checkpoint.pt",
                works=True,
            )
        )
    payload = torch.load(path, weights_only=True)
    edited = dict(payload, trainer={**payload["trainer"], "step": 1})
    buffer = io.BytesIO()
    torch.save(edited, buffer)
    probes.append(
        Probe(
            "checkpoint",
            "step edited, checksum not updated",
            resume(buffer.getvalue()),
            (ValueError,),
            "SHA-256",
        )
    )
    probes.append(Probe("checkpoint", "intact checkpoint", resume(None), works=True))
    a_file = tmp / "a_file"
    a_file.write_text("x")
    probes.append(
        Probe(
            "checkpoint",
            "checkpoint_dir under a file",
            lambda: str(DISYREDetector(**{**params, "checkpoint_dir": a_file / "c"}).fit(healthy)),
            (OSError,),
            "checkpoint_dir",
        )
    )
    return probes


# ------------------------------------------------------------------ NIfTI files
def nifti_probes(tmp: Path) -> list[Probe]:
    volume = np.random.default_rng(0).uniform(0.2, 1, (12, 12, 6)).astype(np.float32)
    good = tmp / "good.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), good)
    raw = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def write(name, data):
        (tmp / name).write_bytes(data)
        return tmp / name

    for keep in (0.05, 0.3, 0.9):
        cases[f".nii.gz truncated to {keep:.0%}"] = (
            write(f"cut{keep}.nii.gz", raw[: int(keep * len(raw))]),
            f"cut{keep}",
        )
    cases["gzip header only"] = (write("header.nii.gz", raw[:10]), "header.nii.gz")
    cases["not gzip, .nii.gz name"] = (write("plain.nii.gz", b"hello world" * 40), "plain.nii.gz")
    cases["text file named .nii"] = (write("text.nii", b"hello" * 100), "text.nii")
    cases["empty .nii"] = (write("empty.nii", b""), "empty.nii")
    four = tmp / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), four)
    cases["4-D image"] = (four, "4-D|four")
    two = tmp / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.float32), np.eye(4)), two)
    cases["2-D image"] = (two, "2-D|two")
    for label, value in (("NaN", np.nan), ("inf", np.inf)):
        bad = volume.copy()
        bad[3, 3, 3] = value
        p = tmp / f"{label}.nii.gz"
        nib.save(nib.Nifti1Image(bad, np.eye(4)), p)
        cases[f"{label} voxel"] = (p, f"non-finite.*{label}")
    cases["wrong extension (.npy)"] = (write("scan.npy", raw), "scan.npy")
    (tmp / "folder.nii.gz").mkdir()
    cases["a folder named .nii.gz"] = (tmp / "folder.nii.gz", "folder.nii.gz")
    import gzip

    noise = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    cases["valid gzip of random bytes"] = (write("noise.nii.gz", gzip.compress(noise)), "noise")
    cases["missing file"] = (tmp / "missing.nii.gz", "missing.nii.gz")
    probes = []
    for name, (path, message) in cases.items():
        error = FileNotFoundError if "missing" in name else ValueError
        probes.append(
            Probe(
                "NIfTI",
                f"load_nifti: {name}",
                lambda p=path: str(load_nifti(p).shape),
                (error,),
                message,
            )
        )
    probes.append(
        Probe(
            "NIfTI",
            "NiftiLoader over a list with one truncated scan",
            lambda: str(NiftiLoader().fit_transform([str(good), str(tmp / "cut0.3.nii.gz")]).shape),
            (ValueError,),
            r"cut0\.3",
        )
    )
    probes.append(
        Probe(
            "NIfTI",
            "load_nifti: intact file",
            lambda: f"works: {load_nifti(good).shape}",
            works=True,
        )
    )
    return probes


# ------------------------------------------------------------------ command line
def _cli(argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(argv)
    text = err.getvalue()
    if "Traceback" in text:
        return f"exit {rc} with a traceback"
    return f"exit {rc}: " + " / ".join(line.strip() for line in text.strip().splitlines())


def cli_probes(tmp: Path) -> list[Probe]:
    scans = []
    rng = np.random.default_rng(0)
    for i in range(3):
        data = (rng.uniform(0.2, 1, (16, 16, 6)) * 1000).astype(np.int16)
        data[:2] = 0
        p = tmp / f"sub-{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, np.eye(4)), p)
        scans.append(str(p))
    tiny = [
        "--patch-size",
        "16",
        "--widths",
        "8",
        "16",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    model = tmp / "model.disyre"
    cli_main(["fit", *scans[:2], "-o", str(model), *tiny, "--validation-fraction", "0"])
    maps = tmp / "maps"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli_main(["detect", str(model), scans[0], "-o", str(maps)])
    the_map = str(next(maps.glob("*_map.nii.gz")))
    a_file = tmp / "a_file"
    a_file.write_text("x")
    raw = model.read_bytes()
    (tmp / "damaged.disyre").write_bytes(
        raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0xFF]) + raw[len(raw) // 2 + 1 :]
    )
    (tmp / "cut.disyre").write_bytes(raw[:500])
    good = Path(scans[0]).read_bytes()
    (tmp / "trunc.nii.gz").write_bytes(good[:300])
    four = tmp / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 6, 2), np.float32), np.eye(4)), four)
    fit = ["fit", *scans[:2], "-o", str(tmp / "new.disyre"), *tiny]
    cases = [
        ("fit: truncated scan", ["fit", str(tmp / "trunc.nii.gz"), *fit[1:]], "trunc.nii.gz"),
        ("fit: 4-D scan", ["fit", str(four), *fit[1:]], "four.nii.gz"),
        ("fit: no scans match", ["fit", str(tmp / "none*.nii.gz"), *fit[1:]], "no NIfTI"),
        ("fit: -o under a file", [*fit, "-o", str(a_file / "m.disyre")], "-o/--output"),
        ("fit: -o is a folder", [*fit, "-o", str(tmp)], "is a folder"),
        ("fit: --report under a file", [*fit, "--report", str(a_file / "r")], "--report"),
        ("fit: --batch-size 0", [*fit, "--batch-size", "0"], "batch_size"),
        ("fit: --batch-size 10^9", [*fit, "--batch-size", str(10**9)], "GiB"),
        ("fit: --patch-size 15 (not a multiple of 2)", [*fit, "--patch-size", "15"], "patch_size"),
        (
            "fit: --checkpoint-dir under a file",
            [*fit, "--checkpoint-dir", str(a_file / "c")],
            "checkpoint_dir",
        ),
        ("fit: --device tpu", [*fit, "--device", "tpu"], "device"),
        ("fit: --learning-rate -1", [*fit, "--learning-rate", "-1"], "learning_rate"),
        (
            "detect: missing model",
            ["detect", str(tmp / "no.disyre"), scans[0], "-o", str(tmp / "o1")],
            "no model file",
        ),
        (
            "detect: damaged model",
            ["detect", str(tmp / "damaged.disyre"), scans[0], "-o", str(tmp / "o2")],
            "damaged.disyre",
        ),
        (
            "detect: truncated model",
            ["detect", str(tmp / "cut.disyre"), scans[0], "-o", str(tmp / "o3")],
            "cut.disyre",
        ),
        (
            "detect: a scan as the model",
            ["detect", scans[0], scans[0], "-o", str(tmp / "o4")],
            "sub-0.nii.gz",
        ),
        (
            "detect: -o under a file",
            ["detect", str(model), scans[0], "-o", str(a_file / "o")],
            "-o/--output",
        ),
        (
            "detect: truncated scan",
            ["detect", str(model), str(tmp / "trunc.nii.gz"), "-o", str(tmp / "o5")],
            "trunc.nii.gz",
        ),
        (
            "detect: 4-D scan",
            ["detect", str(model), str(four), "-o", str(tmp / "o6")],
            "four.nii.gz",
        ),
        (
            "evaluate: truncated mask",
            ["evaluate", the_map, "--masks", str(tmp / "trunc.nii.gz")],
            "trunc.nii.gz",
        ),
        (
            "evaluate: mask count differs",
            ["evaluate", the_map, "--masks", the_map, the_map],
            "mask",
        ),
        (
            "evaluate: --json under a file",
            ["evaluate", the_map, "--masks", the_map, "--json", str(a_file / "r.json")],
            "--json",
        ),
        (
            "evaluate: missing map",
            ["evaluate", str(tmp / "gone.nii.gz"), "--masks", the_map],
            "gone.nii.gz",
        ),
        (
            "evaluate: mask of another shape",
            ["evaluate", the_map, "--masks", str(four)],
            "four.nii.gz",
        ),
        ("demo: --out under a file", ["demo", "--out", str(a_file / "d"), "--steps", "1"], "--out"),
        ("demo: --steps 0", ["demo", "--out", str(tmp / "d"), "--steps", "0"], "n_steps"),
    ]
    return [
        Probe("command line", name, lambda a=argv: _cli(a), message=re.escape(msg), cli=True)
        for name, argv, msg in cases
    ]
