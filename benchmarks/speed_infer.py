"""Sections 2 and 3 of ``speed.py``: the speed of inference, and how it scales.

- ``infer`` (:func:`bench_inference`): seconds per volume through
  ``DISYREDetector.decision_map`` in ensemble mode, numpy in and map out, for each
  setting of :data:`INFER_VARIANTS` (precision, stride, whole slice, batch,
  channels_last, cudnn.benchmark, cropping) against the reference way (row 0):
  windows/s, TFLOP/s, peak GPU memory and RSS, and how far each map is from the
  reference map.
- ``scaling`` (:func:`bench_scaling`): inference time vs the number of severities, and
  the training step (``speed_train.make_train_step``) vs batch size and patch size.

:class:`InferenceBench` (one volume, one set of weights) is also what the compile section
(``speed_compile.py``) maps with. Only public API: the estimator with its ``network=``
parameter, and the UNet.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from _common import (
    Counting,
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
from _speed import (
    REFERENCE_SEVERITIES,
    Config,
    autocast,
    build_net,
    flops_per_sample,
    inference_volume,
    non_identity,
    set_norm_fp32,
)
from speed_train import PACKAGE_TRAIN, TRAIN_VARIANTS, make_train_step

from disyre_sk import DISYREDetector
from disyre_sk.nn import UNet

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
    """Maps one volume with ``DISYREDetector.decision_map``, one set of weights for all.

    For each network setting (channels_last, GroupNorm precision) and input (whole or
    cropped slices) a detector is fitted for one step on the warm-up slices, with
    ``network=`` building a UNet that holds the shared weights inside :class:`Counting`
    (so every network input is counted), and the weights are restored after the step.
    A variant's precision, windows, batch and severities are then set with
    ``set_params``, as a user would set them after ``fit``. Only public API.
    """

    def __init__(self, cfg: Config, dev, cohort):
        self.cfg, self.dev = cfg, dev
        self.vol, self.fg, self.what, self.full_depth = inference_volume(cfg, cohort)
        net = non_identity(build_net(cfg.widths, torch.device("cpu")))
        self.weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.size_multiple = net.size_multiple
        self.reference_map: np.ndarray | None = None
        # Union foreground bounding box of the volume (the cropped variants' input).
        ys = np.flatnonzero(self.fg.any(axis=(0, 2)))
        xs = np.flatnonzero(self.fg.any(axis=(0, 1)))
        self.box = (slice(None), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        mid = self.vol.shape[0] // 2
        k = max(1, cfg.infer_warmup_slices)
        self.warm = slice(max(0, mid - k // 2), max(0, mid - k // 2) + k)
        self._fitted: dict[tuple, tuple[DISYREDetector, Counting]] = {}
        self.compiled = False

    def detector(self, v: InferVariant) -> tuple[DISYREDetector, Counting]:
        """The fitted detector of ``v``'s network and input, and its counting network."""
        # Fitted in the variant's precision too: on the CPU, a detector maps in bf16 only
        # when it was trained in bf16.
        key = (v.channels_last, v.norm_fp32, v.crop, v.precision)
        if key not in self._fitted:
            built: list[Counting] = []

            def network(**config):
                net = UNet(**config)
                net.load_state_dict(self.weights)
                if v.channels_last:
                    net = net.to(memory_format=torch.channels_last)
                built.append(Counting(set_norm_fp32(net, v.norm_fp32)))
                return built[-1]

            box = self.box if v.crop else (slice(None),)
            det = DISYREDetector(
                patch_size=self.cfg.patch,
                widths=tuple(self.cfg.widths),
                network=network,
                n_steps=1,
                batch_size=1,
                warmup_steps=0,
                validation_fraction=0.0,
                window_size="slice",  # fit's own scoring of its data: one input per slice
                severities=(0.5,),
                map_smoothing=0.0,  # the raw map, as the published method makes it
                device=self.dev,
                precision=v.precision,
                random_state=0,
            ).fit(self.vol[self.warm][box])
            counting = built[-1]
            counting.net.load_state_dict(self.weights)  # undo the one training step
            counting.net.eval()
            self._fitted[key] = (det, counting)
        det, counting = self._fitted[key]
        if self.compiled and not hasattr(counting.net, "_orig_mod"):
            counting.net = torch.compile(counting.net)
        p = self.cfg.patch
        det.set_params(
            precision=v.precision,
            window_size="slice" if v.stride_div == 0 else p,
            stride=None if v.stride_div == 0 else max(1, p // v.stride_div),
            inference_batch_size=v.batch or self.cfg.infer_batch,
            severities=v.severities,
        )
        return det, counting

    def compile(self) -> None:
        """From now on, :meth:`detector` hands out detectors whose network is compiled
        (after their eager one-step fit)."""
        self.compiled = True

    def map(self, det: DISYREDetector, v: InferVariant, vol: np.ndarray) -> np.ndarray:
        # Cropping and pasting back are part of a cropped variant's cost.
        box = self.box if v.crop else (slice(None),)
        maps = np.zeros(vol.shape, dtype=np.float32)
        maps[box] = det.decision_map(vol[box])
        return maps

    def run(self, v: InferVariant, budget, *, repeats: int | None = None) -> dict:
        det, counting = self.detector(v)
        with backend_flags(cudnn_benchmark=v.cudnn_benchmark):
            self.map(det, v, self.vol[self.warm])  # warm-up
            counting.reset()
            maps = None

            def once():
                nonlocal maps
                maps = self.map(det, v, self.vol)

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
            "stride": det.stride,
            "maps": maps,
            "mem": mem,
            "detector": det,
        }

    def rel_diff(self, maps: np.ndarray) -> float | None:
        if self.reference_map is None:
            return None
        ref = self.reference_map[self.fg]
        return float(np.abs(maps[self.fg] - ref).mean() / max(ref.mean(), 1e-12))

    def whole_slice_shape(self, h: int, w: int) -> tuple[int, int]:
        """Network input of a whole-slice map, as ``window_size='slice'`` documents it:
        the slice's foreground box, at least the patch on each side, padded up to the
        network's size step."""
        m, p = self.size_multiple, self.cfg.patch
        return m * math.ceil(max(h, p) / m), m * math.ceil(max(w, p) / m)

    @torch.inference_mode()
    def whole_slice_direct(self, det: DISYREDetector) -> float:
        """Largest gap between a whole-slice ``decision_map`` and |x - net(x)| by hand.

        One window per slice, each slice's own foreground box, covers each pixel once, so
        the Gaussian fusion weights should cancel exactly; this checks it (and the
        documented padding) on the warm-up slices, one at a time, with the detector's
        learned intensity range.
        """
        vol, fgs = self.vol[self.warm], self.fg[self.warm]
        got = det.decision_map(vol)
        net = self.detector(replace(INFER_VARIANTS[0], stride_div=0))[1].net
        low, high = det.intensity_range_
        gap = 0.0
        for z in range(vol.shape[0]):
            ys = np.flatnonzero(fgs[z].any(axis=1))
            xs = np.flatnonzero(fgs[z].any(axis=0))
            if ys.size == 0:
                continue
            crop = (z, slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
            scaled = np.clip((vol[crop] - low) / (high - low), 0.0, 1.0) * fgs[crop]
            x = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).to(self.dev)
            x = x[None, None]
            fg = torch.from_numpy(np.ascontiguousarray(fgs[crop])).to(self.dev).float()
            h, w = x.shape[-2:]
            hp, wp = self.whole_slice_shape(h, w)
            top, left = (hp - h) // 2, (wp - w) // 2
            xp = F.pad(x, (left, wp - w - left, top, hp - h - top))
            total = torch.zeros_like(xp)
            for s in det.severities:
                with autocast(self.dev, det.precision):
                    out = net(xp, s).float().clamp(0, 1)
                total += (xp - out).abs()
            direct = (total / len(det.severities))[0, 0, top : top + h, left : left + w]
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
        "2. Inference: `DISYREDetector.decision_map` (ensemble), seconds per volume",
        f"{bench.what}. UNet widths {cfg.widths}, window P = {cfg.patch} px unless said; "
        f"untrained weights (output layer randomised so maps are not 0; the compute is "
        f"that of a trained model), set in a detector through `network=`, its window, "
        f"batch, precision and severities through `set_params`. Windows without "
        f"foreground are skipped, as the package does. s/volume: numpy in (raw "
        f"intensities, scaled by the detector), numpy map out, median of up to "
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
                gap = bench.whole_slice_direct(r["detector"])
                (hh, ww), cut = r["size"], 2 ** (len(cfg.widths) - 2)
                # What one box for all slices (the earlier way) would have fed the network.
                union = bench.whole_slice_shape(
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
