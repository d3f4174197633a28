"""The severity-conditioned restoration UNet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    AttentionBlock,
    Downsample,
    ResidualBlock,
    SinusoidalEmbedding,
    Upsample,
    make_group_norm,
)

__all__ = ["UNet"]


class _Level(nn.Module):
    """Residual blocks of one resolution level, each optionally followed by attention."""

    def __init__(self, res_blocks: list[ResidualBlock], attn_blocks: list[nn.Module]) -> None:
        super().__init__()
        self.res = nn.ModuleList(res_blocks)
        self.attn = nn.ModuleList(attn_blocks)


class UNet(nn.Module):
    """Severity-conditioned 2D UNet that predicts the clean image.

    A plain :class:`torch.nn.Module`: it takes a corrupted image and a severity in
    [0, 1] and returns its estimate of the clean (healthy) image, not the noise. With
    ``residual=True`` that estimate is parameterised as ``x + f(x, s)``. It knows nothing
    of corruptions, schedules or scikit-learn.

    Layout (guided-diffusion style). ``len(widths)`` resolution levels, level ``i``
    having ``widths[i]`` channels at ``1 / 2**i`` of the input resolution. A 3x3 input
    convolution; an encoder of ``n_res_blocks`` residual blocks per level with a stride-2
    convolution between levels; a middle block (residual, attention if
    ``mid_attention``, residual) at the coarsest level; a decoder of
    ``n_res_blocks + 1`` residual blocks per level, each taking the concatenation of the
    running features and one encoder output (skip connection), with nearest-neighbour
    upsampling + 3x3 convolution between levels; ``GroupNorm -> SiLU -> conv3x3`` to
    ``out_channels``. Levels listed in ``attention_levels`` add multi-head
    self-attention after each residual block, in encoder and decoder.

    Conditioning. The severity ``s`` goes through a sinusoidal embedding of
    ``s * 1000`` (``widths[0]`` features) and a 2-layer MLP (``SiLU`` between) to
    ``embedding_dim`` features; in every residual block a learned linear projection of it
    scales and shifts the normalised features after the first convolution
    (``conditioning="scale_shift"``). The published network adds the projection before
    that normalisation instead (``"add"``), which a GroupNorm with one channel per group
    removes again: in a network of widths 16-32-64 with 32 groups no layer but the
    64-channel ones could see the severity, and those only half of it.

    Initialisation. PyTorch defaults everywhere, so the severity conditioning is active,
    and the embedding MLP receives gradients, from the first step; with ``residual=True``
    the output convolution alone starts at zero, so the network starts as the identity.
    The default configuration is the reference architecture (26.9 M parameters; 26.3 M
    with the published additive conditioning; about 16 GFLOP per 128x128 patch).

    Parameters
    ----------
    in_channels : int, default=1
        Channels of the input image.
    out_channels : int, default=1
        Channels of the predicted image.
    widths : sequence of int, default=(32, 64, 96, 128, 256, 256)
        Channels of each resolution level, from full resolution to the coarsest.
    n_res_blocks : int, default=2
        Residual blocks per encoder level (the decoder has one more per level).
    attention_levels : sequence of int, default=(4,)
        Level indices (0 = full resolution) with self-attention. With the default
        widths and 128x128 input, level 4 is 8x8. An index outside
        ``[0, len(widths))`` raises ``ValueError``.
    mid_attention : bool, default=True
        Whether the middle block has self-attention.
    head_dim : int, default=32
        Wanted channels per attention head; a block with ``C`` channels uses
        ``max(1, C // head_dim)`` heads, reduced until the count divides ``C``.
    n_groups : int, default=32
        Wanted GroupNorm groups; each layer uses the largest divisor of its channel
        count that does not exceed it, so narrow networks (4 or 8 channels) work.
    embedding_dim : int or None, default=None
        Size of the severity embedding after the MLP; ``None`` means
        ``4 * widths[0]``.
    dropout : float, default=0.0
        Dropout inside residual blocks.
    residual : bool, default=False
        Predict the clean image as ``x + f(x, s)``, with the last convolution of ``f``
        initialised at zero: the network starts as the identity and learns what to
        change. Needs ``in_channels == out_channels``. ``DISYREDetector`` uses it.
    conditioning : {'scale_shift', 'add'}, default='scale_shift'
        How residual blocks take the severity (see Conditioning above and
        :class:`~disyre_sk.nn.blocks.ResidualBlock`). ``"add"`` rebuilds the published
        network and the networks of model files written before this setting existed.

    Attributes
    ----------
    config : dict
        The constructor arguments (JSON-serialisable, sequences as lists), so that
        ``UNet(**net.config)`` rebuilds the same architecture.
    size_multiple : int
        ``2 ** (len(widths) - 1)``: input height and width must be multiples of it.

    Examples
    --------
    >>> import torch
    >>> net = UNet(widths=(8, 16), attention_levels=(1,), n_groups=4)
    >>> net.size_multiple
    2
    >>> x = torch.rand(3, 1, 16, 16)
    >>> net(x, torch.tensor([0.0, 0.5, 1.0])).shape
    torch.Size([3, 1, 16, 16])
    >>> net(x, 0.25).shape  # a scalar severity is broadcast to the batch
    torch.Size([3, 1, 16, 16])
    >>> clone = UNet(**net.config)
    >>> sorted(clone.state_dict()) == sorted(net.state_dict())
    True
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: Sequence[int] = (32, 64, 96, 128, 256, 256),
        n_res_blocks: int = 2,
        attention_levels: Sequence[int] = (4,),
        mid_attention: bool = True,
        head_dim: int = 32,
        n_groups: int = 32,
        embedding_dim: int | None = None,
        dropout: float = 0.0,
        residual: bool = False,
        conditioning: str = "scale_shift",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        attention_levels = sorted({int(i) for i in attention_levels})
        _check_positive(in_channels=in_channels, out_channels=out_channels)
        _check_positive(n_res_blocks=n_res_blocks, head_dim=head_dim, n_groups=n_groups)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}.")
        n_levels = len(widths)
        bad = [i for i in attention_levels if not 0 <= i < n_levels]
        if bad:
            raise ValueError(
                f"attention_levels {bad} out of range: with {n_levels} widths the level "
                f"indices are 0..{n_levels - 1}."
            )
        requested_embedding_dim = embedding_dim
        if embedding_dim is None:
            embedding_dim = 4 * widths[0]
        _check_positive(embedding_dim=embedding_dim)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")

        self.config: dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "widths": list(widths),
            "n_res_blocks": int(n_res_blocks),
            "attention_levels": list(attention_levels),
            "mid_attention": bool(mid_attention),
            "head_dim": int(head_dim),
            "n_groups": int(n_groups),
            "embedding_dim": (
                None if requested_embedding_dim is None else int(requested_embedding_dim)
            ),
            "dropout": float(dropout),
            "residual": bool(residual),
            "conditioning": str(conditioning),
        }
        if residual and in_channels != out_channels:
            raise ValueError(
                f"residual=True needs in_channels == out_channels, got {in_channels} and "
                f"{out_channels}."
            )
        self.residual = bool(residual)
        self.size_multiple: int = 2 ** (n_levels - 1)

        def res(cin: int, cout: int) -> ResidualBlock:
            return ResidualBlock(
                cin,
                cout,
                embedding_dim,
                n_groups=n_groups,
                dropout=dropout,
                conditioning=conditioning,
            )

        def attn(ch: int, level: int) -> nn.Module:
            if level in attention_levels:
                return AttentionBlock(ch, head_dim=head_dim, n_groups=n_groups)
            return nn.Identity()

        self.severity_embedding = nn.Sequential(
            SinusoidalEmbedding(widths[0]),
            nn.Linear(widths[0], embedding_dim),
            nn.SiLU(),
            nn.Linear(embedding_dim, embedding_dim),
        )
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)

        # Encoder; skip_channels records what every encoder output hands to the decoder.
        skip_channels = [widths[0]]
        ch = widths[0]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, width in enumerate(widths):
            blocks, attns = [], []
            for _ in range(n_res_blocks):
                blocks.append(res(ch, width))
                attns.append(attn(width, level))
                ch = width
                skip_channels.append(ch)
            self.down.append(_Level(blocks, attns))
            if level < n_levels - 1:
                self.downsample.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid_res1 = res(ch, ch)
        self.mid_attn = (
            AttentionBlock(ch, head_dim=head_dim, n_groups=n_groups)
            if mid_attention
            else nn.Identity()
        )
        self.mid_res2 = res(ch, ch)

        # Decoder: one more block per level than the encoder, so that every encoder
        # output (including the ones after conv_in and after each downsample) is used.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(n_levels)):
            width = widths[level]
            blocks, attns = [], []
            for _ in range(n_res_blocks + 1):
                blocks.append(res(ch + skip_channels.pop(), width))
                attns.append(attn(width, level))
                ch = width
            self.up.append(_Level(blocks, attns))
            if level > 0:
                self.upsample.append(Upsample(ch))

        self.norm_out = make_group_norm(ch, n_groups)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        if residual:
            # Start as the identity: the network first returns its input and learns only
            # what to change, which short training runs need.
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, severity: torch.Tensor | float) -> torch.Tensor:
        """Predict the clean image.

        Parameters
        ----------
        x : torch.Tensor
            Corrupted images, shape ``(B, in_channels, H, W)``, float; ``H`` and ``W``
            multiples of :attr:`size_multiple`.
        severity : torch.Tensor or float
            Severity in [0, 1]: shape ``(B,)``, or a Python float / 0-d tensor used
            for the whole batch.

        Returns
        -------
        torch.Tensor
            Predicted clean images, shape ``(B, out_channels, H, W)``.

        Raises
        ------
        ValueError
            If ``x`` is not 4-D with ``in_channels`` channels, if ``H`` or ``W`` is not
            a multiple of :attr:`size_multiple`, or if ``severity`` has the wrong shape.

        Examples
        --------
        >>> import torch
        >>> net = UNet(widths=(8, 16), attention_levels=(), n_groups=4)
        >>> net(torch.rand(2, 1, 8, 8), torch.tensor([0.1, 0.9])).shape
        torch.Size([2, 1, 8, 8])
        >>> net(torch.rand(1, 1, 9, 8), 0.5)
        Traceback (most recent call last):
            ...
        ValueError: Input height and width must be multiples of 2 ...
        """
        # Shape checks only (static under torch.compile): no branching on values.
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(
                f"x must have shape (B, {self.config['in_channels']}, H, W), got {tuple(x.shape)}."
            )
        height, width = x.shape[-2:]
        m = self.size_multiple
        if height % m or width % m:
            raise ValueError(
                f"Input height and width must be multiples of {m} "
                f"(2 ** (len(widths) - 1)), got {height}x{width}; pad the input."
            )
        emb = self.severity_embedding(self._severity_vector(severity, x))

        h = self.conv_in(x)
        skips = [h]
        for level, stage in enumerate(self.down):
            for block, attn in zip(stage.res, stage.attn):
                h = attn(block(h, emb))
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)

        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)

        for i, stage in enumerate(self.up):
            for block, attn in zip(stage.res, stage.attn):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](h)

        out = self.conv_out(F.silu(self.norm_out(h)))
        return x + out if self.residual else out

    @staticmethod
    def _severity_vector(severity: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """Severity as a float32 ``(B,)`` tensor on ``x``'s device."""
        s = torch.as_tensor(severity, dtype=torch.float32, device=x.device)
        batch = x.shape[0]
        if s.ndim == 0:
            return s.expand(batch)
        if s.shape != (batch,):
            raise ValueError(
                f"severity must be a scalar or have shape ({batch},), got {tuple(s.shape)}."
            )
        return s


def _check_positive(**values: int) -> None:
    """Raise ValueError unless every value is an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
