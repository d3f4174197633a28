"""The cost of the optimiser update in a CPU training step: per-tensor loop or fused.

    python benchmarks/optimizer_step.py [--steps 60] [--rounds 5]
                                        [--out benchmarks/results/optimizer_step_cpu.md]

The demo trains two small networks on a CPU: 32-px patches in batches of 16 (widths 16,
32, 64, two residual blocks, attention at the bottleneck) and 16-px patches for its
small-anomaly network. For such networks a step is many small kernels, and the AdamW
update with gradient-norm clipping is a loop over ~100 parameter tensors. This times
one training step as ``fit`` takes it (forward, MSE, backward, clip to norm 1, AdamW
step) on a fixed random batch, with the update run three ways in the same process:
``torch``'s default on a CPU (a Python loop per tensor, ``foreach=False``), the
multi-tensor ``foreach`` path, and the ``fused`` kernel. Variants alternate step by step
in every round, so a busy machine slows them alike; the figure is the median over all
steps, and each row's ratio is against the per-tensor loop. A 20-step run from the same
weights checks that the fused update trains the same network: the largest relative
difference of the losses is printed (float rounding, not a different optimiser).
Only public API: :class:`disyre_sk.nn.UNet` and torch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, git_commit, hardware, md_table, now, write_results

from disyre_sk.nn import UNet

# name -> (patch side, batch): the demo's two networks (disyre_sk/_demo.py's QUICK).
NETWORKS = {"demo network (32 px, batch 16)": (32, 16), "small-anomaly network (16 px)": (16, 16)}
WIDTHS = (16, 32, 64)
UPDATES = {
    "per-tensor loop (torch's CPU default)": dict(foreach=False),
    "foreach": dict(foreach=True),
    "fused": dict(fused=True),
}


def make_step(patch: int, batch: int, update: dict, seed: int = 0):
    """A training step of a fresh network with the given AdamW update; returns ``step()``
    (the loss as a float)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(widths=WIDTHS, attention_levels=(), mid_attention=True, residual=True)
        clean = torch.rand(batch, 1, patch, patch)
        corrupted = (clean + 0.2 * torch.rand_like(clean)).clamp(0, 1)
        severity = torch.rand(batch)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-6, **update)
    clip_foreach = bool(update.get("foreach") or update.get("fused"))

    def step() -> float:
        loss = F.mse_loss(net(corrupted, severity), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=clip_foreach or None)
        opt.step()
        return float(loss.detach())

    return step


def time_network(patch: int, batch: int, steps: int, rounds: int) -> dict:
    """Median seconds per step of each update, all measured in alternation."""
    steppers = {name: make_step(patch, batch, kw) for name, kw in UPDATES.items()}
    for step in steppers.values():  # warm-up: first calls allocate
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in UPDATES}
    for _ in range(rounds):
        for _ in range(steps):
            for name, step in steppers.items():
                t = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()} | {"raw": times}


def same_training(patch: int, batch: int, n: int = 20) -> float:
    """Largest relative difference between the losses of ``n`` per-tensor and fused steps
    from the same weights and batch."""
    a = make_step(patch, batch, UPDATES["per-tensor loop (torch's CPU default)"])
    b = make_step(patch, batch, UPDATES["fused"])
    la = [a() for _ in range(n)]
    lb = [b() for _ in range(n)]
    return max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(la, lb))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/optimizer_step_cpu.md"))
    args = ap.parse_args()
    provenance = {"command": command_line(), "commit": git_commit(), "date": now()}
    provenance.update(hardware("cpu"))
    t0 = time.perf_counter()
    rows, raw = [], {}
    for label, (patch, batch) in NETWORKS.items():
        res = time_network(patch, batch, args.steps, args.rounds)
        drift = same_training(patch, batch)
        base = res["per-tensor loop (torch's CPU default)"]
        for name in UPDATES:
            rows.append(
                [
                    label,
                    name,
                    f"{1000 * res[name]:.1f}",
                    f"{base / res[name]:.2f}x",
                    f"{1000 * (base - res[name]):.1f}",
                ]
            )
        raw[label] = {
            "median_s": {k: res[k] for k in UPDATES},
            "loss_drift": drift,
            "step_s": res["raw"],
        }
        print(
            label, {k: round(1000 * res[k], 1) for k in UPDATES}, f"drift {drift:.1e}", flush=True
        )
    drifts = "; ".join(f"{k}: {v['loss_drift']:.1e}" for k, v in raw.items())
    body = (
        f"One training step (forward, MSE, backward, clip, AdamW) of the UNet with widths "
        f"{WIDTHS}, mid attention, on a fixed random batch; {args.rounds} rounds of "
        f"{args.steps} steps per variant, variants alternating step by step; median ms per "
        "step, and the speed-up against the per-tensor loop (ratios of the same run).\n\n"
        + md_table(["network", "AdamW update", "ms/step", "speed-up", "ms saved/step"], rows)
        + f"\n\nLargest relative difference of 20 losses, per-tensor against fused, from the "
        f"same weights: {drifts}.\n\nRun time: {time.perf_counter() - t0:.0f} s. "
        "Raw: the JSON beside."
    )
    path = write_results(
        args.out, "The optimiser update of a CPU training step", provenance, body, raw
    )
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
