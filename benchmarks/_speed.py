"""Shared parts of the speed benchmark (``speed.py`` and its section modules).

Not a benchmark itself: what one run measures (:class:`Config`, chosen by
:func:`make_config` from the command line), the detector's network as the sections build
it (:func:`build_net`, :func:`set_norm_fp32`, :func:`non_identity`), FLOPs per sample
from torch's counter (:func:`flops_per_sample`), and the data every section draws from: the
``make_brain_cohort`` subjects, their training slices and the BraTS-like inference volume.
The helpers shared by all benchmarks (timing, memory, results file) are in ``_common.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from _common import failure
from scipy import ndimage as ndi
from torch import nn

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


def autocast(dev, precision: str):
    """Autocast to bf16 for ``precision='bf16'``, else a context that does nothing."""
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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
