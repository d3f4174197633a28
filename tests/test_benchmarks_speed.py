"""``benchmarks/speed.py`` and its section modules: options, variants and the results file.

``speed.py`` is the entry point; ``speed_train``, ``speed_infer`` and ``speed_compile``
hold its sections and ``_speed`` what they share. The end-to-end runs shrink the quick
network (``_speed.QUICK_WIDTHS``) so that a step takes milliseconds; their timings are
not checked, only which tables, columns and rows the results file gets.
"""

import importlib
import json
import re
import signal
import sys

import pytest
from _benchmarks import load_benchmark

TINY_WIDTHS = (4, 8, 8, 8)  # attention at the third level: 8×8 positions of a 64-px patch


@pytest.fixture(scope="module")
def speed():
    return load_benchmark("speed")


@pytest.fixture(scope="module")
def modules(speed):
    # The modules speed.py itself imported (load_benchmark put benchmarks/ on sys.path).
    names = ("_common", "_speed", "speed_train", "speed_infer", "speed_compile")
    return {name: importlib.import_module(name) for name in names}


def run_main(speed, argv, monkeypatch):
    """``speed.main(argv)``, leaving the SIGTERM handler that it installs as it was."""
    monkeypatch.setattr(sys, "argv", ["speed.py", *argv])
    handler = signal.getsignal(signal.SIGTERM)
    try:
        return speed.main(argv)
    finally:
        signal.signal(signal.SIGTERM, handler)


def table(text: str, title: str) -> tuple[list[str], list[list[str]]]:
    """The column names and rows of the markdown table under the heading ``title``."""
    lines = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if ln[:1] == "|"]
    assert rows and set(rows[1]) == {"---"}, f"no table under {title!r}"
    return rows[0], rows[2:]


def test_sections_and_options(speed, modules):
    assert speed.SECTIONS == ("train-net", "train-e2e", "infer", "scaling", "compile")
    assert speed.SECTIONS is modules["_speed"].SECTIONS
    with pytest.raises(SystemExit):
        speed.parse_args(["--only", "nonsense"])
    args = speed.parse_args([])
    assert (args.device, args.quick, args.threads, args.compile_what) == ("cpu", False, 0, "both")
    assert args.out is args.budget_s is args.only is args.child is None

    def sections(*argv):
        return speed.make_config(speed.parse_args(list(argv))).sections

    # A CPU runs the first three sections unless asked; CUDA runs all five.
    assert sections("--quick") == ("train-net", "train-e2e", "infer")
    assert sections() == ("train-net", "train-e2e", "infer")
    assert sections("--quick", "--compile", "--scaling") == (
        "train-net",
        "train-e2e",
        "infer",
        "scaling",
        "compile",
    )
    assert sections("--device", "cuda") == speed.SECTIONS
    assert sections("--device", "cuda", "--only", "compile") == ("compile",)

    cfg = speed.make_config(
        speed.parse_args(["--quick", "--budget-s", "7", "--batch", "3", "--slices", "0"])
    )
    assert (cfg.quick, cfg.budget_s, cfg.train_batch, cfg.infer_slices) == (True, 7, 3, None)
    assert cfg.widths == modules["_speed"].QUICK_WIDTHS
    assert speed.make_config(speed.parse_args([])).widths == modules["_speed"].REFERENCE_WIDTHS


def test_each_section_module_exposes_its_bench(speed, modules):
    train, infer, comp = modules["speed_train"], modules["speed_infer"], modules["speed_compile"]
    # speed.py runs the very functions of its section modules.
    assert speed.bench_train_network is train.bench_train_network
    assert speed.bench_train_e2e is train.bench_train_e2e
    assert speed.bench_inference is infer.bench_inference
    assert speed.bench_scaling is infer.bench_scaling
    assert speed.bench_compile is comp.bench_compile
    assert speed.child_compile is comp.child_compile
    # The compile child is the entry point run again.
    assert comp.SPEED_SCRIPT.name == "speed.py" and comp.SPEED_SCRIPT.is_file()


def test_package_markers_name_existing_variants(modules):
    train, infer = modules["speed_train"], modules["speed_infer"]
    train_names = [v.name for v in train.TRAIN_VARIANTS]
    infer_names = [v.name for v in infer.INFER_VARIANTS]
    # Rows are looked up and starred by name: names must be unique.
    assert len(set(train_names)) == len(train_names)
    assert len(set(infer_names)) == len(infer_names)
    assert set(train.PACKAGE_TRAIN) == set(infer.PACKAGE_INFER) == {"cpu", "cuda"}
    assert set(train.PACKAGE_TRAIN.values()) <= set(train_names)
    assert set(infer.PACKAGE_INFER.values()) <= set(infer_names)
    # The CPU's ★ rows run on a CPU, in the --quick smoke test too.
    cpu_train = train.TRAIN_VARIANTS[train_names.index(train.PACKAGE_TRAIN["cpu"])]
    assert cpu_train.quick and not cpu_train.cuda_only
    assert infer.INFER_VARIANTS[infer_names.index(infer.PACKAGE_INFER["cpu"])].quick
    # Rows 0 are the baselines every "×" column divides by, and always run.
    assert train.TRAIN_VARIANTS[0].quick and not train.TRAIN_VARIANTS[0].cuda_only
    assert infer.INFER_VARIANTS[0].quick and infer.INFER_VARIANTS[0].name.startswith("reference")


def test_train_and_infer_rows_in_the_results_file(speed, modules, tmp_path, monkeypatch):
    monkeypatch.setattr(modules["_speed"], "QUICK_WIDTHS", TINY_WIDTHS)
    out = tmp_path / "speed.md"
    argv = ["--device", "cpu", "--quick", "--threads", "1", "--batch", "2", "--slices", "2"]
    argv += ["--only", "train-net", "train-e2e", "infer", "--train-variants", "4"]
    argv += ["--infer-variants", "5", "7", "--budget-s", "600", "--out", str(out)]
    assert run_main(speed, argv, monkeypatch) == 0
    text = out.read_text()
    assert text.startswith("# disyre_sk speed — cpu")
    assert "- **setting**: --quick (small network, CPU smoke test)" in text
    assert "## 3a." not in text  # --only

    headers, rows = table(text, "1a. Training step, network alone")
    assert headers == [
        "variant",
        "s/step",
        "patches/s",
        "TFLOP/s",
        "× vs reference recipe",
        "peak GPU GiB",
    ]
    # Row 0 always runs; --train-variants 4 adds plain fp32, what `fit` runs on a CPU (★).
    assert [r[0] for r in rows] == [modules["speed_train"].TRAIN_VARIANTS[0].name, "fp32 ★"]
    assert rows[0][4] == "1.00×" and all(float(r[1]) > 0 for r in rows)

    # 1b: the steps of a real fit, timed by a callback, against the network alone.
    headers, rows = table(text, "1b. Training step, end to end (`DISYREDetector.fit`, every step")
    assert headers == ["stage", "s/batch", "patches/s", "share of end to end"]
    names = [r[0] for r in rows]
    assert names[-2:] == ["fit, one step end to end", "network alone, fixed batch (fp32)"]
    assert all(float(r[1]) > 0 for r in rows) and rows[-2][3] == "100.0 %"
    assert "end to end / network alone = " in text

    headers, rows = table(
        text, "2. Inference: `DISYREDetector.decision_map` (ensemble), seconds per volume"
    )
    assert headers[:3] == ["variant", "window", "s/volume"]
    assert headers[-1] == "Δ map vs reference" and len(headers) == 10
    assert [r[0] for r in rows] == [
        modules["speed_infer"].INFER_VARIANTS[0].name + " ★",
        "stride P/2",
        "whole slice (one window per slice)",
    ]
    assert [r[1] for r in rows[:2]] == ["64×64/16", "64×64/32"]
    # The whole-slice map equals |x - net(x)| computed by hand from the documented
    # padding and the detector's learned intensity range.
    gap = float(re.search(r"computed directly to ([0-9.e+-]+)\.", text).group(1))
    assert gap < 1e-5
    # Windows are counted at every severity; half the stride, fewer windows.
    assert int(rows[1][3]) < int(rows[0][3]) and rows[0][6] == "1.00×"
    assert rows[0][9] == "—" and float(rows[1][9]) >= 0
    assert "- completed; wall time" in text and "0 row(s) skipped for time" in text


def test_a_spent_budget_lists_every_row_as_skipped(speed, modules, tmp_path, monkeypatch):
    out = tmp_path / "speed.md"
    argv = ["--device", "cpu", "--quick", "--threads", "1", "--only", "train-net", "scaling"]
    argv += ["--budget-s", "1e-6", "--out", str(out)]
    assert run_main(speed, argv, monkeypatch) == 0
    text = out.read_text()
    quick_cpu = [v for v in modules["speed_train"].TRAIN_VARIANTS if v.quick and not v.cuda_only]
    _, rows = table(text, "1a. Training step, network alone")
    assert len(rows) == len(quick_cpu)
    assert all(r[1] == "skipped (time budget)" for r in rows)
    _, rows = table(text, "3a. Inference vs number of severities")
    assert [r[0].split(":")[0] for r in rows] == ["1", "2", "4", "8"]
    headers, rows = table(text, "3b. Training step vs batch and patch size (network alone)")
    assert headers[:3] == ["batch", "patch", "s/step"] and len(rows) == 5
    n_skipped = len(quick_cpu) + 4 + 5
    assert f"{n_skipped} row(s) skipped for time" in text


def test_compile_section_reads_the_child_records(speed, modules, tmp_path, monkeypatch):
    comp = modules["speed_compile"]
    launched = []

    class FakeChild:
        """Stands for the child process: writes the records a real child would."""

        pid = -1

        def __init__(self, cmd, **kwargs):
            launched.append(cmd)
            records = [
                {"kind": "train", "compiled": False, "first_s": 3.0, "s": 2.0},
                {"kind": "train", "compiled": "regional", "first_s": 13.0, "s": 1.0},
                {"kind": "infer", "compiled": False, "first_s": 1.0, "s": 4.0},
            ]
            with open(cmd[cmd.index("--child-out") + 1], "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)

        def wait(self, timeout=None):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(comp.subprocess, "Popen", FakeChild)
    args = speed.parse_args(["--device", "cpu", "--quick", "--compile-what", "train"])
    cfg = speed.make_config(args)
    report = modules["_common"].Report(tmp_path / "speed.md", "speed", {})
    # A budget that leaves the child its 60 s minimum.
    comp.bench_compile(cfg, comp.torch.device("cpu"), comp.Budget(1000.0), report, args)

    (cmd,) = launched
    assert cmd[1] == str(comp.SPEED_SCRIPT)
    assert cmd[cmd.index("--child") + 1] == "compile" and "--quick" in cmd
    assert cmd[cmd.index("--compile-what") + 1] == "train"
    rows = report.sections["compile"].rows
    assert [r[0] for r in rows] == [
        "training step (s/step), regional (per block)",
        "training step (s/step)",
        "inference (s/volume)",
    ]
    # Eager 2 s against regional 1 s; compile time = first compiled - first eager call.
    assert rows[0][1:] == ["2", "1", "2.00×", "10"]
    # Whole-network compiles the child never reported, the eager time still shown.
    assert rows[1][1:3] == ["2", "not reached"] and rows[2][1:3] == ["4", "not reached"]
    assert report.sections["compile"].notes == ["child finished."]
    assert "## 4. torch.compile" in (tmp_path / "speed.md").read_text()


def test_the_child_flag_runs_the_compile_child(speed, monkeypatch):
    seen = []
    monkeypatch.setattr(speed, "child_compile", lambda args: seen.append(args) or 7)
    argv = ["--device", "cpu", "--child", "compile", "--child-out", "x.jsonl"]
    assert speed.main(argv) == 7
    assert seen[0].child_out == "x.jsonl"
