"""The corruption protocol: draw parameters from a generator, then apply them.

Every corruption in this subpackage splits its work in two, like torchio's
``make_params``/``apply_transform`` and MONAI's ``Randomizable``:

* :meth:`Corruption.sample_params` draws *all* random numbers from an explicit
  :class:`torch.Generator` and returns them as a dict of tensors;
* :meth:`Corruption.apply` is a deterministic function of the image and those parameters.

Calling the object does both. Keeping the randomness in one place makes runs reproducible
from a seed, lets a figure reuse one draw at several severities, and lets tests check the
deterministic part on its own.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Corrupted", "Corruption"]


class Corrupted(NamedTuple):
    """Result of a corruption: the corrupted image, where it changed and how strongly.

    Parameters
    ----------
    image : torch.Tensor
        Corrupted image, shape ``(B, 1, H, W)``, values in [0, 1], same dtype and device as
        the input. Pixels outside the foreground are bitwise equal to the input.
    mask : torch.Tensor
        Soft mask of the corrupted region, shape ``(B, 1, H, W)``, values in [0, 1], zero
        outside the foreground.
    severity : torch.Tensor
        Severity of each sample, shape ``(B,)``, values in [0, 1]; 0 means the image is
        unchanged.

    Examples
    --------
    >>> import torch
    >>> out = Corrupted(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.zeros(2))
    >>> out.severity.shape
    torch.Size([2])
    """

    image: Tensor
    mask: Tensor
    severity: Tensor


class Corruption:
    """Base class of the batched corruptions: sample parameters, then apply them.

    Subclasses implement :meth:`sample_params` and :meth:`apply`; ``__call__`` chains them.
    Instances are plain parameter-holding objects: picklable, with a readable ``repr``
    built from the arguments of ``__init__``.

    Notes
    -----
    Inputs follow one convention everywhere: ``x`` is a floating tensor of shape
    ``(B, 1, H, W)`` with values in [0, 1] and background pixels equal to 0, on any device;
    ``foreground`` is an optional boolean tensor of the same shape (default ``x > 0``);
    ``generator`` is a :class:`torch.Generator` on the same device as ``x`` (a
    ``ValueError`` is raised otherwise). The same generator state gives the same output on
    the same device; CPU and CUDA generators give different streams.

    Examples
    --------
    >>> import torch
    >>> from disyre_sk.corruption import FPICorruption
    >>> c = FPICorruption()
    >>> x = torch.rand(2, 1, 16, 16)
    >>> out = c(x, torch.Generator().manual_seed(0))
    >>> out.image.shape, out.severity.shape
    (torch.Size([2, 1, 16, 16]), torch.Size([2]))
    """

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw the random parameters of one corruption of the batch ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(B, 1, H, W)``, values in [0, 1].
        generator : torch.Generator
            Source of every random number; must be on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground mask with the shape of ``x``; ``None`` means ``x > 0``.
        severity : float, torch.Tensor or None, default=None
            If given (a float or a ``(B,)`` tensor in [0, 1]), fixes the amplitudes so that
            the corruption has this severity; the other parameters are drawn as usual, so
            one seed gives the same shape at every severity.

        Returns
        -------
        dict of str to torch.Tensor
            Parameters for :meth:`apply`.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import GaussianCorruption
        >>> p = GaussianCorruption().sample_params(torch.rand(2, 1, 8, 8),
        ...                                        torch.Generator().manual_seed(0))
        >>> sorted(p)
        ['noise', 'severity']
        """
        raise NotImplementedError

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Apply parameters drawn by :meth:`sample_params`; deterministic.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(B, 1, H, W)``, values in [0, 1].
        params : dict of str to torch.Tensor
            Output of :meth:`sample_params` for a batch of the same shape.
        foreground : torch.Tensor or None, default=None
            Boolean foreground mask; ``None`` means ``x > 0``.

        Returns
        -------
        Corrupted
            ``(image, mask, severity)``.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import GaussianCorruption
        >>> c, x = GaussianCorruption(), torch.rand(2, 1, 8, 8)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0))
        >>> bool((c.apply(x, p).image == c.apply(x, p).image).all())
        True
        """
        raise NotImplementedError

    def __call__(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> Corrupted:
        """Sample parameters from ``generator`` and apply them (see :meth:`sample_params`).

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(B, 1, H, W)``, values in [0, 1].
        generator : torch.Generator
            Source of every random number; must be on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground mask; ``None`` means ``x > 0``.
        severity : float, torch.Tensor or None, default=None
            Forced severity, see :meth:`sample_params`.

        Returns
        -------
        Corrupted
            ``(image, mask, severity)``.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import DAGCorruption
        >>> x = torch.rand(2, 1, 16, 16)
        >>> image, mask, severity = DAGCorruption()(x, torch.Generator().manual_seed(0))
        >>> image.shape, severity.shape
        (torch.Size([2, 1, 16, 16]), torch.Size([2]))
        """
        params = self.sample_params(x, generator, foreground, severity=severity)
        return self.apply(x, params, foreground)

    def __repr__(self) -> str:
        # sklearn-style repr from the __init__ signature: the arguments are the state.
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------- helpers


def _check_input(
    x: Tensor, foreground: Tensor | None, generator: torch.Generator | None = None
) -> Tensor:
    """Validate ``x`` (and ``generator``); return the boolean foreground."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, 1, H, W); got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor; got {x.dtype}")
    if generator is not None:
        _check_generator(generator, x.device)
    if foreground is None:
        return x > 0
    if foreground.shape != x.shape:
        raise ValueError(
            f"foreground must have the shape of x {tuple(x.shape)}; got {tuple(foreground.shape)}"
        )
    fg = foreground.to(device=x.device)
    return fg if fg.dtype == torch.bool else fg != 0


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    """Raise unless ``generator`` is a :class:`torch.Generator` on ``device``."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    gd = generator.device
    if gd.type != device.type or (
        gd.index is not None and device.index is not None and gd.index != device.index
    ):
        raise ValueError(
            f"generator is on {gd} but the images are on {device}; create it with "
            f"torch.Generator(device=x.device)"
        )


def _work_dtype(x: Tensor) -> torch.dtype:
    """Computation dtype: float64 stays, anything else (half, bfloat16) runs in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _rand(generator: torch.Generator, *shape: int, device: torch.device) -> Tensor:
    """Uniform [0, 1) float32 numbers from ``generator``."""
    return torch.rand(shape, generator=generator, device=device)


def _resolve_severity(
    severity: float | Tensor | None, batch: int, device: torch.device
) -> Tensor | None:
    """Turn a forced severity (float, 0-d or ``(B,)`` tensor) into a ``(B,)`` float32 tensor."""
    if severity is None:
        return None
    s = torch.as_tensor(severity, dtype=torch.float32, device=device)
    if s.ndim == 0:
        s = s.expand(batch)
    if s.shape != (batch,):
        raise ValueError(f"severity must be a float or a ({batch},) tensor; got {tuple(s.shape)}")
    if not bool(((s >= 0) & (s <= 1)).all()):
        raise ValueError("severity must lie in [0, 1]")
    return s.clone()


def _finish(x: Tensor, out: Tensor, mask: Tensor, severity: Tensor) -> Corrupted:
    """Clip to [0, 1], keep every pixel outside the mask bitwise equal to ``x``."""
    image = torch.where(mask > 0, out.clamp(0, 1).to(x.dtype), x)
    sev = severity.to(_work_dtype(x)).clamp(0, 1)
    return Corrupted(image, mask.to(x.dtype), sev)
