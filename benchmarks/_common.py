"""Helpers shared by the benchmark scripts: provenance, results files, timing, memory.

Every results file says how it was made (exact command, git commit, hardware, date), so
a number in ``benchmarks/results/`` can be traced and reproduced.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


# The real brains shipped with the package (``load_brain_anatomy().names``).
BRAINS = ("mni", "colin", "itk")


def cohort_bases(held_out: str | None) -> dict:
    """``make_brain_cohort`` keywords of a protocol: the usual split, or one brain held out."""
    if held_out is None:
        return {}
    return {"train_bases": tuple(b for b in BRAINS if b != held_out), "test_bases": (held_out,)}


def command_line() -> str:
    """The command that is running, as one could paste it into a shell."""
    return "python " + shlex.join(sys.argv)


def git_commit() -> str:
    """Full commit of the repository; ``+dirty:<sha256 of the diff, 12 hex>`` when the
    tracked files differ from it, so a dirty run still names exactly what ran.

    A copy of the tree made elsewhere may carry no ``.git``, or an older one: there
    ``DISYRE_GIT_COMMIT`` (set by whoever made the copy, ideally ``git rev-parse HEAD``)
    names the commit instead; an abbreviated value is expanded where git knows it and
    otherwise marked ``(abbreviated)``. Without either, ``unknown``.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
        ).stdout

    given = os.environ.get("DISYRE_GIT_COMMIT", "").strip()
    if given:
        if re.fullmatch(r"[0-9a-f]{40}", given):
            return given
        try:
            return git("rev-parse", "--verify", "--quiet", f"{given}^{{commit}}").strip()
        except (OSError, subprocess.SubprocessError):
            return f"{given} (abbreviated)"

    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    try:
        diff = git("diff", "HEAD", "--binary")
    except (OSError, subprocess.SubprocessError):
        return commit + "+dirty:unknown"
    if not diff:
        return commit
    return commit + "+dirty:" + hashlib.sha256(diff.encode()).hexdigest()[:12]


def cpu_model() -> str:
    """CPU model name (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, str]:
    """What the numbers were measured on, as label -> value."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    info = {
        "CPU": cpu_model(),
        "CPU cores": f"{os.cpu_count()} logical, {usable} usable, "
        f"torch threads: {torch.get_num_threads()}",
        "Python": platform.python_version(),
        "torch": torch.__version__,
    }
    if hasattr(os, "getloadavg"):
        # The CPU machines are shared: a high load explains slow or noisy CPU numbers.
        info["load average at start"] = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["GPU"] = (
            f"{torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs"
        )
        info["CUDA / cuDNN"] = f"{torch.version.cuda} / {torch.backends.cudnn.version()}"
        # fp32 convolutions use TF32 tensor cores unless this is off: say which.
        info["TF32"] = (
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"
        )
    return info


def now() -> str:
    """Current UTC time, ISO format to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def md_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; ``None`` cells print as an em dash."""

    def cell(v) -> str:
        return "—" if v is None else str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list]) -> str:
    """A fixed-width table for the console."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in cells]
    return "\n".join(out)


def write_results(
    path: str | os.PathLike,
    title: str,
    provenance: dict[str, str],
    body: str,
    raw=None,
) -> Path:
    """Write a results file: title, provenance list, then the body (markdown).

    With ``raw`` (every measurement of the run, JSON-serialisable), a JSON file with the
    provenance and ``raw`` is written beside it under the same stem. Each file is written
    to a temporary name and renamed, so a run killed mid-write (the GPU check is
    time-boxed) leaves the previous complete file, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in provenance.items()]
    text = "\n".join(lines) + "\n\n" + body.rstrip() + "\n"
    if raw is not None:
        record = {"title": title, "provenance": provenance, "raw": raw}
        _replace(path.with_suffix(".json"), json.dumps(record, indent=1, default=str))
    _replace(path, text)
    return path


def record_rows(out, title: str, jobs, report: Callable[[list], str]) -> int:
    """Run each job (a callable returning rows; ``jobs`` may be a generator), then write
    ``report(rows)`` with the run's provenance (taken before the first job), its run time
    and the rows as JSON beside, and print the file."""
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware("cpu")}
    t0 = time.perf_counter()
    rows: list = []
    for job in jobs:
        rows += job()
    body = report(rows)
    body += f"\n\nRun time: {time.perf_counter() - t0:.0f} s. Raw: the JSON beside."
    path = write_results(out, title, info, body, raw=rows)
    print(Path(path).read_text())
    return 0


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- measuring


class Budget:
    """Wall-clock budget of a whole run, counted from its creation."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


@dataclass
class Section:
    title: str
    intro: str
    headers: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Report:
    """Collects tables, prints each row as it comes, rewrites the markdown file."""

    def __init__(self, path: Path, title: str, provenance: dict[str, str]):
        self.path = path
        self.title = title
        self.provenance = provenance
        self.sections: dict[str, Section] = {}
        self.footer: list[str] = []

    def section(self, key: str, title: str, intro: str, headers: list[str]) -> Section:
        self.sections[key] = Section(title, intro, headers)
        print(f"\n== {title}\n{intro}", flush=True)
        self.write()
        return self.sections[key]

    def row(self, key: str, row: list) -> None:
        sec = self.sections[key]
        sec.rows.append(row)
        print("  " + " | ".join("-" if v is None else str(v) for v in row), flush=True)
        self.write()

    def note(self, key: str, text: str) -> None:
        self.sections[key].notes.append(text)
        print(f"  note: {text}", flush=True)
        self.write()

    def write(self) -> None:
        parts = []
        for sec in self.sections.values():
            parts.append(f"## {sec.title}\n\n{sec.intro}\n")
            if sec.rows:
                parts.append(md_table(sec.headers, sec.rows) + "\n")
            parts += [f"- {n}" for n in sec.notes]
            parts.append("")
        parts += self.footer
        write_results(self.path, self.title, self.provenance, "\n".join(parts))

    def print_tables(self) -> None:
        for sec in self.sections.values():
            if sec.rows:
                print(f"\n{sec.title}\n{text_table(sec.headers, sec.rows)}")


def resolve_device(name: str) -> torch.device:
    """``'auto'`` as the detector reads it (CUDA when torch sees one); else the named one.

    A name that torch cannot parse, or CUDA on a machine without it, fails here, before
    any data is loaded.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch sees no CUDA device on this machine.")
    return device


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(fn: Callable[[], object], dev, *, warmup: int, repeats: int, cap_s, budget):
    """Seconds of ``repeats`` synchronised calls after ``warmup`` untimed ones.

    Stops early (after at least one timed call) once ``cap_s`` seconds of timed work
    are spent or the budget is gone, so one slow variant cannot eat the whole run.
    """
    for _ in range(warmup):
        fn()
    sync(dev)
    times: list[float] = []
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
        if sum(times) > cap_s or budget.left() <= 0:
            break
    return times


def _reset_host_peak() -> bool:
    # Writing 5 to clear_refs resets the kernel's VmHWM (peak RSS) of this process.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _host_peak_gib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


@contextlib.contextmanager
def peak_memory(dev: torch.device):
    """Peak GPU memory allocated and peak host RSS (GiB) over the block."""
    rec: dict[str, float | None] = {"gpu": None, "host": None}
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    per_block = _reset_host_peak()
    try:
        yield rec
    finally:
        if dev.type == "cuda":
            rec["gpu"] = torch.cuda.max_memory_allocated(dev) / 2**30
        # Without clear_refs the peak is the process's lifetime peak: still an upper bound.
        rec["host"] = _host_peak_gib()
        rec["host_per_block"] = per_block


@contextlib.contextmanager
def backend_flags(*, cudnn_benchmark: bool = False, tf32: bool | None = None):
    """Set cuDNN autotuning and TF32 for the block, restore them afterwards."""
    old = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if tf32 is not None:
        torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = old


def free(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def fmt_s(x: float | None) -> str | None:
    if x is None:
        return None
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def fmt_rate(x: float | None) -> str | None:
    return None if x is None else f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def fmt_gib(x: float | None) -> str | None:
    return None if x is None else f"{x:.2f}"


def fmt_ratio(x: float | None) -> str | None:
    return None if x is None else f"{x:.2f}×"


def failure(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"failed: {type(exc).__name__}: {msg[:90]}"


# --------------------------------------------------------------------------- detector


class Counting(torch.nn.Module):
    """Wraps a network given to a detector (``network=``, or ``network_`` after ``fit``).

    At inference (eval mode) it counts the inputs it is given (``windows``, ``pixels``,
    the input ``sizes``) and, with ``dry=True``, returns them unchanged, so that a
    ``decision_map`` costs everything but the network. Training steps (train mode) always
    run the wrapped network and are not counted.
    """

    def __init__(self, net: torch.nn.Module, dry: bool = False):
        super().__init__()
        self.net = net
        self.dry = dry
        if hasattr(net, "size_multiple"):
            self.size_multiple = net.size_multiple  # the detector pads inputs to it
        self.reset()

    def reset(self) -> None:
        self.windows = 0
        self.pixels = 0
        self.sizes: set[tuple[int, int]] = set()

    def forward(self, x, severity):
        if not self.training:
            self.windows += x.shape[0]
            self.pixels += x.shape[0] * x.shape[-2] * x.shape[-1]
            self.sizes.add(tuple(x.shape[-2:]))
            if self.dry:
                return x
        return self.net(x, severity)


class StepClock:
    """Training callback: the wall time of every step of a real ``fit``.

    On a GPU the device is synchronised after each step (``on_step_end`` comes before the
    step has necessarily run); that sync is the only change to the fit it watches.
    """

    def __init__(self, dev: torch.device | None = None):
        self.dev = dev
        self.times: list[float] = []
        self._last = 0.0

    def _now(self) -> float:
        if self.dev is not None:
            sync(self.dev)
        return time.perf_counter()

    def on_train_begin(self, detector, info) -> None:
        self._last = self._now()

    def on_step_end(self, detector, info) -> None:
        now = self._now()
        self.times.append(now - self._last)
        self._last = now
