"""The severity axis: pure functions shared by training and inference.

Severity ``s`` lies in ``[0, 1]``: 0 leaves an image unchanged, 1 is the strongest
synthetic anomaly.  The same axis conditions the network at training time (the
corruption reports the severity it applied) and at inference time (the severities at
which a scan is restored), so nothing here maps severities to diffusion timesteps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "check_severities",
    "cold_diffusion_step",
    "multistep_severities",
    "warmup_cosine_factor",
]


def check_severities(severities: Sequence[float] | float) -> tuple[float, ...]:
    """Validate inference severities and return them as a tuple of floats.

    Parameters
    ----------
    severities : float or sequence of float
        Severities in ``(0, 1]``.

    Returns
    -------
    tuple of float
        The severities in the order given.

    Raises
    ------
    ValueError
        If the sequence is empty, holds a non-finite value or one outside ``(0, 1]``.

    Examples
    --------
    >>> check_severities([0.05, 0.25, 0.5, 0.75])
    (0.05, 0.25, 0.5, 0.75)
    >>> check_severities(0.5)
    (0.5,)
    """
    values = np.atleast_1d(np.asarray(severities, dtype=float))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"severities must be a non-empty sequence of floats in (0, 1], got {severities!r}."
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 1):
        raise ValueError(
            f"every severity must lie in (0, 1]; got {values.tolist()}. Severity 0 means "
            "'no anomaly', at which the network has nothing to restore."
        )
    return tuple(float(v) for v in values)


def multistep_severities(severities: Sequence[float]) -> tuple[float, ...]:
    """Order severities for the cold-diffusion sampler: strongest first, no duplicates.

    Parameters
    ----------
    severities : sequence of float
        Severities in ``(0, 1]``.

    Returns
    -------
    tuple of float
        Unique severities in decreasing order.

    Examples
    --------
    >>> multistep_severities([0.05, 0.25, 0.5, 0.75])
    (0.75, 0.5, 0.25, 0.05)
    """
    return tuple(sorted(set(check_severities(severities)), reverse=True))


def cold_diffusion_step(
    x_s: torch.Tensor, x0_hat: torch.Tensor, severity: float, next_severity: float
) -> torch.Tensor:
    """Move an image from one severity to a lower one, keeping part of its residual.

    ``x_next = x0_hat + (next_severity / severity) * (x_s - x0_hat)``: the residual
    ``x_s - x0_hat`` is what the network removed; a lower severity keeps a
    proportionally smaller fraction of it, and severity 0 returns ``x0_hat``.

    Parameters
    ----------
    x_s : torch.Tensor
        The image at ``severity``.
    x0_hat : torch.Tensor
        The network's restoration of ``x_s``.
    severity : float
        Current severity, in ``(0, 1]``.
    next_severity : float
        Target severity, in ``[0, severity]``.

    Returns
    -------
    torch.Tensor
        The image at ``next_severity``.

    Examples
    --------
    >>> import torch
    >>> x, x0 = torch.ones(2), torch.zeros(2)
    >>> cold_diffusion_step(x, x0, 0.5, 0.25)
    tensor([0.5000, 0.5000])
    """
    if not 0 < severity <= 1 or not 0 <= next_severity <= severity:
        raise ValueError(
            f"need 0 <= next_severity <= severity <= 1 and severity > 0, got "
            f"severity={severity}, next_severity={next_severity}."
        )
    return x0_hat + (next_severity / severity) * (x_s - x0_hat)


def warmup_cosine_factor(step: int, n_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to zero.

    Parameters
    ----------
    step : int
        Optimisation step, counted from 0.
    n_steps : int
        Total number of steps.
    warmup_steps : int
        Steps of linear warm-up from ``1 / (warmup_steps + 1)`` to 1.

    Returns
    -------
    float
        Factor in ``[0, 1]`` to multiply the base learning rate by.

    Examples
    --------
    >>> warmup_cosine_factor(0, 100, 0)
    1.0
    >>> round(warmup_cosine_factor(50, 100, 0), 3)
    0.5
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, n_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
