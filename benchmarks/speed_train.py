"""Sections 1a and 1b of ``speed.py``: the speed of one training step.

- ``train-net`` (:func:`bench_train_network`): one optimisation step of the restoration
  UNet on a fixed random batch (forward, MSE, backward, grad-norm clip, AdamW step, as
  ``fit`` takes it), for each setting of :data:`TRAIN_VARIANTS` (precision, fused
  AdamW, channels_last, cudnn.benchmark, clipping, TF32) against the reference recipe
  (row 0); s/step, patches/s, TFLOP/s, peak GPU memory.
- ``train-e2e`` (:func:`bench_train_e2e`): the steps of a real ``DISYREDetector.fit``,
  timed by a training callback (patch sampling, augmentation, DAG corruption and the
  step), the corruptions timed alone, and the ratio end to end / network alone.

Only the public API: the estimator, its callbacks, the corruptions and the UNet.

:func:`make_train_step` (eager, or compiled whole or per block) is also what the scaling
(``speed_infer.py``) and compile (``speed_compile.py``) sections time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from _common import (
    StepClock,
    backend_flags,
    failure,
    fmt_gib,
    fmt_rate,
    fmt_ratio,
    fmt_s,
    free,
    measure,
    peak_memory,
)
from _speed import autocast, build_net, flops_per_sample, training_slices
from torch import nn

from disyre_sk import DISYREDetector
from disyre_sk.corruption import get_corruption

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
# What DISYREDetector.fit runs (fused AdamW and bf16 autocast on CUDA, the
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
    """A closure doing one optimisation step as ``fit`` does, on a fixed random batch.

    With ``compiled=True``, the forward goes through ``torch.compile(net)``;
    with ``"regional"``, each residual and attention block is compiled in place
    (:func:`compile_regions`). The optimiser and the clipping stay eager, as they would
    in ``fit``.
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
        with autocast(dev, v.precision):
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


def random_patches(slices, fg, batch, patch, dev, seed=0):
    """``batch`` random ``patch``-px crops of the slices with foreground, as tensors."""
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(fg.reshape(len(fg), -1).mean(axis=1) > 0.2)
    h, w = slices.shape[1:]
    xs, fgs = [], []
    for i in rng.choice(keep, size=batch):
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        xs.append(slices[i, y : y + patch, x : x + patch])
        fgs.append(fg[i, y : y + patch, x : x + patch])
    x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32)).to(dev)
    return x, torch.from_numpy(np.stack(fgs)[:, None]).to(dev)


def bench_train_e2e(cfg, dev, budget, report, cohort) -> None:
    b, p = cfg.train_batch, cfg.patch
    slices, fg = training_slices(cfg, cohort)
    # A fit trains on what it is given and then scores it (offset_): a few slices, each
    # mapped once at one severity, keep that epilogue short; sampling from them costs
    # what sampling from many does.
    pick = np.linspace(0, len(slices) - 1, min(len(slices), 16)).round().astype(int)
    n_steps = max(1, cfg.train_warmup) + cfg.train_repeats
    package = PACKAGE_TRAIN[dev.type]
    report.section(
        "train-e2e",
        "1b. Training step, end to end (`DISYREDetector.fit`, every step timed)",
        f"`DISYREDetector(patch_size={p}, widths={tuple(cfg.widths)}, batch_size={b}, "
        f"corruption='dag')` fitted for {n_steps} steps on {len(pick)} axial slices of "
        f"{cfg.bank_subjects} healthy `make_brain_cohort` subjects ({slices.shape[1]}×"
        f"{slices.shape[2]} px, in-plane zoom {cfg.bank_zoom}); each step timed by a "
        "training callback (`on_step_end`, device synchronised), median after "
        f"{max(1, cfg.train_warmup)} warm-up step(s): patch sampling, augmentation, "
        f"corruption and the optimisation step as `fit` runs them ({package}). The "
        "network alone is section 1a's step on a fixed random batch (median of runs before "
        "and after the fit); the corruptions are timed alone on random patches through "
        "their public call.",
        ["stage", "s/batch", "patches/s", "share of end to end"],
    )
    if budget.left() < 2 * cfg.need_train_s:
        report.row("train-e2e", ["all stages", "skipped (time budget)", None, None])
        return
    alone_name = f"network alone, fixed batch ({package})"
    e2e_name = "fit, one step end to end"
    variant = next(v for v in TRAIN_VARIANTS if v.name == package)
    try:
        step = make_train_step(cfg.widths, p, b, dev, variant)

        def alone(fn=step):
            return measure(
                fn,
                dev,
                warmup=max(1, cfg.train_warmup),
                repeats=cfg.train_repeats,
                cap_s=cfg.cap_s,
                budget=budget,
            )

        results: dict[str, float] = {}
        before = alone()
        x, xfg = random_patches(slices, fg, b, p, dev)
        g = torch.Generator(device=dev).manual_seed(0)
        for name, corruption in (
            ("DAG corruption", get_corruption("dag")),
            ("FPI corruption (for comparison)", get_corruption("fpi")),
        ):
            times = measure(
                lambda c=corruption: c(x, g, foreground=xfg),
                dev,
                warmup=max(1, cfg.train_warmup),
                repeats=3 * cfg.train_repeats,  # cheap: more repeats for a stable median
                cap_s=cfg.cap_s,
                budget=budget,
            )
            results[name] = statistics.median(times)
        clock = StepClock(dev)
        DISYREDetector(
            patch_size=p,
            widths=tuple(cfg.widths),
            corruption="dag",
            n_steps=n_steps,
            batch_size=b,
            learning_rate=1e-4,
            warmup_steps=0,
            validation_fraction=0.0,
            window_size="slice",
            severities=(0.5,),
            device=dev,
            random_state=0,
            callbacks=[clock],
        ).fit(slices[pick])
        results[e2e_name] = statistics.median(clock.times[max(1, cfg.train_warmup) :])
        results[alone_name] = statistics.median(before + alone())
        del step
        e2e = results[e2e_name]
        for name, s in results.items():
            report.row("train-e2e", [name, fmt_s(s), fmt_rate(b / s), f"{100 * s / e2e:.1f} %"])
        alone_s = results[alone_name]
        report.note(
            "train-e2e",
            f"end to end / network alone = {e2e / alone_s:.3f} ({fmt_s(e2e)} vs "
            f"{fmt_s(alone_s)} s/step); the difference is what `fit` adds to the network's "
            "step: sampling, augmentation, corruption and bookkeeping.",
        )
    except Exception as exc:
        report.row("train-e2e", ["(setup)", failure(exc), None, None])
    free(dev)
