"""Throughput of streaming ``disyre detect`` against a sequential read → map → write loop.

    python benchmarks/stream_detect.py --device cpu                  # < 3 min on 2 cores
    python benchmarks/stream_detect.py --device cuda                 # one GPU, < 90 s
    python benchmarks/stream_detect.py --device cuda:0 --device cuda:1   # several GPUs

Writes synthetic skull-stripped scans (``.nii.gz``, int16, an oblique affine), fits a
small network for a few steps (its weights do not matter for speed) and maps every scan
twice, in one process: once with the naive loop that ``disyre detect`` used to run (read
and normalise a scan, map it, write the map, then the next scan), once with today's
``disyre detect`` (called as ``disyre_sk.cli.main``: reader, per-device workers and
writer threads overlapping). The naive loop's time per stage gives the best overlap possible
(sum of the stages / slowest stage). The two runs' maps are compared voxel by voxel.
Results go to ``benchmarks/results/stream_detect_<device>.md``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.filename_parser import splitext_addext
from scipy.ndimage import gaussian_filter, zoom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import command_line, git_commit, hardware, md_table, now, write_results

from disyre_sk import DISYREDetector
from disyre_sk.cli import main as disyre
from disyre_sk.io import load_nifti, normalize_intensity, save_map

AFFINE = np.array([[0, 0, 1.0, -90], [0, 1.0, 0, -120], [-1.0, 0, 0, 80], [0, 0, 0, 1]])
# Per device type: scans, their (Z, Y, X) shape, the detector's settings. A small network
# in both cases; on the CPU it still takes most of the time.
DEFAULTS = {
    "cpu": (
        24,
        (64, 128, 128),
        dict(patch_size=32, widths=(4, 8), n_res_blocks=1, severities=(0.5,), stride=32),
    ),
    "cuda": (
        # A first GPU run with 12 scans spent 27 s writing them and fitting, then did not
        # finish the naive pass in the 35 s left: gzip-writing float32 maps dominates.
        6,
        (155, 240, 240),  # BraTS's grid
        dict(patch_size=64, widths=(16, 32, 64), severities=(0.25, 0.5), stride=32),
    ),
}


def map_path(folder: Path, scan: Path) -> Path:
    """Where ``disyre detect`` writes the map of ``scan`` (its documented naming)."""
    return folder / f"{splitext_addext(scan.name)[0]}_disyre_map.nii.gz"


def detect(model: Path, scans, folder: Path, devices, io_threads: int) -> None:
    """``disyre detect MODEL SCANS -o FOLDER`` with these devices and I/O threads."""
    argv = ["detect", str(model), *map(str, scans), "-o", str(folder)]
    for device in devices:
        argv += ["--device", device]
    argv += ["--readers", str(io_threads), "--writers", str(io_threads)]
    rc = disyre(argv)
    if rc != 0:
        raise RuntimeError(f"disyre {' '.join(argv[:2])} ... exited with {rc}")


def make_scan(shape, rng) -> np.ndarray:
    """A skull-stripped 'brain': an ellipsoid of smooth texture and noise, 0 outside."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    radii = rng.uniform(0.75, 0.9, size=3)
    inside = sum((g / r) ** 2 for g, r in zip(grids, radii)) <= 1
    small = gaussian_filter(rng.standard_normal([max(4, s // 4) for s in shape]), 1.5)
    factors = [s / t for s, t in zip(shape, small.shape)]
    texture = zoom(small, factors, order=1)[tuple(slice(0, s) for s in shape)]
    texture = 600 + 250 * texture / (texture.std() + 1e-8)
    texture += 20 * rng.standard_normal(shape)
    return (np.clip(texture, 1, None) * inside).astype(np.int16)


def write_scans(folder: Path, n: int, shape, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        # Stored (X, Y, Z) so that the package reads (Z, Y, X) = shape after reorienting.
        data = make_scan(shape, rng).transpose(2, 1, 0)
        path = folder / f"sub-{i:04d}.nii.gz"
        nib.save(nib.Nifti1Image(data, AFFINE), path)
        paths.append(path)
    return paths


def naive(det, scans, out: Path) -> dict[str, float]:
    """The sequential loop: read and normalise, map, write; one scan after the other."""
    out.mkdir(parents=True, exist_ok=True)
    stages = {"read": 0.0, "map": 0.0, "write": 0.0}
    for scan in scans:
        t0 = time.perf_counter()
        volume = normalize_intensity(load_nifti(scan))
        t1 = time.perf_counter()
        maps = det.decision_map(volume[None])
        t2 = time.perf_counter()
        save_map(maps[0], scan, map_path(out, scan))
        t3 = time.perf_counter()
        stages["read"] += t1 - t0
        stages["map"] += t2 - t1
        stages["write"] += t3 - t2
    return stages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", action="append", help="'cpu', 'cuda', 'cuda:1'; repeatable")
    ap.add_argument("--n-scans", type=int, help="scans to map (default: 24 CPU, 6 CUDA)")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    ap.add_argument(
        "--budget-s",
        type=float,
        help="skip a streaming variant that would end past this (default: 170 CPU, 80 CUDA)",
    )
    ap.add_argument("--out", help="results file (default: results/stream_detect_<device>.md)")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    devices = args.device or ["cpu"]
    kind = torch.device(devices[0]).type
    n_scans, shape, settings = DEFAULTS[kind]
    n_scans = args.n_scans or n_scans
    shape = tuple(args.shape or shape)
    budget = args.budget_s or (80.0 if kind == "cuda" else 170.0)
    results = Path(args.out or HERE / "results" / f"stream_detect_{kind}.md")
    work = Path(tempfile.mkdtemp(prefix="stream_detect_"))
    rows: list[list] = []
    diff = 0.0
    try:
        (work / "scans").mkdir()
        scans = write_scans(work / "scans", n_scans, shape)
        train = np.stack([normalize_intensity(load_nifti(s)) for s in scans[:2]])
        det = DISYREDetector(
            **settings, n_steps=2, batch_size=4, device=devices[0], random_state=0
        ).fit(train)
        model = det.save(work / "model.disyre")
        print(
            f"{n_scans} scans of {shape} written, model fitted: {time.perf_counter() - start:.0f} s"
        )
        # Warm-up (first CUDA calls, allocator, page cache), untimed.
        naive(det, scans[:1], work / "warmup")
        detect(model, scans[:1], work / "warmup_stream", devices, 1)

        # Each variant twice, interleaved (the machine's load drifts); the best time counts.
        variants = [("naive", 0), ("streaming", 1), ("streaming", 2)]
        best: dict[tuple, float] = {}
        timings: list[dict] = []
        last = 0.0
        for repeat in range(2):
            for name, io_threads in variants:
                optional = repeat or io_threads == 2  # the ratio needs the other two
                if optional and time.perf_counter() - start + last > budget:
                    print(f"skipped a repeat of {name} {io_threads}: time budget")
                    continue
                folder = work / f"{name}{io_threads}_{repeat}"
                t0 = time.perf_counter()
                if name == "naive":
                    stages = naive(det, scans, folder)
                else:
                    detect(model, scans, folder, devices, io_threads)
                last = time.perf_counter() - t0
                print(f"{name}, {io_threads} reader(s)/writer(s): {last:.1f} s", flush=True)
                best[(name, io_threads)] = min(last, best.get((name, io_threads), np.inf))
                timings.append(
                    {"pipeline": name, "io_threads": io_threads, "repeat": repeat, "seconds": last}
                )
                for scan in scans:
                    delta = load_nifti(map_path(work / "naive0_0", scan)) - load_nifti(
                        map_path(folder, scan)
                    )
                    diff = max(diff, float(np.abs(delta).max()))
                if name == "naive" and last == best[("naive", 0)]:
                    naive_stages = stages  # the stages of the run that counts
                if repeat:
                    shutil.rmtree(folder)
        t_naive = best[("naive", 0)]
        rows = [["naive loop (read → map → write)", devices[0], "—", t_naive]]
        # Streaming with two readers/writers is optional within the budget: a row it did
        # not reach says so rather than failing the run.
        rows += [
            ["streaming", ", ".join(devices), str(k), best.get(("streaming", k))] for k in (1, 2)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    per = {k: v / n_scans for k, v in naive_stages.items()}
    bound = sum(per.values()) / max(per.values())
    table = [
        [name, devs, io, f"{t:.1f}", f"{n_scans / t:.2f}", f"{t_naive / t:.2f}×"]
        if t is not None
        else [name, devs, io, "not run (time budget)", "—", "—"]
        for name, devs, io, t in rows
    ]
    stage_rows = [[k, f"{v:.3f}", f"{100 * v / sum(per.values()):.0f} %"] for k, v in per.items()]
    voxels = int(np.prod(shape))
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    body = "\n\n".join(
        [
            f"{n_scans} synthetic scans of (Z, Y, X) = {shape} ({voxels / 1e6:.2f} M voxels, "
            "`.nii.gz`, int16, oblique affine), mapped by a small network "
            f"(`DISYREDetector({described})`, fitted for 2 steps: the weights do not change "
            "the speed). All runs in this process, after one untimed warm-up scan each; each "
            "variant ran twice, interleaved with the others, and the better time counts; the "
            f"streamed maps differ from the naive loop's by at most {diff:.1e} (max |Δ|).",
            md_table(
                ["pipeline", "devices", "readers / writers", "seconds", "scans/s", "speed-up"],
                table,
            ),
            "Time per scan of each stage in the naive loop (reading: gzip decompression, "
            "reorientation, normalisation; writing: reorientation, gzip compression):",
            md_table(["stage", "s / scan", "share"], stage_rows),
            f"The best speed-up that overlapping these stages can give is {bound:.2f}× (sum "
            "of the stages / slowest stage), before contention: readers, writers and a CPU "
            "worker share the same cores.",
        ]
    )
    info = {"command": command_line(), "commit": git_commit(), "date": now(), **hardware(kind)}
    raw = {
        "n_scans": n_scans,
        "shape": shape,
        "settings": settings,
        "devices": devices,
        "runs": timings,
        "naive_stage_seconds": naive_stages,
        "max_abs_map_difference": diff,
    }
    path = write_results(results, f"Streaming detect ({kind})", info, body, raw=raw)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
