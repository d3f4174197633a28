"""Batched synthetic-anomaly corruptions of graded severity (the user guide's method page).

Every corruption draws its random parameters from an explicit :class:`torch.Generator`
(:meth:`~Corruption.sample_params`) and then applies them deterministically
(:meth:`~Corruption.apply`); calling it does both and returns a :class:`Corrupted`
``(image, mask, severity)``. All work is vectorised torch on the images' device.

* :class:`DAGCorruption` — shape + foreign texture + intensity bias (MICCAI DISYRE);
* :class:`FPICorruption` — shape + foreign texture (ISBI DISYRE);
* :class:`GaussianCorruption` — Gaussian noise on the foreground (ablation);
* :class:`IntensityBiasCorruption` — shape + intensity bias alone;
* :class:`Compose` — several corruptions in sequence;
* :class:`Mixture` — one corruption per sample, chosen at random;
* :class:`RandomShape` — the soft lesion masks the shaped corruptions use.

Examples
--------
>>> import torch
>>> from disyre_sk.corruption import get_corruption
>>> x = torch.zeros(8, 1, 32, 32)
>>> x[:, :, 4:28, 4:28] = torch.rand(8, 1, 24, 24)
>>> out = get_corruption("dag")(x, torch.Generator().manual_seed(0))
>>> out.image.shape, out.severity.shape
(torch.Size([8, 1, 32, 32]), torch.Size([8]))
"""

from __future__ import annotations

from .base import Corrupted, Corruption
from .compose import Compose, DAGCorruption
from .fpi import FPICorruption
from .gaussian import GaussianCorruption
from .intensity import IntensityBiasCorruption
from .mixture import Mixture
from .shapes import RandomShape

__all__ = [
    "Compose",
    "Corrupted",
    "Corruption",
    "DAGCorruption",
    "FPICorruption",
    "GaussianCorruption",
    "IntensityBiasCorruption",
    "Mixture",
    "RandomShape",
    "get_corruption",
]

_REGISTRY: dict[str, type[Corruption]] = {
    "dag": DAGCorruption,
    "fpi": FPICorruption,
    "gaussian": GaussianCorruption,
}


def get_corruption(corruption: str | Corruption) -> Corruption:
    """Return a corruption from its name, or a corruption object unchanged.

    Parameters
    ----------
    corruption : {"dag", "fpi", "gaussian"} or Corruption
        A name gives a new instance with default parameters; an object is returned as is.

    Returns
    -------
    Corruption
        The corruption.

    Raises
    ------
    ValueError
        If ``corruption`` is neither a known name nor a :class:`Corruption`.

    Examples
    --------
    >>> from disyre_sk.corruption import get_corruption
    >>> get_corruption("gaussian")
    GaussianCorruption(sigma_max=0.5)
    >>> c = get_corruption("fpi")
    >>> get_corruption(c) is c
    True
    """
    if isinstance(corruption, Corruption):
        return corruption
    if isinstance(corruption, str) and corruption.lower() in _REGISTRY:
        return _REGISTRY[corruption.lower()]()
    valid = ", ".join(repr(n) for n in _REGISTRY)
    raise ValueError(
        f"unknown corruption {corruption!r}; valid names are {valid}, or pass a Corruption object"
    )
