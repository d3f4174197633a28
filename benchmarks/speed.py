"""Speed of DISYRE training and inference, on the CPU or one CUDA GPU.

Sections, in priority order (a time budget skips what does not fit, and says so):

1. ``train-net``: one optimisation step of the restoration UNet on a fixed random batch
   (forward, MSE, backward, grad-norm clip, AdamW step, as ``fit`` takes it):
   the reference recipe (bf16 autocast, GroupNorm in float32 as CUDA autocast runs it)
   against the package's (GroupNorm kept in bf16, fused AdamW), fp32, channels_last,
   cudnn.benchmark.
2. ``train-e2e``: the steps of a real ``DISYREDetector.fit`` on ``make_brain_cohort``
   slices (patch sampling, augmentation, DAG corruption, step), timed by a training
   callback, and the ratio end-to-end / network alone.
3. ``infer``: seconds per volume through ``DISYREDetector.decision_map`` (ensemble): the
   reference way (4 severities, windows of the patch size at stride patch/4, fp32,
   batch 64), then bf16 (GroupNorm in bf16 or, as autocast would, in fp32),
   channels_last, coarser strides, one whole-slice window, larger batches.
4. ``scaling`` (CUDA by default): inference time vs the number of severities; training
   step vs batch size and patch size.
5. ``compile`` (CUDA by default): ``torch.compile`` of the network for training and
   inference, in a child process killed at its time limit, compile time reported apart.

Timing: warm-up calls excluded, ``torch.cuda.synchronize()`` around every timed call,
median of the timed calls (each variant also stops repeating after ``cap`` seconds).
Results go to a markdown file, rewritten after every row, so a run killed by an outer
``timeout`` still leaves every finished row on disk.

This script is the command-line entry point; the code of each section lives next to it:
``speed_train.py`` (``train-net``, ``train-e2e``), ``speed_infer.py`` (``infer``,
``scaling``), ``speed_compile.py`` (``compile``, whose child process is this script run
again with the hidden ``--child compile``), and what they share in ``_speed.py``.

Run ``python benchmarks/speed.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, Budget, Report, command_line, failure, free, git_commit, hardware, now
from _speed import SECTIONS, load_cohort, make_config
from speed_compile import bench_compile, child_compile
from speed_infer import (
    InferenceBench,
    bench_inference,
    bench_scaling,
)
from speed_train import (
    bench_train_e2e,
    bench_train_network,
)

# --------------------------------------------------------------------------- main


def set_threads(requested: int) -> str | None:
    """Apply ``--threads``; return a note when the choice was made for the user."""
    if requested > 0:
        torch.set_num_threads(requested)
        return None
    try:
        usable = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    if usable > 1 and load >= usable:
        # On an oversubscribed machine OpenMP threads wait on each other at every
        # barrier: one thread was 5-50x faster than two on the shared 2-core dev box.
        torch.set_num_threads(1)
        return (
            f"1 torch thread chosen automatically: load average {load:.1f} >= {usable} "
            "usable cores (pass --threads N to override)"
        )
    return None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Speed of DISYRE training and inference.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="CPU smoke setting: a 1.6 M-parameter UNet, 64-px patches, 6 slices",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="markdown file (default results/speed_<device>.md)"
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="wall-clock budget; variants that do not fit are reported as skipped "
        "(default: 420 on cuda, 170 with --quick, 1800 on cpu)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads; 0: torch's default, or 1 when the machine is already busy "
        "(1-min load average >= usable cores), where more threads stall each other",
    )
    ap.add_argument("--batch", type=int, default=None, help="training batch override")
    ap.add_argument(
        "--slices", type=int, default=None, help="central slices for inference (0: all)"
    )
    ap.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=None, help="run only these sections"
    )
    ap.add_argument("--scaling", action="store_true", help="add section 3 (default on cuda)")
    ap.add_argument("--compile", action="store_true", help="add section 4 (default on cuda)")
    ap.add_argument(
        "--infer-variants",
        nargs="+",
        type=int,
        default=None,
        help="indices of the section-2 variants to run (0, the reference way, always runs)",
    )
    ap.add_argument(
        "--train-variants",
        nargs="+",
        type=int,
        default=None,
        help="indices of the section-1a variants to run (0, the reference recipe, always runs)",
    )
    ap.add_argument(
        "--compile-what",
        choices=("both", "train", "infer"),
        default="both",
        help="what section 4 compiles",
    )
    ap.add_argument("--child", choices=("compile",), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "speed.py: --device cuda was asked for, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). "
            "Run with --device cpu (e.g. --device cpu --quick), or on a GPU machine.",
            file=sys.stderr,
        )
        return 2
    if args.child == "compile":
        return child_compile(args)
    # `timeout` sends SIGTERM: turn it into SystemExit so the report is finalised.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    thread_note = set_threads(args.threads)
    cfg = make_config(args)
    budget = Budget(cfg.budget_s)
    dev = torch.device(args.device)
    out = args.out or REPO / "benchmarks" / "results" / f"speed_{args.device}.md"
    provenance = {
        "command": f"`{command_line()}`",
        "git commit": git_commit(),
        "date (UTC)": now(),
        **hardware(args.device),
        "setting": (
            "--quick (small network, CPU smoke test)"
            if args.quick and dev.type == "cpu"
            else "reference network"
        ),
        "budget": f"{cfg.budget_s:.0f} s",
    }
    if thread_note:
        provenance["threads"] = thread_note
    report = Report(Path(out), f"disyre_sk speed — {args.device}", provenance)
    print(f"speed.py: {args.device}, budget {cfg.budget_s:.0f} s, sections {cfg.sections}")
    status = "completed"
    try:
        cohort, cohort_s = load_cohort(cfg)
        print(f"cohort built in {cohort_s:.1f} s", flush=True)
        bench = None
        if "train-net" in cfg.sections:
            bench_train_network(cfg, dev, budget, report)
        if "train-e2e" in cfg.sections:
            bench_train_e2e(cfg, dev, budget, report, cohort)
        if "infer" in cfg.sections:
            bench = bench_inference(cfg, dev, budget, report, cohort)
        if "scaling" in cfg.sections:
            if bench is None:
                bench = InferenceBench(cfg, dev, cohort)
            bench_scaling(cfg, dev, budget, report, bench)
        del bench
        free(dev)
        if "compile" in cfg.sections:
            bench_compile(cfg, dev, budget, report, args)
    except BaseException as exc:  # incl. SIGTERM/KeyboardInterrupt: keep what was measured
        status = (
            "stopped by a signal (e.g. SIGTERM from timeout); the rows above are complete"
            if isinstance(exc, (SystemExit, KeyboardInterrupt))
            else f"stopped early ({failure(exc)})"
        )
        raise
    finally:
        skipped = sum(
            "skipped" in str(cell)
            for sec in report.sections.values()
            for r in sec.rows
            for cell in r
        )
        report.footer = [
            "## Run",
            "",
            f"- {status}; wall time {budget.elapsed():.0f} s of a {cfg.budget_s:.0f} s budget"
            f"; {skipped} row(s) skipped for time.",
            f"- peak host RSS of the whole process: "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB.",
        ]
        report.write()
        report.print_tables()
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
