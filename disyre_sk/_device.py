"""Device and precision policy, and memory estimates checked before allocation.

A leaf module: the estimator, training, inference, persistence and streaming all ask it
where to run and in which precision, so the policy lives in one place.
"""

from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(device) -> torch.device:
    """Turn the ``device`` parameter into a usable :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(device)
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA but torch sees no CUDA device here; "
            "use device='auto' or 'cpu'."
        )
    return resolved


def check_device_name(device) -> None:
    """Refuse a ``device`` value that names no device, without needing that device here.

    A model trained on a GPU keeps ``device='cuda'`` when it is unpickled on a laptop and
    maps on the CPU: the value is checked for what it says, not for what this machine has.
    """
    if isinstance(device, str) and device == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from exc


def training_precision(device: torch.device, precision: str) -> str:
    """``'auto'`` is bf16 on CUDA and fp32 elsewhere; explicit settings are kept."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def mapping_precision(device: torch.device, requested: str, trained: str) -> str:
    """The precision ``decision_map`` runs in: bf16 only when asked for.

    ``'auto'`` and ``'fp32'`` map in fp32. On an H200, bf16 mapping was slower than fp32
    with TF32 convolutions (3.43 against 3.13 s per volume in
    ``benchmarks/results/speed_cuda.md``, 1.07 against 0.799 s in
    ``benchmarks/results/fast_inference_cuda.md``): the GroupNorm that keeps bf16 in
    bf16 saves the memory training needs, not time. ``'bf16'`` maps in bf16 on CUDA;
    on the CPU only a model trained there in bf16 does (``trained``, the resolved
    training precision).
    """
    if requested != "bf16":
        return "fp32"
    return "bf16" if device.type == "cuda" else trained


def inference_precision(device: torch.device, precision: str) -> str:
    """The precision a loaded model runs in: bf16 only where it was meant for, CUDA."""
    return "fp32" if device.type != "cuda" and precision == "bf16" else precision


def autocast_for(device: torch.device, precision: str):
    """Autocast context for the precision setting ('fp32' or 'bf16')."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (host RAM for the CPU); None if unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        if device.type == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, RuntimeError, ValueError):
        pass
    return None


def activation_bytes(
    batch: int,
    side: int,
    widths,
    n_res_blocks: int,
    training: bool,
    attention_levels=(),
    quadratic_attention: bool = False,
) -> int:
    """A lower bound on the activation memory of one UNet call on ``batch`` squares.

    Each level holds at least one float32 feature map per residual block on the way
    down and up (training keeps them all for the backward pass; inference needs two
    levels at a time). Where attention materialises its ``tokens x tokens`` weights
    (``quadratic_attention``: PyTorch's CPU kernels), each attention level adds at least
    one such matrix per sample. Real use is several times more; a size refused on this
    bound could never have run.
    """
    per_level = [
        batch * max(1, side // 2**i) ** 2 * int(w) * 4 * max(1, n_res_blocks)
        for i, w in enumerate(widths)
    ]
    total = 2 * sum(per_level) if training else 2 * max(per_level)
    if quadratic_attention:
        tokens = [max(1, side // 2**i) ** 2 for i in sorted(set(attention_levels))]
        total += max((batch * t * t * 4 for t in tokens), default=0)
    return total


def check_fits(estimate: int, device: torch.device, what: str, advice: str) -> None:
    """Refuse, before allocating, a job whose lower-bound memory exceeds the device's."""
    total = device_memory(device)
    if total is not None and estimate > total:
        raise ValueError(
            f"{what} needs at least {estimate / 2**30:.1f} GiB of memory, more than the "
            f"{total / 2**30:.1f} GiB that {device} has; {advice}."
        )
