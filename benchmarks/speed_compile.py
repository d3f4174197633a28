"""Section 4 of ``speed.py``: what ``torch.compile`` of the network gains.

:func:`bench_compile` (in the benchmark's process) starts ``speed.py`` again with the
hidden ``--child compile`` option and kills its whole process group at a time limit, so
that a slow compile cannot eat the run's budget nor leave inductor workers holding the
GPU. :func:`child_compile` (in that child) times the ★ training step of section 1a eager,
compiled per block and compiled whole, and the ★ inference setting of section 2 eager and
compiled, writing one JSON line per result as it comes; the parent turns the lines it
finds into the table, compile time (first compiled call minus first eager call) apart.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import Budget, fmt_ratio, fmt_s, free, measure, sync
from _speed import load_cohort, make_config
from speed_infer import INFER_VARIANTS, PACKAGE_INFER, InferenceBench
from speed_train import PACKAGE_TRAIN, TRAIN_VARIANTS, make_train_step

# The child is the command-line entry point itself, so that it parses the same options.
SPEED_SCRIPT = Path(__file__).resolve().with_name("speed.py")

# --------------------------------------------------------------------------- 4. compile


def child_compile(args) -> int:
    """Child process: torch.compile timings, one JSON line per result as it comes."""
    cfg = make_config(args)
    dev = torch.device(args.device)
    budget = Budget(1e9)  # the parent enforces the limit by killing this process
    out = Path(args.child_out)

    def emit(**rec):
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print("child:", rec, flush=True)

    v = next(v for v in TRAIN_VARIANTS if v.name == PACKAGE_TRAIN[dev.type])
    # Regional first: it compiles fastest, so a short time limit still measures it.
    train_modes = (False, "regional", True)
    for compiled in train_modes if cfg.compile_what in ("both", "train") else ():
        step = make_train_step(cfg.widths, cfg.patch, cfg.train_batch, dev, v, compiled=compiled)
        t0 = time.perf_counter()
        step()
        sync(dev)
        first = time.perf_counter() - t0
        times = measure(
            step, dev, warmup=2, repeats=cfg.train_repeats, cap_s=cfg.cap_s, budget=budget
        )
        emit(kind="train", compiled=compiled, first_s=first, s=statistics.median(times))
        del step
        free(dev)

    if cfg.compile_what == "train":
        return 0
    cohort, _ = load_cohort(replace(cfg, bank_subjects=1))
    bench = InferenceBench(cfg, dev, cohort)
    pkg = next(v for v in INFER_VARIANTS if v.name == PACKAGE_INFER[dev.type])
    for compiled in (False, True):
        if compiled:
            bench.compile()
        det, _ = bench.detector(pkg)  # fitted eagerly (once) before the clock starts
        t0 = time.perf_counter()
        bench.map(det, pkg, bench.vol[bench.warm])
        sync(dev)
        first = time.perf_counter() - t0
        emit(kind="infer", compiled=compiled, first_s=first, s=bench.run(pkg, budget)["s"])
    return 0


def bench_compile(cfg, dev, budget, report, args) -> None:
    report.section(
        "compile",
        "4. torch.compile (default mode) of the network",
        "In a child process, killed at its time limit. Training: the ★ setting of 1a; "
        "inference: the ★ setting of 2. Eager, compiled per block (regional, training only) and "
        "whole-network compiled measured in the same child. "
        "Compile time = first compiled call minus first eager call (a training step, or "
        "the warm-up slices through `decision_map`); a new batch shape (the last, smaller batch "
        "of a run) may compile once more inside the timed run.",
        ["what", "eager s", "compiled s", "× vs eager", "compile s"],
    )
    limit = min(240.0, budget.left() - 15)
    if limit < 60:
        report.row("compile", ["training and inference", "skipped (time budget)", *[None] * 3])
        return
    with tempfile.TemporaryDirectory() as tmp:
        res_path = Path(tmp) / "compile.jsonl"
        log_path = Path(tmp) / "compile.log"
        cmd = [sys.executable, str(SPEED_SCRIPT), "--device", args.device]
        cmd += ["--quick"] * bool(args.quick)
        cmd += ["--threads", str(torch.get_num_threads())]
        cmd += [] if args.batch is None else ["--batch", str(args.batch)]
        cmd += [] if args.slices is None else ["--slices", str(args.slices)]
        cmd += ["--compile-what", cfg.compile_what]
        cmd += ["--child", "compile", "--child-out", str(res_path)]
        status = "finished"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                rc = proc.wait(timeout=limit)
                if rc:
                    status = f"child exited with {rc}"
            except subprocess.TimeoutExpired:
                status = f"killed at its {limit:.0f} s limit"
            finally:
                # Also when this process is stopped itself (SIGTERM from `timeout`): kill
                # the whole group, inductor's compile workers too, so nothing holds the GPU.
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        recs = {}
        if res_path.exists():
            for line in res_path.read_text().splitlines():
                rec = json.loads(line)
                recs[rec["kind"], rec["compiled"]] = rec
        tail = log_path.read_text()[-1500:] if log_path.exists() else ""
    for what, mode in (("train", "regional"), ("train", True), ("infer", True)):
        eager = recs.get((what, False), {}).get("s")
        comp = recs.get((what, mode), {}).get("s")
        # Compile time: the first compiled call minus a first eager call.
        first_c = recs.get((what, mode), {}).get("first_s")
        first_e = recs.get((what, False), {}).get("first_s")
        ctime = None if first_c is None else first_c - (first_e or 0.0)
        label = "training step (s/step)" if what == "train" else "inference (s/volume)"
        if mode == "regional":
            label += ", regional (per block)"
        report.row(
            "compile",
            [
                label,
                fmt_s(eager),
                fmt_s(comp) if comp else "not reached",
                fmt_ratio(eager / comp) if eager and comp else None,
                fmt_s(ctime),
            ],
        )
    report.note("compile", f"child {status}.")
    if status != "finished":
        last = [ln for ln in tail.splitlines() if ln.strip()][-3:]
        report.note("compile", "child log tail: " + " / ".join(last)[:600])
