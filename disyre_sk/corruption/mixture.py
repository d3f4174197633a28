"""A per-sample random choice between corruptions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Corrupted, Corruption, _check_input, _rand
from .compose import check_members, member_params

__all__ = ["Mixture"]


class Mixture(Corruption):
    """Corrupt each sample with one member, chosen at random with given weights.

    Where :class:`Compose` stacks corruptions on one image, a mixture gives each sample
    of the batch one of them: a network trained on ``Mixture([DAGCorruption(),
    FPICorruption()])`` meets both kinds of anomaly, each in its pure form. Every
    member's parameters are drawn for the whole batch (so a seed gives the same lesion
    whichever member is chosen) and the chosen member's output is kept per sample.

    Parameters
    ----------
    corruptions : sequence of Corruption
        The members.
    weights : sequence of float, optional
        Relative probabilities of the members; equal by default.

    Examples
    --------
    >>> import torch
    >>> from disyre_sk.corruption import DAGCorruption, FPICorruption, Mixture
    >>> c = Mixture([DAGCorruption(), FPICorruption()], weights=(1, 1))
    >>> x = torch.zeros(8, 1, 32, 32)
    >>> x[:, :, 4:28, 4:28] = torch.rand(8, 1, 24, 24)
    >>> p = c.sample_params(x, torch.Generator().manual_seed(0))
    >>> p["choice"].tolist()  # which member corrupts each sample
    [0, 1, 0, 0, 0, 1, 0, 1]
    >>> c.apply(x, p).image.shape
    torch.Size([8, 1, 32, 32])
    """

    def __init__(
        self, corruptions: Sequence[Corruption], weights: Sequence[float] | None = None
    ) -> None:
        corruptions = check_members(corruptions)
        if weights is not None:
            weights = tuple(float(w) for w in weights)
            if len(weights) != len(corruptions) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(
                    f"weights must be {len(corruptions)} non-negative numbers with a positive "
                    f"sum, one per corruption; got {weights}"
                )
        self.corruptions = corruptions
        self.weights = weights

    def sample_params(
        self,
        x: Tensor,
        generator: torch.Generator,
        foreground: Tensor | None = None,
        severity: float | Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Draw each sample's member, then every member's parameters for the whole batch.

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
            ``"choice"`` (``(B,)`` member indices) and ``"{i}.{key}"`` for the ``key`` of
            member ``i``.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import GaussianCorruption, Mixture
        >>> c = Mixture([GaussianCorruption(), GaussianCorruption()])
        >>> sorted(c.sample_params(torch.rand(2, 1, 4, 4), torch.Generator()))
        ['0.noise', '0.severity', '1.noise', '1.severity', 'choice']
        """
        _check_input(x, foreground)
        n = len(self.corruptions)
        w = torch.tensor(self.weights or (1.0,) * n, dtype=torch.float64)
        edges = torch.cumsum(w / w.sum(), 0)[:-1].to(x.device)
        u = _rand(generator, x.shape[0], device=x.device).to(torch.float64)
        params: dict[str, Tensor] = {"choice": torch.bucketize(u, edges, right=True)}
        for i, c in enumerate(self.corruptions):
            for key, value in c.sample_params(x, generator, foreground, severity).items():
                params[f"{i}.{key}"] = value
        return params

    def apply(
        self, x: Tensor, params: dict[str, Tensor], foreground: Tensor | None = None
    ) -> Corrupted:
        """Apply every member and keep, per sample, the chosen one's output.

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
            Per sample, the image, mask and severity of its member.

        Examples
        --------
        >>> import torch
        >>> from disyre_sk.corruption import GaussianCorruption, Mixture
        >>> c, x = Mixture([GaussianCorruption()]), torch.rand(2, 1, 4, 4)
        >>> p = c.sample_params(x, torch.Generator().manual_seed(0), severity=0.0)
        >>> bool(torch.equal(c.apply(x, p).image, x))
        True
        """
        fg = _check_input(x, foreground)
        choice = params["choice"]
        image, mask, severity = x.clone(), None, None
        for i, c in enumerate(self.corruptions):
            out = c.apply(x, member_params(params, i), fg)
            if mask is None:
                mask, severity = torch.zeros_like(out.mask), torch.zeros_like(out.severity)
            pick = choice == i
            image = torch.where(pick.view(-1, 1, 1, 1), out.image, image)
            mask = torch.where(pick.view(-1, 1, 1, 1), out.mask, mask)
            severity = torch.where(pick, out.severity, severity)
        return Corrupted(image, mask, severity)

    def __repr__(self) -> str:
        inner = ", ".join(repr(c) for c in self.corruptions)
        return f"Mixture([{inner}], weights={self.weights!r})"
