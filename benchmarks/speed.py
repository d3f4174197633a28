"""Speed of DISYRE training and inference, on the CPU or one CUDA GPU.

Sections, in priority order (a time budget skips what does not fit, and says so):

1. ``train-net``: one optimisation step of the restoration UNet on a fixed random batch
   (forward, MSE, backward, grad-norm clip, AdamW step, as ``Trainer.train_step``):
   the reference recipe (bf16 autocast, GroupNorm in float32 as CUDA autocast runs it)
   against the package's (GroupNorm kept in bf16, fused AdamW), fp32, channels_last,
   cudnn.benchmark.
2. ``train-e2e``: the same step fed by ``Trainer.make_batch()`` (patch sampling from a
   ``SliceBank`` of ``make_brain_cohort`` slices, augmentation, DAG corruption), stage
   by stage, and the ratio end-to-end / network alone.
3. ``infer``: seconds per volume through ``Restorer`` (ensemble mode): the reference way
   (4 severities, windows of the patch size at stride patch/4, fp32, batch 64), then
   bf16 (GroupNorm in bf16 or, as autocast would, in fp32), channels_last, coarser
   strides, one whole-slice window, larger batches.
4. ``scaling`` (CUDA by default): inference time vs the number of severities; training
   step vs batch size and patch size.
5. ``compile`` (CUDA by default): ``torch.compile`` of the network for training and
   inference, in a child process killed at its time limit, compile time reported apart.

Timing: warm-up calls excluded, ``torch.cuda.synchronize()`` around every timed call,
median of the timed calls (each variant also stops repeating after ``cap`` seconds).
Results go to a markdown file, rewritten after every row, so a run killed by an outer
``timeout`` still leaves every finished row on disk.

Run ``python benchmarks/speed.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    Budget,
    Report,
    backend_flags,
    command_line,
    failure,
    fmt_gib,
    fmt_rate,
    fmt_ratio,
    fmt_s,
    free,
    git_commit,
    hardware,
    measure,
    now,
    peak_memory,
    sync,
)

from disyre_sk._engine.augment import Augmentation
from disyre_sk._engine.inference import Restorer
from disyre_sk._engine.training import SliceBank, Trainer, autocast_for
from disyre_sk.corruption import get_corruption
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.nn import UNet
from disyre_sk.nn.blocks import GroupNorm

REFERENCE_WIDTHS = (32, 64, 96, 128, 256, 256)
QUICK_WIDTHS = (16, 32, 64, 64)
REFERENCE_SEVERITIES = (0.05, 0.25, 0.5, 0.75)
SECTIONS = ("train-net", "train-e2e", "infer", "scaling", "compile")
# In-plane zoom of the 2 mm cohort to a BraTS-like 1 mm-ish grid: the brain's bounding
# box becomes about 188 x 160 px, inside a 240 x 240 slice; 155 slices.
BRATS_ZOOM = (2.1, 2.1)
BRATS_GRID = (155, 240, 240)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Config:
    """What one run measures; chosen from ``--device`` and ``--quick``."""

    widths: tuple[int, ...]
    patch: int
    train_batch: int
    train_warmup: int
    train_repeats: int
    bank_subjects: int
    bank_zoom: tuple[float, float]
    volume: str  # "brats": 155 x 240 x 240 grid; "cohort": the 2 mm cohort grid
    infer_slices: int | None  # central slices only; None: the whole volume
    infer_warmup_slices: int
    infer_batch: int
    infer_repeats: int
    cap_s: float  # a variant stops repeating after this much timed work
    need_train_s: float  # a variant starts only with this much budget left
    need_infer_s: float
    budget_s: float
    sections: tuple[str, ...]
    quick: bool = False  # run only the variants marked quick
    infer_variants: tuple[int, ...] | None = None  # indices into INFER_VARIANTS
    train_variants: tuple[int, ...] | None = None  # indices into TRAIN_VARIANTS
    compile_what: str = "both"


def make_config(args) -> Config:
    if args.device == "cuda":
        cfg = Config(
            widths=REFERENCE_WIDTHS,
            patch=128,
            train_batch=96,
            train_warmup=3,
            train_repeats=10,
            bank_subjects=4,
            bank_zoom=BRATS_ZOOM,
            volume="brats",
            infer_slices=None,
            infer_warmup_slices=8,
            infer_batch=64,
            infer_repeats=2,
            cap_s=12.0,
            need_train_s=8.0,
            need_infer_s=15.0,
            budget_s=420.0,
            sections=SECTIONS,
        )
    elif args.quick:
        # A few seconds per variant on a shared 2-core machine: a smaller network,
        # 64-px patches and six slices of the 2 mm cohort volume.
        cfg = Config(
            widths=QUICK_WIDTHS,
            patch=64,
            train_batch=4,
            train_warmup=1,
            train_repeats=3,
            bank_subjects=2,
            bank_zoom=(1.0, 1.0),
            volume="cohort",
            infer_slices=6,
            infer_warmup_slices=2,
            infer_batch=64,
            infer_repeats=2,
            cap_s=4.0,
            need_train_s=4.0,
            need_infer_s=5.0,
            budget_s=170.0,
            sections=("train-net", "train-e2e", "infer"),
            quick=True,
        )
    else:
        # The reference network on the CPU: a small batch and the central slices of
        # the BraTS-like volume (per-volume time extrapolated, and said so).
        cfg = Config(
            widths=REFERENCE_WIDTHS,
            patch=128,
            train_batch=8,
            train_warmup=1,
            train_repeats=3,
            bank_subjects=2,
            bank_zoom=BRATS_ZOOM,
            volume="brats",
            infer_slices=4,
            infer_warmup_slices=1,
            infer_batch=64,
            infer_repeats=1,
            cap_s=60.0,
            need_train_s=30.0,
            need_infer_s=60.0,
            budget_s=1800.0,
            sections=("train-net", "train-e2e", "infer"),
        )
    changes = {}
    if args.budget_s is not None:
        changes["budget_s"] = args.budget_s
    if args.batch is not None:
        changes["train_batch"] = args.batch
    if args.slices is not None:
        changes["infer_slices"] = args.slices or None
    if getattr(args, "infer_variants", None):
        changes["infer_variants"] = tuple(args.infer_variants)
    if getattr(args, "train_variants", None):
        changes["train_variants"] = tuple(args.train_variants)
    changes["compile_what"] = getattr(args, "compile_what", "both")
    if args.only:
        changes["sections"] = tuple(args.only)
    else:
        extra = [name for name in ("scaling", "compile") if getattr(args, name)]
        changes["sections"] = (*cfg.sections, *(x for x in extra if x not in cfg.sections))
    return replace(cfg, **changes)


# --------------------------------------------------------------------------- network


def build_net(
    widths, dev, *, channels_last: bool = False, norm_fp32: bool = False, seed: int = 0
) -> UNet:
    """The detector's network: attention at the second-deepest level, residual output.

    ``norm_fp32=True`` gives the reference network's GroupNorm (float32 under CUDA
    autocast) instead of the package's, which keeps bf16 inputs in bf16.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(widths=widths, attention_levels=(len(widths) - 2,), residual=True)
    net = net.to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return set_norm_fp32(net, norm_fp32)


def set_norm_fp32(net: nn.Module, on: bool) -> nn.Module:
    """Switch every GroupNorm of ``net`` to autocast's float32 (``on``) or back."""
    for module in net.modules():
        if isinstance(module, GroupNorm):
            module.keep_dtype = not on
    return net


def non_identity(net: UNet, seed: int = 1) -> UNet:
    """Give the zero-initialised output convolution random weights.

    A fresh residual UNet is the identity, so every map would be 0 and no two inference
    variants could be compared; the compute is the same either way.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.conv_out.reset_parameters()
    return net


class Counting(nn.Module):
    """Passes calls through to the network and counts the windows it was given."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.windows = 0
        self.pixels = 0
        self.sizes: set[tuple[int, int]] = set()

    def forward(self, x, severity):
        self.windows += x.shape[0]
        self.pixels += x.shape[0] * x.shape[-2] * x.shape[-1]
        self.sizes.add(tuple(x.shape[-2:]))
        return self.net(x, severity)


_FLOPS: dict[tuple, float | None] = {}


def flops_per_sample(widths, size, train: bool, dev) -> float | None:
    """FLOPs of one sample's forward (and backward when ``train``), counted by torch.

    ``size``: the side of a square input, or its ``(height, width)``.
    """
    h, w = (size, size) if isinstance(size, int) else size
    key = (tuple(widths), h, w, train, dev.type)
    if key not in _FLOPS:
        try:
            from torch.utils.flop_counter import FlopCounterMode

            net = build_net(widths, dev)
            x = torch.rand(1, 1, h, w, device=dev)
            with FlopCounterMode(display=False) as counter:
                if train:
                    net(x, torch.rand(1, device=dev)).square().mean().backward()
                else:
                    with torch.no_grad():
                        net(x, torch.rand(1, device=dev))
            _FLOPS[key] = float(counter.get_total_flops())
            del net
        except Exception as exc:  # a counter problem must not stop the benchmark
            print(f"  (FLOP count failed: {failure(exc)})", flush=True)
            _FLOPS[key] = None
    return _FLOPS[key]


# --------------------------------------------------------------------------- data


def load_cohort(cfg: Config):
    t0 = time.perf_counter()
    cohort = make_brain_cohort(max(1, cfg.bank_subjects), 0, random_state=0)
    return cohort, time.perf_counter() - t0


def zoom_in_plane(volumes: np.ndarray, factors) -> np.ndarray:
    """Linear in-plane zoom of ``(n, Z, Y, X)`` volumes (axial slicing untouched)."""
    if tuple(factors) == (1.0, 1.0):
        return volumes
    return np.stack([ndi.zoom(v, (1.0, *factors), order=1) for v in volumes])


def training_slices(cfg: Config, cohort):
    vols = zoom_in_plane(cohort.X_train[: cfg.bank_subjects], cfg.bank_zoom)
    slices = vols.reshape(-1, *vols.shape[2:]).astype(np.float32)
    return slices, slices > 0


def inference_volume(cfg: Config, cohort):
    """Slices ``(N, H, W)``, their foreground, and a sentence saying what they are."""
    vol = cohort.X_train[0]
    if cfg.volume == "brats":
        z = BRATS_GRID[0] / vol.shape[0]
        vol = ndi.zoom(vol, (z, *BRATS_ZOOM), order=1).clip(0, 1)
        pads = [(0, 0)] + [
            ((g - s) // 2, g - s - (g - s) // 2) for g, s in zip(BRATS_GRID[1:], vol.shape[1:])
        ]
        vol = np.pad(vol[: BRATS_GRID[0]], pads)
        what = "BraTS-like volume (cohort brain zoomed to a 1 mm-ish grid)"
    else:
        what = "2 mm cohort volume"
    fg_full = vol > 0
    ys, xs = np.nonzero(fg_full.any(axis=0))
    bbox = f"{np.ptp(ys) + 1}×{np.ptp(xs) + 1}"
    shape = "×".join(map(str, vol.shape))
    if cfg.infer_slices and cfg.infer_slices < vol.shape[0]:
        mid = vol.shape[0] // 2
        lo = mid - cfg.infer_slices // 2
        vol = vol[lo : lo + cfg.infer_slices]
        what += f", its {cfg.infer_slices} central slices of {shape}"
    else:
        what += f", all of {shape}"
    what += f" (Z×Y×X); in-plane foreground bounding box {bbox} px"
    vol = np.ascontiguousarray(vol, dtype=np.float32)
    return vol, vol > 0, what, int(fg_full.shape[0])


# --------------------------------------------------------------------------- 1. training


@dataclass(frozen=True)
class TrainVariant:
    name: str
    precision: str = "fp32"
    fused: bool = False
    channels_last: bool = False
    cudnn_benchmark: bool = False
    grad_clip: bool = True
    tf32: bool | None = None
    norm_fp32: bool = False  # GroupNorm as autocast runs it (float32), as the reference does
    quick: bool = False
    cuda_only: bool = False


# Most telling first, so that a short time budget (or --train-variants 1 2) still
# measures the target: the package's step against the reference recipe (row 0).
TRAIN_VARIANTS = [
    TrainVariant("bf16, GroupNorm in fp32 (reference recipe)", "bf16", norm_fp32=True, quick=True),
    TrainVariant("bf16, fused AdamW", "bf16", fused=True, quick=True),
    TrainVariant("bf16, fused AdamW, GroupNorm in fp32", "bf16", fused=True, norm_fp32=True),
    TrainVariant("bf16", "bf16"),
    TrainVariant("fp32", quick=True),
    TrainVariant("fp32, fused AdamW", fused=True, quick=True),
    TrainVariant("bf16, fused, channels_last", "bf16", fused=True, channels_last=True),
    TrainVariant(
        "bf16, fused, channels_last, cudnn.benchmark",
        "bf16",
        fused=True,
        channels_last=True,
        cudnn_benchmark=True,
    ),
    TrainVariant("bf16, fused, no grad clip", "bf16", fused=True, grad_clip=False, cuda_only=True),
    TrainVariant("fp32, fused, channels_last", fused=True, channels_last=True, quick=True),
    TrainVariant("fp32 with TF32 off (strict fp32)", tf32=False, cuda_only=True),
]
# What DISYREDetector.fit runs (Trainer: fused AdamW and bf16 autocast on CUDA, the
# network's GroupNorm keeping bf16).
PACKAGE_TRAIN = {
    "cuda": "bf16, fused AdamW",
    "cpu": "fp32",
}


def compile_regions(net: nn.Module) -> nn.Module:
    """Compile each residual and attention block of ``net`` in place; return ``net``.

    Regional compilation: the blocks repeat with few distinct shapes, so inductor
    compiles a handful of small graphs instead of the whole forward and backward, which
    cuts the compile time; the fusions that matter here (GroupNorm + SiLU + the
    embedding add, around each convolution) stay inside a block.
    """
    import torch._dynamo

    from disyre_sk.nn.blocks import AttentionBlock, ResidualBlock

    # One graph per distinct block shape (static: symbolic shapes buy nothing for a
    # fixed batch and patch); the blocks share one code object, so the recompile limit
    # must exceed the number of distinct shapes.
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))
    for module in net.modules():
        if isinstance(module, (ResidualBlock, AttentionBlock)):
            module.compile(dynamic=False)
    return net


def make_train_step(widths, patch, batch, dev, v: TrainVariant, *, compiled: bool | str = False):
    """A closure doing one step like ``Trainer.train_step``, on a fixed random batch.

    With ``compiled=True``, the forward goes through ``torch.compile(net)``;
    with ``"regional"``, each residual and attention block is compiled in place
    (:func:`compile_regions`). The optimiser and the clipping stay eager, as they would
    in the Trainer.
    """
    net = build_net(widths, dev, channels_last=v.channels_last, norm_fp32=v.norm_fp32)
    if compiled == "regional":
        forward = compile_regions(net)
    else:
        forward = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(
        net.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, fused=v.fused or None
    )
    g = torch.Generator(device=dev).manual_seed(0)
    clean = torch.rand(batch, 1, patch, patch, generator=g, device=dev)
    noise = torch.randn(batch, 1, patch, patch, generator=g, device=dev)
    corrupted = (clean + 0.1 * noise).clamp(0, 1)
    severity = torch.rand(batch, generator=g, device=dev)
    if v.channels_last:
        clean = clean.contiguous(memory_format=torch.channels_last)
        corrupted = corrupted.contiguous(memory_format=torch.channels_last)

    def step():
        with autocast_for(dev, v.precision):
            restored = forward(corrupted, severity)
        loss = F.mse_loss(restored.float(), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if v.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    return step


def bench_train_network(cfg, dev, budget, report) -> None:
    b, p = cfg.train_batch, cfg.patch
    flops = flops_per_sample(cfg.widths, p, True, dev)
    n_params = sum(q.numel() for q in build_net(cfg.widths, torch.device("cpu")).parameters())
    report.section(
        "train-net",
        "1a. Training step, network alone",
        f"UNet widths {cfg.widths} ({n_params / 1e6:.1f} M parameters, residual), batch "
        f"{b} of {p}×{p}, fixed random batch; forward + MSE + backward + grad-norm clip "
        f"+ AdamW step. Median of up to {cfg.train_repeats} steps after "
        f"{cfg.train_warmup} warm-up steps. FLOPs per step (torch's counter, forward + "
        f"backward): {'—' if flops is None else f'{flops * b / 1e9:.3g} GFLOP'}. "
        f"★ = what `DISYREDetector.fit` runs on this device. The reference recipe is the "
        f"reference network's: plain bf16 autocast, under which CUDA runs GroupNorm in "
        f"float32 (on the CPU, autocast keeps it in bf16, so both GroupNorm rows match).",
        ["variant", "s/step", "patches/s", "TFLOP/s", "× vs reference recipe", "peak GPU GiB"],
    )
    base = None
    medians: dict[str, float] = {}
    chosen = None if cfg.train_variants is None else {0, *cfg.train_variants}
    for i, v in enumerate(TRAIN_VARIANTS):
        if (cfg.quick and not v.quick) or (v.cuda_only and dev.type != "cuda"):
            continue
        if chosen is not None and i not in chosen:
            continue
        name = v.name + (" ★" if PACKAGE_TRAIN[dev.type] == v.name else "")
        if budget.left() < cfg.need_train_s:
            report.row("train-net", [name, "skipped (time budget)", None, None, None, None])
            continue
        try:
            with backend_flags(cudnn_benchmark=v.cudnn_benchmark, tf32=v.tf32):
                step = make_train_step(cfg.widths, p, b, dev, v)
                with peak_memory(dev) as mem:
                    times = measure(
                        step,
                        dev,
                        warmup=cfg.train_warmup,
                        repeats=cfg.train_repeats,
                        cap_s=cfg.cap_s,
                        budget=budget,
                    )
            del step  # frees the network and optimiser before the next variant
        except Exception as exc:
            report.row("train-net", [name, failure(exc), None, None, None, None])
            free(dev)
            continue
        free(dev)
        s = statistics.median(times)
        medians[v.name] = s
        base = s if v is TRAIN_VARIANTS[0] else base
        report.row(
            "train-net",
            [
                name,
                fmt_s(s),
                fmt_rate(b / s),
                None if flops is None else f"{flops * b / s / 1e12:.3g}",
                None if base is None else fmt_ratio(base / s),
                fmt_gib(mem["gpu"]),
            ],
        )
    # The target: the package's step against the reference recipe, at the
    # same batch; fp32 is the other natural baseline.
    fp32 = medians.get("fp32")
    if fp32 is not None and len(medians) > 1:
        ratios = ", ".join(f"{k}: {fmt_ratio(fp32 / t)}" for k, t in medians.items())
        report.note("train-net", f"× vs fp32: {ratios}.")


def bench_train_e2e(cfg, dev, budget, report, cohort) -> None:
    b, p = cfg.train_batch, cfg.patch
    slices, fg = training_slices(cfg, cohort)
    precision = "bf16" if dev.type == "cuda" else "fp32"
    report.section(
        "train-e2e",
        "1b. Training step, end to end (Trainer.make_batch + Trainer.train_step)",
        f"`SliceBank` of {len(slices)} axial slices of {cfg.bank_subjects} healthy "
        f"`make_brain_cohort` subjects ({slices.shape[1]}×{slices.shape[2]} px, in-plane "
        f"zoom {cfg.bank_zoom}), batch {b} of {p}×{p}; `Augmentation()`, DAG corruption; "
        f"the network set up as `DISYREDetector.fit` does ({precision}"
        f"{', fused AdamW' if dev.type == 'cuda' else ''}). Each stage "
        "timed alone, median of the timed calls.",
        ["stage", "s/batch", "patches/s", "share of end to end"],
    )
    if budget.left() < 2 * cfg.need_train_s:
        report.row("train-e2e", ["all stages", "skipped (time budget)", None, None])
        return
    try:
        bank = SliceBank(slices, fg, p, dev)
        net = build_net(cfg.widths, dev, channels_last=False)
        trainer = Trainer(
            net,
            bank,
            get_corruption("dag"),
            Augmentation(),
            n_steps=10**6,
            batch_size=b,
            learning_rate=1e-4,
            weight_decay=1e-6,
            warmup_steps=500,
            grad_clip=1.0,
            device=dev,
            precision=precision,
            seed=0,
        )
        g = trainer.generator
        x, xfg = bank.sample(b, g)
        xa, fga = trainer.augmentation(x, xfg, g)
        fixed = trainer.make_batch()
        dag, fpi = get_corruption("dag"), get_corruption("fpi")
        alone_name = "train_step on a fixed batch (network alone)"
        e2e_name = "make_batch + train_step (end to end)"
        data_stages = [
            ("bank.sample", lambda: bank.sample(b, g)),
            ("Augmentation()", lambda: trainer.augmentation(x, xfg, g)),
            ("DAG corruption", lambda: dag(xa, g, foreground=fga)),
            ("FPI corruption (for comparison)", lambda: fpi(xa, g, foreground=fga)),
            ("make_batch (sample + augment + DAG)", trainer.make_batch),
        ]
        results: dict[str, float] = {}
        for name, fn in data_stages:
            if budget.left() < cfg.need_train_s / 2:
                results[name] = math.nan
                continue
            # Data stages are cheap: more repeats for a stable median.
            times = measure(
                fn,
                dev,
                warmup=max(1, cfg.train_warmup),
                repeats=3 * cfg.train_repeats,
                cap_s=cfg.cap_s,
                budget=budget,
            )
            results[name] = statistics.median(times)
        # Network alone and end to end interleaved step by step, so that a change of
        # machine load (shared CPUs) hits both sides of the ratio alike.
        pair = {alone_name: [], e2e_name: []}
        fns = {alone_name: lambda: trainer.train_step(*fixed), e2e_name: None}
        fns[e2e_name] = lambda: trainer.train_step(*trainer.make_batch())
        if budget.left() >= cfg.need_train_s:
            for _ in range(max(1, cfg.train_warmup)):
                fns[alone_name]()
                fns[e2e_name]()
            while len(pair[e2e_name]) < cfg.train_repeats:
                for name, fn in fns.items():
                    pair[name] += measure(fn, dev, warmup=0, repeats=1, cap_s=0, budget=budget)
                if sum(pair[e2e_name]) + sum(pair[alone_name]) > cfg.cap_s or budget.left() <= 0:
                    break
        for name, times in pair.items():
            results[name] = statistics.median(times) if times else math.nan
        e2e = results[e2e_name]
        for name, s in results.items():
            if math.isnan(s):
                report.row("train-e2e", [name, "skipped (time budget)", None, None])
            else:
                share = None if math.isnan(e2e) else f"{100 * s / e2e:.1f} %"
                report.row("train-e2e", [name, fmt_s(s), fmt_rate(b / s), share])
        alone = results[alone_name]
        if not (math.isnan(e2e) or math.isnan(alone)):
            report.note(
                "train-e2e",
                f"end to end / network alone = {e2e / alone:.3f} "
                f"({fmt_s(e2e)} vs {fmt_s(alone)} s/step).",
            )
    except Exception as exc:
        report.row("train-e2e", ["(setup)", failure(exc), None, None])
    free(dev)


# --------------------------------------------------------------------------- 2. inference


@dataclass(frozen=True)
class InferVariant:
    name: str
    precision: str = "fp32"
    stride_div: int = 4  # stride = patch // stride_div; 0: one whole-slice window
    batch: int | None = None
    channels_last: bool = False
    cudnn_benchmark: bool = False
    severities: tuple[float, ...] = REFERENCE_SEVERITIES
    crop: bool = False  # crop the volume to its foreground bounding box first
    norm_fp32: bool = False  # GroupNorm as autocast runs it (float32)
    quick: bool = False


INFER_VARIANTS = [
    InferVariant("reference: 4 severities, stride P/4, fp32, batch 64", quick=True),
    InferVariant("bf16", "bf16", quick=True),
    InferVariant("bf16, GroupNorm in fp32 (as autocast runs it)", "bf16", norm_fp32=True),
    InferVariant("whole slice, bf16, 1 severity (0.5)", "bf16", stride_div=0, severities=(0.5,)),
    InferVariant("bf16, channels_last", "bf16", channels_last=True),
    InferVariant("stride P/2", stride_div=2, quick=True),
    InferVariant("stride P (no overlap)", stride_div=1, quick=True),
    InferVariant("whole slice (one window per slice)", stride_div=0, quick=True),
    InferVariant("whole slice, bf16", "bf16", stride_div=0),
    InferVariant("batch 256", batch=256, quick=True),
    InferVariant("batch 1024", batch=1024),
    InferVariant("bf16, batch 256", "bf16", batch=256),
    InferVariant(
        "bf16, channels_last, batch 256, cudnn.benchmark",
        "bf16",
        batch=256,
        channels_last=True,
        cudnn_benchmark=True,
    ),
    InferVariant("bf16, stride P/2, batch 256", "bf16", stride_div=2, batch=256),
    InferVariant("cropped to the foreground box", crop=True, quick=True),
    InferVariant(
        "cropped, bf16, channels_last, batch 256",
        "bf16",
        batch=256,
        channels_last=True,
        crop=True,
    ),
    InferVariant("whole slice, cropped, bf16", "bf16", stride_div=0, crop=True),
]
# What DISYREDetector.decision_map runs (precision 'auto': bf16 on CUDA).
# precision='auto' maps in fp32 on every device (bf16 measured slower on an H200).
PACKAGE_INFER = {"cuda": INFER_VARIANTS[0].name, "cpu": INFER_VARIANTS[0].name}


class InferenceBench:
    """Runs Restorer variants on one volume with one set of weights."""

    def __init__(self, cfg: Config, dev, cohort):
        self.cfg, self.dev = cfg, dev
        self.vol, self.fg, self.what, self.full_depth = inference_volume(cfg, cohort)
        self.net = non_identity(build_net(cfg.widths, dev)).eval()
        self.net_cl = copy.deepcopy(self.net).to(memory_format=torch.channels_last)
        self.reference_map: np.ndarray | None = None
        # Union foreground bounding box of the volume, as SliceBank crops for training.
        ys = np.flatnonzero(self.fg.any(axis=(0, 2)))
        xs = np.flatnonzero(self.fg.any(axis=(0, 1)))
        self.box = (slice(None), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        mid = self.vol.shape[0] // 2
        k = max(1, cfg.infer_warmup_slices)
        self.warm = slice(max(0, mid - k // 2), max(0, mid - k // 2) + k)

    def restorer(self, v: InferVariant, net: nn.Module) -> Restorer:
        p = self.cfg.patch
        # Whole slice: what window_size='slice' runs, one input per slice covering the
        # foreground box, padded to the network's size step.
        stride = p if v.stride_div == 0 else max(1, p // v.stride_div)
        return Restorer(
            net,
            patch_size=p,
            stride=stride,
            whole_slice=v.stride_div == 0,
            size_multiple=self.net.size_multiple,
            severities=v.severities,
            mode="ensemble",
            batch_size=v.batch or self.cfg.infer_batch,
            device=self.dev,
            precision=v.precision,
        )

    def run(self, v: InferVariant, budget, *, repeats: int | None = None) -> dict:
        net = self.net_cl if v.channels_last else self.net
        counting = Counting(set_norm_fp32(net, v.norm_fp32))
        restorer = self.restorer(v, counting)
        box = self.box if v.crop else (slice(None),)
        with backend_flags(cudnn_benchmark=v.cudnn_benchmark):
            restorer.maps(self.vol[self.warm][box], self.fg[self.warm][box])  # warm-up
            counting.windows = counting.pixels = 0
            maps = None

            def once():
                nonlocal maps
                # Cropping (and pasting back) is timed too: it is part of the cost.
                maps = np.zeros(self.vol.shape, dtype=np.float32)
                maps[box] = restorer.maps(self.vol[box], self.fg[box])

            with peak_memory(self.dev) as mem:
                times = measure(
                    once,
                    self.dev,
                    warmup=0,
                    repeats=repeats or self.cfg.infer_repeats,
                    cap_s=self.cfg.cap_s,
                    budget=budget,
                )
        windows = counting.windows // len(times)
        size = max(counting.sizes, key=lambda hw: hw[0] * hw[1])
        return {
            "s": statistics.median(times),
            "windows": windows,
            "pixels": counting.pixels // len(times),
            "size": size,
            "stride": restorer.stride,
            "maps": maps,
            "mem": mem,
            "restorer": restorer,
        }

    def rel_diff(self, maps: np.ndarray) -> float | None:
        if self.reference_map is None:
            return None
        ref = self.reference_map[self.fg]
        return float(np.abs(maps[self.fg] - ref).mean() / max(ref.mean(), 1e-12))

    @torch.inference_mode()
    def whole_slice_direct(self, restorer: Restorer) -> float:
        """Largest gap between Restorer's whole-slice map and |x - net(x)| done by hand.

        One window per slice, each slice's own foreground box, covers each pixel once, so
        the Gaussian fusion weights should cancel exactly; this checks it on the warm-up
        slices, one at a time.
        """
        vol, fgs = self.vol[self.warm], self.fg[self.warm]
        got = restorer.maps(vol, fgs)
        gap = 0.0
        for z in range(vol.shape[0]):
            ys = np.flatnonzero(fgs[z].any(axis=1))
            xs = np.flatnonzero(fgs[z].any(axis=0))
            if ys.size == 0:
                continue
            crop = (z, slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
            x = torch.from_numpy(np.ascontiguousarray(vol[crop])).to(self.dev)[None, None]
            fg = torch.from_numpy(np.ascontiguousarray(fgs[crop])).to(self.dev).float()
            h, w = x.shape[-2:]
            hp, wp = restorer.whole_slice_shape(h, w)
            top, left = (hp - h) // 2, (wp - w) // 2
            xp = F.pad(x, (left, wp - w - left, top, hp - h - top))
            total = torch.zeros_like(xp)
            for s in restorer.severities:
                with autocast_for(self.dev, restorer.precision):
                    out = self.net(xp, s).float().clamp(0, 1)
                total += (xp - out).abs()
            direct = (total / len(restorer.severities))[0, 0, top : top + h, left : left + w]
            gap = max(gap, float(np.abs(got[crop] - (direct * fg).cpu().numpy()).max()))
        return gap


def bench_inference(cfg, dev, budget, report, cohort) -> InferenceBench | None:
    headers = [
        "variant",
        "window",
        "s/volume",
        "windows",
        "windows/s",
        "TFLOP/s",
        "× vs reference",
        "peak GPU GiB",
        "peak RSS GiB",
        "Δ map vs reference",
    ]
    try:
        bench = InferenceBench(cfg, dev, cohort)
    except Exception as exc:
        report.section("infer", "2. Inference", failure(exc), headers)
        return None
    extrap = ""
    if cfg.infer_slices and bench.vol.shape[0] < bench.full_depth:
        extrap = (
            f" Only {bench.vol.shape[0]} slices are run here: s/volume is the time for "
            f"them; × {bench.full_depth / bench.vol.shape[0]:.1f} gives a full volume, an "
            "over-estimate since central slices hold the most foreground."
        )
    report.section(
        "infer",
        "2. Inference: `Restorer` (ensemble mode), seconds per volume",
        f"{bench.what}. UNet widths {cfg.widths}, window P = {cfg.patch} px unless said; "
        f"untrained weights (output layer randomised so maps are not 0; the compute is "
        f"that of a trained model). Windows without foreground are skipped, as the "
        f"package does. s/volume: numpy in, numpy map out, median of up to "
        f"{cfg.infer_repeats} runs after a warm-up on {cfg.infer_warmup_slices} slices. "
        f"windows = network inputs per run (all severities). Δ map = mean |map − "
        f"reference map| / mean reference map over the foreground; with untrained weights "
        f"it shows numerical (bf16) and tiling differences, not accuracy. ★ = what "
        f"`DISYREDetector.decision_map` runs on this device (batch 64, stride P/4).{extrap}",
        headers,
    )
    ref_s = None
    chosen = None if cfg.infer_variants is None else {0, *cfg.infer_variants}
    for i, v in enumerate(INFER_VARIANTS):
        if (cfg.quick and not v.quick) or (chosen is not None and i not in chosen):
            continue
        name = v.name + (" ★" if v.name == PACKAGE_INFER[dev.type] else "")
        if budget.left() < cfg.need_infer_s:
            report.row("infer", [name, None, "skipped (time budget)", *[None] * 7])
            continue
        try:
            r = bench.run(v, budget)
        except Exception as exc:
            report.row("infer", [name, None, failure(exc), *[None] * 7])
            free(dev)
            continue
        if v is INFER_VARIANTS[0]:
            ref_s = r["s"]
            bench.reference_map = r["maps"]
        flops = flops_per_sample(cfg.widths, r["size"], False, dev)
        delta = bench.rel_diff(r["maps"])
        report.row(
            "infer",
            [
                name,
                "×".join(map(str, r["size"])) + ("" if v.stride_div == 0 else f"/{r['stride']}"),
                fmt_s(r["s"]),
                r["windows"],
                fmt_rate(r["windows"] / r["s"]),
                None if flops is None else f"{flops * r['windows'] / r['s'] / 1e12:.3g}",
                None if ref_s is None else fmt_ratio(ref_s / r["s"]),
                fmt_gib(r["mem"]["gpu"]),
                fmt_gib(r["mem"]["host"]),
                None if delta is None or v is INFER_VARIANTS[0] else f"{delta:.2e}",
            ],
        )
        if v.stride_div == 0 and v.precision == "fp32":
            try:
                gap = bench.whole_slice_direct(r["restorer"])
                (hh, ww), cut = r["size"], 2 ** (len(cfg.widths) - 2)
                # What one box for all slices (the earlier way) would have fed the network.
                union = r["restorer"].whole_slice_shape(
                    bench.box[1].stop - bench.box[1].start, bench.box[2].stop - bench.box[2].start
                )
                n_fg = int(bench.fg.reshape(bench.fg.shape[0], -1).any(axis=1).sum())
                union_px = n_fg * len(v.severities) * union[0] * union[1]
                report.note(
                    "infer",
                    f"Whole slice (`window_size='slice'`): one input per slice, its own "
                    f"foreground box padded to the size step (largest {hh}×{ww}); its map "
                    f"matches |x − "
                    f"net(x)| computed directly to {gap:.1e}. The network then sees "
                    f"self-attention over up to {(hh // cut) * (ww // cut)} positions instead of "
                    f"the trained patch's {(cfg.patch // cut) ** 2}: its accuracy is measured "
                    "on a trained model by benchmarks/fast_inference.py. Network input per "
                    f"volume: {r['pixels'] / 1e6:.3g} Mpixels, against {union_px / 1e6:.3g} "
                    f"({union_px / max(r['pixels'], 1):.2f}×) had every slice been given one "
                    f"box, the union of all slices' brains ({union[0]}×{union[1]}).",
                )
            except Exception as exc:
                report.note("infer", f"whole-slice direct check {failure(exc)}")
        del r
        free(dev)
    if dev.type == "cpu":
        report.note(
            "infer",
            "Peak RSS is per variant (reset through /proc/self/clear_refs) and includes the "
            "Python process, torch and the volume.",
        )
    return bench


# --------------------------------------------------------------------------- 3. scaling


def bench_scaling(cfg, dev, budget, report, bench: InferenceBench | None) -> None:
    report.section(
        "scale-sev",
        "3a. Inference vs number of severities",
        "As section 2's ★ row (the package's own setting on this device), one timed run per row.",
        ["severities", "s/volume", "windows", "windows/s", "s per severity"],
    )
    pkg = next(v for v in INFER_VARIANTS if v.name == PACKAGE_INFER[dev.type])
    grids = [(0.5,), (0.25, 0.75), REFERENCE_SEVERITIES, tuple(np.linspace(0.05, 0.95, 8))]
    for sev in grids:
        label = f"{len(sev)}: " + ", ".join(f"{s:.2g}" for s in sev)
        if bench is None or budget.left() < cfg.need_infer_s:
            report.row("scale-sev", [label, "skipped (time budget)", None, None, None])
            continue
        try:
            r = bench.run(replace(pkg, severities=sev), budget, repeats=1)
            report.row(
                "scale-sev",
                [
                    label,
                    fmt_s(r["s"]),
                    r["windows"],
                    fmt_rate(r["windows"] / r["s"]),
                    fmt_s(r["s"] / len(sev)),
                ],
            )
            del r
        except Exception as exc:
            report.row("scale-sev", [label, failure(exc), None, None, None])
        free(dev)

    pkg_train = next(v for v in TRAIN_VARIANTS if v.name == PACKAGE_TRAIN[dev.type])
    report.section(
        "scale-train",
        "3b. Training step vs batch and patch size (network alone)",
        f"Setting: {pkg_train.name} (what `fit` runs on this device).",
        ["batch", "patch", "s/step", "patches/s", "Mpixel/s", "TFLOP/s", "peak GPU GiB"],
    )
    # On CUDA: batch 16, 48, 96 at 128 px, and 64, 192 px at batch 96.
    b0, p0, m = cfg.train_batch, cfg.patch, 2 ** (len(cfg.widths) - 1)
    shapes = [(max(1, b0 // 6), p0), (max(1, b0 // 2), p0), (b0, p0)]
    shapes += [(b0, max(m, p0 // 2 // m * m)), (b0, 3 * p0 // 2 // m * m)]
    for b, p in shapes:
        if budget.left() < cfg.need_train_s:
            report.row("scale-train", [b, p, "skipped (time budget)", *[None] * 4])
            continue
        try:
            with backend_flags(cudnn_benchmark=pkg_train.cudnn_benchmark):
                step = make_train_step(cfg.widths, p, b, dev, pkg_train)
                with peak_memory(dev) as mem:
                    times = measure(
                        step,
                        dev,
                        warmup=cfg.train_warmup,
                        repeats=cfg.train_repeats,
                        cap_s=cfg.cap_s,
                        budget=budget,
                    )
            del step
            s = statistics.median(times)
            flops = flops_per_sample(cfg.widths, p, True, dev)
            report.row(
                "scale-train",
                [
                    b,
                    p,
                    fmt_s(s),
                    fmt_rate(b / s),
                    f"{b * p * p / s / 1e6:.3g}",
                    None if flops is None else f"{flops * b / s / 1e12:.3g}",
                    fmt_gib(mem["gpu"]),
                ],
            )
        except Exception as exc:
            report.row("scale-train", [b, p, failure(exc), *[None] * 4])
        free(dev)


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
            bench.net, bench.net_cl = torch.compile(bench.net), torch.compile(bench.net_cl)
        t0 = time.perf_counter()
        bench.restorer(pkg, bench.net_cl if pkg.channels_last else bench.net).maps(
            bench.vol[bench.warm], bench.fg[bench.warm]
        )
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
        "the warm-up slices through Restorer); a new batch shape (the last, smaller batch "
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
        cmd = [sys.executable, str(Path(__file__).resolve()), "--device", args.device]
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
