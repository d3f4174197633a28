"""Scaling of data-parallel training: one process against N under torchrun, same global batch.

    python benchmarks/distributed_fit.py --device cpu                  # gloo, 1 and 2 processes
    python benchmarks/distributed_fit.py --device cuda --nproc 1 2 4 8 # NCCL, one GPU each

For each process count N, starts ``torchrun --standalone --nproc-per-node N`` on this
script (its ``--worker`` mode), which fits ``DISYREDetector`` on the same cohort with the
same global ``batch_size``, and times the training loop alone, from the
``on_train_begin`` to the ``on_train_end`` training callback (sampling, augmentation,
corruption, forward, backward, gradient all-reduce, optimiser). On a CPU,
each process gets ``--threads`` torch threads; with ``--compare-threads`` a one-process run
with ``N x threads`` threads is timed too (the other way to use the same cores). Results
go to
``benchmarks/results/distributed_fit_<device>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import command_line, git_commit, hardware, md_table, now, write_results

SETTINGS = {
    # Coarse inference settings: the final scoring of the training set is not timed.
    "cpu": dict(
        patch_size=48,
        widths=(16, 32, 64, 128),
        batch_size=16,
        n_steps=20,
        severities=(0.5,),
        stride=48,
    ),
    "cuda": dict(patch_size=128, batch_size=96, n_steps=200),  # the reference network
}


def worker(args) -> None:
    """One rank: fit, time the training loop, rank 0 writes the timings."""
    from disyre_sk import DISYREDetector
    from disyre_sk.callbacks import TrainingCallback
    from disyre_sk.datasets import make_brain_cohort

    torch.set_num_threads(args.threads)
    timing = {}

    class LoopTimer(TrainingCallback):
        # The loop alone: setup, data upload and the final scoring are outside it. The
        # last losses reach the host before on_train_end, so a GPU has finished by then.
        def on_train_begin(self, detector, info):
            timing["start"] = time.perf_counter()

        def on_train_end(self, detector, info):
            timing["seconds"] = time.perf_counter() - timing.pop("start")
            timing["steps"] = info.step

    X = make_brain_cohort(n_healthy=4, n_test=1, random_state=0).X_train
    params = dict(SETTINGS[args.kind], device=args.kind, random_state=0, callbacks=[LoopTimer()])
    det = DISYREDetector(**params).fit(X)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        timing["loss_last_10"] = float(np.mean(det.history_["loss"][-10:]))
        Path(args.worker).write_text(json.dumps(timing))


def launch(nproc: int, threads: int, kind: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(nproc), __file__, "--worker", str(out)]
    cmd += ["--threads", str(threads), "--kind", kind]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, timeout=1800, capture_output=True)
    timing = json.loads(out.read_text())
    timing["wall"] = time.perf_counter() - start
    return timing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    ap.add_argument(
        "--compare-threads",
        action="store_true",
        help="also time one process with as many threads as the N processes have (CPU)",
    )
    ap.add_argument("--out", help="results file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    kind = args.device
    settings = SETTINGS[kind]
    results = Path(args.out or HERE / "results" / f"distributed_fit_{kind}.md")
    runs = [(n, args.threads) for n in args.nproc]
    if kind == "cpu" and args.compare_threads:
        runs += [(1, n * args.threads) for n in args.nproc if n > 1]
    torch.set_num_threads(args.threads)  # what the provenance block reports
    rows = []
    raw = []
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for nproc, threads in runs:
            t = launch(nproc, threads, kind, Path(tmp) / f"{nproc}_{threads}.json")
            raw.append({"processes": nproc, "threads": threads, **t})
            rate = settings["batch_size"] * t["steps"] / t["seconds"]
            base = base or rate
            label = f"{nproc} × {threads} thread(s)" if kind == "cpu" else f"{nproc} GPU(s)"
            rows.append(
                [
                    label,
                    f"{t['seconds'] / t['steps']:.3f}",
                    f"{rate:.1f}",
                    f"{rate / base:.2f}×",
                    f"{t['loss_last_10']:.4f}",
                    f"{t['wall']:.0f}",
                ]
            )
            print(rows[-1], flush=True)
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    body = "\n\n".join(
        [
            f"`DISYREDetector({described})` on the 4 healthy training volumes of "
            "`make_brain_cohort(n_healthy=4, n_test=1, random_state=0)`, launched with `torchrun "
            "--standalone --nproc-per-node N` (gloo on the CPU, NCCL on CUDA). "
            "`batch_size` is the global batch: each of N processes draws `batch_size / N` "
            "patches and the gradients are averaged. Time of the training loop alone, from "
            "the `on_train_begin` to the `on_train_end` training callback, without "
            "start-up and the final scoring of the training set. "
            "Each run starts afresh; on a CPU shared with other work (see the load average "
            "above), N processes only gain if N cores are free.",
            md_table(
                [
                    "processes",
                    "s / step",
                    "patches / s",
                    "speed-up",
                    "mean loss, last 10 steps",
                    "wall time incl. start-up (s)",
                ],
                rows,
            ),
        ]
    )
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware(kind)}
    raw = {"settings": settings, "runs": raw}
    path = write_results(results, f"Data-parallel training ({kind})", info, body, raw=raw)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
