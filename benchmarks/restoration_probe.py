"""What the network restores: bright and dark squares, and the severity it is given.

    python benchmarks/restoration_probe.py [--seeds 0 1 2] [--demo-dirs DIR ...]
                                           [--trials 24] [--severities S ...]
                                           [--out benchmarks/results/restoration_probe_cpu.md]

Each demo model (``disyre demo --seed S``, or a folder it wrote, given with
``--demo-dirs``) restores axial slices of the demo's healthy test subjects (the brain no
training subject comes from), scaled as the detector scales them, with the network
alone (no map post-processing):

- **Squares.** A square of side 1, 3, 5 or 7 pixels is added, with an amplitude of
  +0.15, +0.30, +0.50 (brighter) or -0.15, -0.25 (darker) on the [0, 1] intensity
  scale, at a random position at least 5 pixels inside the slice's brain whose
  intensity lies between the slice's 20th and 50th brain percentiles (white matter on
  T2). Restored share: how much of the added change the network takes back, the mean
  over the square of (residual with the square - residual without it) / amplitude; 1
  undoes it entirely, 0 leaves it. The network runs at the detector's severities and
  the shares are averaged over them, as the map averages its residuals; with
  ``--severities`` it runs at each given severity alone, on the same slices and
  positions, a column per model and severity.
- **Severity.** On the same slices without squares: the mean absolute difference
  between the restorations at severity 0.05 and at 1.0, over the brain, against the
  mean residual at the detector's first severity. Near 0, the network ignores the
  severity it is given, and a map over several severities repeats one restoration.

Every row goes to a JSON beside the table. Only the detector's fitted network and its
intensity range are used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import md_table
from _demo_models import demo_cohort, demo_model_parser, load_demo, run_on_demo_models

AMPLITUDES = (0.5, 0.3, 0.15, -0.15, -0.25)
SIDES = (1, 3, 5, 7)
SEVERITY_RANGE = (0.05, 1.0)
INSET = 5  # pixels between a square's centre and the brain's edge


def scaled(volume: np.ndarray, brain: np.ndarray, intensity_range) -> np.ndarray:
    """The volume on the network's [0, 1] scale, as the detector scales its input (its
    learned ``intensity_range_``, clipped, 0 outside the brain)."""
    low, high = intensity_range
    return np.where(brain, np.clip((volume - low) / (high - low), 0.0, 1.0), 0.0).astype(np.float32)


def network_residuals(network, slices: np.ndarray, severity: float) -> np.ndarray:
    """``slices - network(slices, severity)`` for a stack of 2-D slices in [0, 1]."""
    h, w = slices.shape[-2:]
    m = network.size_multiple
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    x = torch.nn.functional.pad(x, (0, -w % m, 0, -h % m))
    with torch.inference_mode():
        out = network(x, float(severity))
    return (x - out)[:, 0, :h, :w].numpy()


def probe_positions(image: np.ndarray, brain: np.ndarray, rng, n: int) -> list[tuple]:
    """Up to ``n`` random (y, x) at least INSET pixels inside the brain, intensity between
    the slice's 20th and 50th brain percentiles."""
    if not brain.any():
        return []
    lo, hi = np.quantile(image[brain], [0.2, 0.5])
    deep = ndi.binary_erosion(brain, iterations=INSET)
    cand = np.argwhere(deep & (image >= lo) & (image <= hi))
    if len(cand) == 0:
        return []
    return [tuple(cand[i]) for i in rng.choice(len(cand), size=min(n, len(cand)), replace=False)]


def with_square(image: np.ndarray, y: int, x: int, side: int, amplitude: float):
    """The image with a square added (clipped to [0, 1]) and the square's index."""
    r = side // 2
    box = (slice(y - r, y + r + 1), slice(x - r, x + r + 1))
    out = image.copy()
    out[box] = np.clip(out[box] + amplitude, 0.0, 1.0)
    return out, box


def restored_shares(network, image, brain, severities, rng, n_positions: int) -> dict:
    """Restored share of each (amplitude, side) at ``n_positions`` positions of one slice."""
    shares: dict = {}
    for y, x in probe_positions(image, brain, rng, n_positions):
        stack, keys = [image], []
        for amplitude in AMPLITUDES:
            for side in SIDES:
                changed, box = with_square(image, y, x, side, amplitude)
                stack.append(changed)
                keys.append((amplitude, side, box, changed[box] - image[box]))
        res = np.mean([network_residuals(network, np.stack(stack), s) for s in severities], 0)
        for k, (amplitude, side, box, added) in enumerate(keys):
            undone = res[k + 1][box] - res[0][box]
            shares.setdefault((amplitude, side), []).append(float(undone.sum() / added.sum()))
    return shares


def severity_effect(network, slices: np.ndarray, brains: np.ndarray, first: float) -> float:
    """Mean |restoration at 0.05 - restoration at 1.0| over the brain / mean residual."""
    low, high = (network_residuals(network, slices, s) for s in SEVERITY_RANGE)
    residual = np.abs(network_residuals(network, slices, first))
    return float(np.abs(low - high)[brains].mean() / max(residual[brains].mean(), 1e-12))


def rows_of(folder: Path, n_trials: int, severities=None) -> list[dict]:
    """One demo folder's rows: at the detector's severities, or at each of
    ``severities`` alone (a column per severity)."""
    meta, seed, det = load_demo(folder)
    network = det.network_.eval()
    label = f"{network.config.get('conditioning', 'add')}, seed {seed}"
    sets = [tuple(det.severities)] if severities is None else [(s,) for s in severities]
    cohort = demo_cohort(meta)
    first = float(det.severities[0])
    return probe_model(network, cohort, det.intensity_range_, seed, label, n_trials, sets, first)


def probe_model(
    network, cohort, intensity_range, seed, label, n_trials, severity_sets, first=None
) -> list[dict]:
    """Rows of one network: squares on ``n_trials`` slices of the cohort's healthy test
    volumes, restored at each set of ``severity_sets`` (the same slices and positions
    for every set; with more than one set, each set's rows name it in their ``model``),
    and the severity effect on the same slices against the residual at ``first`` (by
    default the first set's first severity)."""
    healthy = [i for i, f in enumerate(cohort.families_test) if f == "healthy"]
    labels = [
        label if len(severity_sets) == 1 else f"{label}, severity {sev[0]:g}"
        for sev in severity_sets
    ]
    rng = np.random.default_rng(seed)
    shares: list[dict] = [{} for _ in severity_sets]
    picked, picked_fg = [], []
    for trial in range(n_trials):
        i = healthy[trial % len(healthy)]
        brain = cohort.brain_masks_test[i]
        volume = scaled(cohort.X_test[i], brain, intensity_range)
        z = int(rng.integers(volume.shape[0] // 3, 2 * volume.shape[0] // 3))
        if brain[z].sum() < 100:
            continue
        picked.append(volume[z])
        picked_fg.append(brain[z])
        # Every set probes the same position: the later sets replay the first's draw.
        state = rng.bit_generator.state
        for k, severities in enumerate(severity_sets):
            draw = rng
            if k:
                draw = np.random.default_rng()
                draw.bit_generator.state = state
            found = restored_shares(network, volume[z], brain[z], severities, draw, 1)
            for key, values in found.items():
                shares[k].setdefault(key, []).extend(values)
    rows = [
        {
            "seed": seed,
            "model": model,
            "severities": list(severities),
            "kind": "square",
            "amplitude": a,
            "side": s,
            "n": len(v),
            "restored_share": float(np.mean(v)),
        }
        for model, severities, found in zip(labels, severity_sets, shares)
        for (a, s), v in sorted(found.items(), key=lambda kv: (-kv[0][0], kv[0][1]))
    ]
    first = float(severity_sets[0][0] if first is None else first)
    effect = severity_effect(network, np.stack(picked), np.stack(picked_fg), first)
    rows.append(
        dict(seed=seed, model=label, kind="severity", n=len(picked), severity_effect=effect)
    )
    return rows


def report(rows: list[dict]) -> str:
    squares = [r for r in rows if r["kind"] == "square"]
    # Square columns per model and severity set; the severity effect per network.
    models = list(dict.fromkeys(r["model"] for r in squares))
    networks = list(dict.fromkeys(r["model"] for r in rows if r["kind"] == "severity"))
    table = []
    for a in AMPLITUDES:
        for s in SIDES:
            sel = {r["model"]: r for r in squares if r["amplitude"] == a and r["side"] == s}
            if sel:
                cells = [f"{sel[m]['restored_share']:.2f}" if m in sel else "" for m in models]
                table.append([f"{a:+.2f}", s, *cells])
    sev = {r["model"]: r for r in rows if r["kind"] == "severity"}
    used = {r["model"]: r["severities"] for r in squares}
    n = sorted({r["n"] for r in squares})
    return (
        "Models (conditioning, seed), each restoring at its own severities: "
        + "; ".join(f"{m}: {used[m]}" for m in models if m in used)
        + f". Squares: {n} positions per cell and model (one per probed slice).\n\n"
        "### restored share of an added square (1: undone, 0: left as it is)\n\n"
        + md_table(["amplitude", "side (px)", *models], table)
        + "\n\n### severity: mean |restoration at 0.05 - at 1.0| / mean residual\n\n"
        + md_table(
            ["model", "slices", "severity effect"],
            [[m, sev[m]["n"], f"{sev[m]['severity_effect']:.3f}"] for m in networks],
        )
    )


def main() -> int:
    ap = demo_model_parser(__doc__, "benchmarks/results/restoration_probe_cpu.md")
    ap.add_argument("--trials", type=int, default=24, help="slices probed per model")
    ap.add_argument(
        "--severities",
        type=float,
        nargs="+",
        default=None,
        help="restore the squares at each of these severities alone, a column each "
        "(default: at the detector's own severities, averaged as its map averages them)",
    )
    args = ap.parse_args()
    return run_on_demo_models(
        args,
        "What the network restores",
        lambda folder: rows_of(folder, args.trials, args.severities),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
