"""Composite corruptions: DISYRE's DAG (shape + texture + bias) and a generic sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import (
    Corrupted,
    Corruption,
    _check_input,
    _finish,
    _resolve_severity,
    _work_dtype,
)
from .fpi import _apply_texture, _sample_texture_params
from .intensity import _apply_bias, _check_n_classes, _check_p_bright, _sample_bias_params
from .shapes import _KINDS, _ShapedCorruption

__all__ = ["Compose", "DAGCorruption"]


class DAGCorruption(_ShapedCorruption):
    """Disentangled anomaly generation: one shape, a foreign texture, then an intensity bias.

    The MICCAI DISYRE corruption (the method page's steps 1–4). One soft mask ``m`` per sample
    (:class:`~disyre_sk.corruption.shapes.RandomShape`) is used by both steps:

    1. texture — foreign patch interpolation with ``a_tex ~ U(0, 1)``
       (:class:`~disyre_sk.corruption.FPICorruption`);
    2. bias — ``sign * a_bias * m`` added to a random subset of intensity classes,
       ``a_bias ~ U(0, 1)``, then clipping to [0, 1]
       (:class:`~disyre_sk.corruption.IntensityBiasCorruption`).

    The severity is ``max(a_tex, largest actual change from the bias)`` (0 where the mask
    is empty).

    Parameters
    ----------
    box_fraction : float, default=0.5
        Side of the box holding the shape, as a fraction of ``min(H, W)``.
    sigma_range : tuple of float, default=(0.0, 5.0)
        Range of the mask blur sigma in pixels (sharp to diffuse edges).
    shapes : tuple of str, default=("ellipse", "rectangle", "blob")
        Shapes to draw the mask from.
    size_range : tuple of float, default=(0.25, 1.0)
        Range of the shape's semi-axes, as fractions of half the box side.
    blob_roughness : float, default=0.8
        Boundary irregularity of blobs.
    n_classes : tuple of int, default=(3, 5)
        Inclusive range of the number of intensity classes of the bias step.
    p_bright : float, default=0.5
        Probability that the bias step brightens (else it darkens).

    Notes
    -----
    A forced severity ``s`` sets ``a_tex = s`` and ``a_bias = s * u`` with the drawn
    ``u ~ U(0, 1)``: the texture carries the severity and the bias stays below it, so the
    reported severity is exactly ``s`` (where the mask is non-empty) and one seed gives
    the same lesion, growing, at every ``s``.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(4, 1, 32, 32)
    >>> x[:, :, 4:28, 4:28] = torch.rand(4, 1, 24, 24)
    >>> c = DAGCorruption()
    >>> out = c(x, torch.Generator().manual_seed(0))
    >>> out.image.shape, out.mask.shape, out.severity.shape
    (torch.Size([4, 1, 32, 32]), torch.Size([4, 1, 32, 32]), torch.Size([4]))
    >>> c(x, torch.Generator().manual_seed(0), severity=0.5).severity.tolist()
    [0.5, 0.5, 0.5, 0.5]
    """

    def __init__(
        self,
        box_fraction: float = 0.5,
        sigma_range: tuple[float, float] = (0.0, 5.0),
        shapes: tuple[str, ...] = _KINDS,
        size_range: tuple[float, float] = (0.25, 1.0),
        blob_roughness: float = 0.8,
        n_classes: tuple[int, int] = (3, 5),
        p_bright: float = 0.5,
    ) -> None:
        super().__init__(box_fraction, sigma_range, shapes, size_range, blob_roughness)
        self.n_classes = _check_n_classes(n_classes)
        self.p_bright = _check_p_bright(p_bright)

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw the shared mask, the texture parameters and the bias parameters.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        generator : torch.Generator
            Source of every random number, on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0``.
        severity : float, torch.Tensor or None, default=None
            Forces the severity: ``a_tex = s``, ``a_bias = s * u`` (see Notes of the class).

        Returns
        -------
        dict of str to torch.Tensor
            Shape parameters, ``a_tex``, ``source``, ``source_center``, ``a_bias``,
            ``bias_sign``, ``n_classes`` and ``class_bits``.

        Examples
        --------
        >>> import torch
        >>> p = DAGCorruption().sample_params(torch.rand(2, 1, 16, 16),
        ...                                   torch.Generator().manual_seed(0))
        >>> "a_tex" in p and "a_bias" in p
        True
        """
        fg = _check_input(x, foreground, generator)
        b = x.shape[0]
        params = self._shape().sample_params(fg, generator)
        params.update(_sample_texture_params(fg, generator))
        params.update(_sample_bias_params(b, generator, x.device, self.n_classes, self.p_bright))
        forced = _resolve_severity(severity, b, x.device)
        if forced is not None:
            params["a_tex"] = forced
            params["a_bias"] = forced * params["a_bias"]
        return params

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Render the mask, blend the foreign texture, add the bias; deterministic.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        params : dict of str to torch.Tensor
            Output of :meth:`sample_params`.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0``.

        Returns
        -------
        Corrupted
            ``(image, mask, severity)``, severity = ``max(a_tex, bias change)``.

        Examples
        --------
        >>> import torch
        >>> c, x = DAGCorruption(), torch.rand(2, 1, 16, 16)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0), severity=0.0)
        >>> bool(torch.equal(c.apply(x, p).image, x))
        True
        """
        fg = _check_input(x, foreground)
        dt = _work_dtype(x)
        mask = self._shape().render(params, fg, dtype=dt)
        textured, nonempty = _apply_texture(x.to(dt), mask, params)
        # Bias classes come from the textured image: the bias acts on what is there now.
        out, change = _apply_bias(textured, fg, mask, params, max(self.n_classes))
        severity = torch.maximum(params["a_tex"].to(dt) * nonempty, change)
        return _finish(x, out, mask, severity)


def check_members(corruptions) -> tuple:
    """The members of a composite corruption as a tuple; a TypeError unless all are."""
    corruptions = tuple(corruptions)
    if not corruptions or not all(isinstance(c, Corruption) for c in corruptions):
        raise TypeError("corruptions must be a non-empty sequence of Corruption objects")
    return corruptions


def member_params(params: dict, i: int) -> dict:
    """Member ``i``'s parameters out of a composite's ``"{i}.{key}"`` dictionary."""
    prefix = f"{i}."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class Compose(Corruption):
    """Apply several corruptions in sequence; severity and mask are the element-wise maxima.

    Parameters are drawn for every member from the same generator, in order, all from the
    input batch (before any member is applied); :meth:`apply` then runs the members one
    after the other on the running image. A forced severity is passed to every member.

    Parameters
    ----------
    corruptions : sequence of Corruption
        The members, applied first to last.

    Examples
    --------
    >>> import torch
    >>> from disyre_sk.corruption import FPICorruption, GaussianCorruption
    >>> c = Compose([FPICorruption(), GaussianCorruption(sigma_max=0.1)])
    >>> x = torch.rand(2, 1, 16, 16)
    >>> out = c(x, torch.Generator().manual_seed(0))
    >>> out.image.shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, corruptions: Sequence[Corruption]) -> None:
        self.corruptions = check_members(corruptions)

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw every member's parameters; keys are prefixed with the member's index.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        generator : torch.Generator
            Source of every random number, on ``x.device``.
        foreground : torch.Tensor or None, default=None
            Boolean foreground; ``None`` means ``x > 0``.
        severity : float, torch.Tensor or None, default=None
            Forced severity, passed to every member.

        Returns
        -------
        dict of str to torch.Tensor
            ``"{i}.{key}"`` for the ``key`` of member ``i``.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import GaussianCorruption
        >>> c = Compose([GaussianCorruption(), GaussianCorruption()])
        >>> sorted(c.sample_params(torch.rand(1, 1, 4, 4), torch.Generator()))
        ['0.noise', '0.severity', '1.noise', '1.severity']
        """
        params: dict[str, Tensor] = {}
        for i, c in enumerate(self.corruptions):
            for key, value in c.sample_params(x, generator, foreground, severity).items():
                params[f"{i}.{key}"] = value
        return params

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Apply the members in order; deterministic.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, 1, H, W)`` in [0, 1].
        params : dict of str to torch.Tensor
            Output of :meth:`sample_params`.
        foreground : torch.Tensor or None, default=None
            Boolean foreground (of ``x``; reused for every member); ``None`` means
            ``x > 0``.

        Returns
        -------
        Corrupted
            Final image, element-wise maximum of the masks and of the severities.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import GaussianCorruption
        >>> c, x = Compose([GaussianCorruption()]), torch.rand(2, 1, 4, 4)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0), severity=0.0)
        >>> bool(torch.equal(c.apply(x, p).image, x))
        True
        """
        fg = _check_input(x, foreground)
        image, mask, severity = x, None, None
        for i, c in enumerate(self.corruptions):
            out = c.apply(image, member_params(params, i), fg)
            image = out.image
            mask = out.mask if mask is None else torch.maximum(mask, out.mask)
            severity = out.severity if severity is None else torch.maximum(severity, out.severity)
        return Corrupted(image, mask, severity)

    def __repr__(self) -> str:
        inner = ", ".join(repr(c) for c in self.corruptions)
        return f"Compose([{inner}])"
