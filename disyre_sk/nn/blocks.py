"""Building blocks of the restoration UNet.

Every block here is a plain :class:`torch.nn.Module` whose ``forward`` has no
data-dependent Python control flow, so the network traces and compiles cleanly and runs
under ``torch.autocast`` and the ``channels_last`` memory format.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentionBlock",
    "Downsample",
    "GroupNorm",
    "ResidualBlock",
    "SinusoidalEmbedding",
    "Upsample",
    "group_count",
    "make_group_norm",
]

# How a residual block takes the severity: "scale_shift" scales and shifts the
# normalised features (FiLM), which no normalisation can undo; "add" adds a per-channel
# bias before the second GroupNorm, as the published network does. With one channel per
# group (narrow layers: 32 channels and 32 groups) that GroupNorm subtracts the bias
# again, so "add" leaves those layers blind to the severity.
CONDITIONINGS = ("scale_shift", "add")


def group_count(channels: int, requested: int) -> int:
    """Largest divisor of ``channels`` that is at most ``requested``.

    GroupNorm needs the group count to divide the channel count; narrow test networks
    (4 or 8 channels) would otherwise fail with the reference setting of 32 groups.

    Parameters
    ----------
    channels : int
        Number of channels to normalise (positive).
    requested : int
        Wanted number of groups (positive).

    Returns
    -------
    int
        A divisor of ``channels`` in ``[1, requested]``.

    Examples
    --------
    >>> group_count(256, 32)
    32
    >>> group_count(8, 32)
    8
    >>> group_count(96, 40)
    32
    """
    for groups in range(min(channels, requested), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class GroupNorm(nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` that keeps a bfloat16 input in bfloat16 under autocast.

    CUDA autocast runs ``group_norm`` in float32 whatever its input. In this network
    every normalisation then reads a bfloat16 tensor, writes a float32 copy, normalises
    and activates it in float32, and hands the next convolution a float32 tensor that it
    casts back to bfloat16: two extra casting passes over the largest activations, twice
    the bytes for the normalisation and activation between them, and float32
    activations saved for the backward pass. Here a bfloat16 input is normalised in
    bfloat16 with autocast off for this one call; the kernels still accumulate the
    mean and variance in float32, and the convolution that follows would round the
    output to bfloat16 anyway. Float32 and float16 inputs take the stock path: float16's
    narrow range is what float32 statistics guard against. The parameters, their names
    and the state dict are those of :class:`torch.nn.GroupNorm`.

    Parameters
    ----------
    num_groups : int
        Number of groups; must divide ``num_channels``.
    num_channels : int
        Number of channels of the input.
    eps : float, default=1e-5
        Added to the variance.
    affine : bool, default=True
        Learn a per-channel scale and shift.
    keep_dtype : bool, default=True
        Normalise bfloat16 inputs in bfloat16; ``False`` gives exactly
        :class:`torch.nn.GroupNorm` (autocast's float32), as the reference network runs.

    Examples
    --------
    >>> import torch
    >>> norm = GroupNorm(2, 4)
    >>> x = torch.randn(2, 4, 8, 8)
    >>> torch.allclose(norm(x), torch.nn.functional.group_norm(x, 2, eps=1e-5))
    True
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     norm(x.bfloat16()).dtype
    torch.bfloat16
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        keep_dtype: bool = True,
    ) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.keep_dtype = bool(keep_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, num_channels, ...)``.

        Returns
        -------
        torch.Tensor
            Same shape as ``x``; bfloat16 when ``x`` is and ``keep_dtype`` is set,
            otherwise what :class:`torch.nn.GroupNorm` returns.

        Examples
        --------
        >>> import torch
        >>> norm = GroupNorm(1, 2)
        >>> out = norm(torch.tensor([[[[1.0, 3.0]], [[5.0, 7.0]]]]))
        >>> [round(v, 3) for v in out.flatten().tolist()]
        [-1.342, -0.447, 0.447, 1.342]
        """
        if not (self.keep_dtype and x.dtype == torch.bfloat16):
            return super().forward(x)
        # The CUDA kernel wants the parameters in the input's dtype; the casts are tiny.
        weight = None if self.weight is None else self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)

    def extra_repr(self) -> str:
        """Describe the layer as :class:`torch.nn.GroupNorm` does, plus ``keep_dtype``.

        Returns
        -------
        str
            The stock description, with ``keep_dtype=False`` appended when it is off.

        Examples
        --------
        >>> GroupNorm(2, 4, keep_dtype=False).extra_repr().endswith(", keep_dtype=False")
        True
        >>> "keep_dtype" in GroupNorm(2, 4).extra_repr()
        False
        """
        return super().extra_repr() + ("" if self.keep_dtype else ", keep_dtype=False")


def make_group_norm(channels: int, n_groups: int) -> GroupNorm:
    """GroupNorm over ``channels`` with as many groups as fit, at most ``n_groups``.

    Parameters
    ----------
    channels : int
        Number of channels.
    n_groups : int
        Wanted number of groups; reduced with :func:`group_count` when it does not
        divide ``channels``.

    Returns
    -------
    GroupNorm
        The normalisation layer (``eps=1e-6``, affine, bfloat16 kept under autocast).

    Examples
    --------
    >>> make_group_norm(8, 32).num_groups
    8
    """
    return GroupNorm(group_count(channels, n_groups), channels, eps=1e-6)


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal embedding of a continuous severity in [0, 1].

    The severity is multiplied by ``scale`` first, so that the unit interval spreads
    over the same range of frequencies as a 1000-step diffusion timestep would; the
    embedding is the concatenation of ``sin`` and ``cos`` at geometrically spaced
    frequencies from 1 down to ``1 / max_period``. It is computed in float32 even under
    autocast, since ``s * scale`` in bfloat16 would round nearby severities together.

    Parameters
    ----------
    dim : int
        Size of the embedding (an odd size gets one zero column at the end).
    scale : float, default=1000.0
        Factor applied to the severity before the sinusoids.
    max_period : float, default=10000.0
        Longest period of the sinusoids (in units of ``severity * scale``).

    Examples
    --------
    >>> import torch
    >>> emb = SinusoidalEmbedding(8)
    >>> emb(torch.tensor([0.0, 0.5, 1.0])).shape
    torch.Size([3, 8])
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"dim must be at least 2, got {dim}.")
        self.dim = int(dim)
        self.scale = float(scale)
        half = self.dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        # A buffer (not a parameter) so it follows .to(device) but is never trained.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, severity: torch.Tensor) -> torch.Tensor:
        """Embed a batch of severities.

        Parameters
        ----------
        severity : torch.Tensor
            Shape ``(B,)``, values in [0, 1].

        Returns
        -------
        torch.Tensor
            Shape ``(B, dim)``, float32.

        Examples
        --------
        >>> import torch
        >>> emb = SinusoidalEmbedding(6)
        >>> out = emb(torch.tensor([0.0, 1.0]))
        >>> out.shape, out.dtype
        (torch.Size([2, 6]), torch.float32)
        >>> out[0]  # severity 0: sin(0) = 0, cos(0) = 1
        tensor([0., 0., 0., 1., 1., 1.])
        """
        with torch.autocast(device_type=severity.device.type, enabled=False):
            args = severity.float()[:, None] * self.scale * self.freqs[None, :]
            emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
            if self.dim % 2:
                emb = F.pad(emb, (0, 1))
        return emb


class ResidualBlock(nn.Module):
    """Residual block conditioned on the severity embedding.

    ``GroupNorm -> SiLU -> conv3x3``, then ``GroupNorm``, conditioned on the severity
    embedding (``SiLU -> Linear``), then ``SiLU -> dropout -> conv3x3``; the input joins
    through the identity, or a 1x1 convolution when the channel count changes.

    Conditioning (see :data:`CONDITIONINGS`): ``"scale_shift"`` multiplies the normalised
    features by ``1 + scale`` and adds ``shift``, both per channel from the embedding, so
    every layer sees the severity whatever its group count. ``"add"`` adds a per-channel
    bias *before* the second GroupNorm, as the published network does; where a group
    holds a single channel (a 32-channel layer with 32 groups, or every layer of a
    narrow network) the normalisation subtracts that bias again and the layer cannot
    see the severity at all.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    embedding_dim : int
        Size of the severity embedding fed to ``forward``.
    n_groups : int, default=32
        Wanted GroupNorm groups (reduced to a divisor of the channel count).
    dropout : float, default=0.0
        Dropout probability before the second convolution.
    conditioning : {'scale_shift', 'add'}, default='scale_shift'
        How the severity embedding enters (above).

    Examples
    --------
    >>> import torch
    >>> block = ResidualBlock(4, 8, embedding_dim=16)
    >>> block(torch.randn(2, 4, 8, 8), torch.randn(2, 16)).shape
    torch.Size([2, 8, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_dim: int,
        n_groups: int = 32,
        dropout: float = 0.0,
        conditioning: str = "scale_shift",
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}.")
        self.conditioning = conditioning
        self.norm1 = make_group_norm(in_channels, n_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        per_channel = 2 if conditioning == "scale_shift" else 1
        self.emb_proj = nn.Linear(embedding_dim, per_channel * out_channels)
        self.norm2 = make_group_norm(out_channels, n_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            Feature map, shape ``(B, in_channels, H, W)``.
        emb : torch.Tensor
            Severity embedding, shape ``(B, embedding_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, H, W)``.
        """
        h = self.conv1(F.silu(self.norm1(x)))
        cond = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.conditioning == "scale_shift":
            scale, shift = cond.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + cond)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the spatial positions of a feature map.

    ``GroupNorm`` then 1x1 projections to queries, keys and values, attention through
    :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels on GPU), a
    1x1 output projection and a residual connection.

    Parameters
    ----------
    channels : int
        Channels of the feature map.
    head_dim : int, default=32
        Wanted channels per head. The head count is ``channels // head_dim``, at least 1,
        reduced until it divides ``channels``.
    n_groups : int, default=32
        Wanted GroupNorm groups (reduced to a divisor of ``channels``).

    Examples
    --------
    >>> import torch
    >>> attn = AttentionBlock(16, head_dim=8)
    >>> attn.n_heads
    2
    >>> attn(torch.randn(2, 16, 4, 4)).shape
    torch.Size([2, 16, 4, 4])
    """

    def __init__(self, channels: int, head_dim: int = 32, n_groups: int = 32) -> None:
        super().__init__()
        n_heads = max(1, channels // head_dim)
        while channels % n_heads:
            n_heads -= 1
        self.channels = channels
        self.n_heads = n_heads
        self.norm = make_group_norm(channels, n_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            Feature map, shape ``(B, channels, H, W)``.

        Returns
        -------
        torch.Tensor
            Same shape as ``x``.
        """
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        # (B, 3*C, H, W) -> 3 x (B, heads, H*W, head_dim), the layout SDPA expects.
        qkv = qkv.reshape(b, 3, self.n_heads, c // self.n_heads, h * w).transpose(-1, -2)
        q, k, v = qkv.unbind(dim=1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve the spatial size with a stride-2 3x3 convolution (channels unchanged).

    A learned stride-2 convolution rather than pooling, as in the reference network.

    Parameters
    ----------
    channels : int
        Channels in and out.

    Examples
    --------
    >>> import torch
    >>> Downsample(4)(torch.randn(1, 4, 8, 8)).shape
    torch.Size([1, 4, 4, 4])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, H, W)`` with even ``H`` and ``W``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, H // 2, W // 2)``.
        """
        return self.conv(x)


class Upsample(nn.Module):
    """Double the spatial size: nearest-neighbour upsampling then a 3x3 convolution.

    Nearest + conv avoids the checkerboard artefacts of transposed convolutions, which
    would show up directly in the anomaly maps.

    Parameters
    ----------
    channels : int
        Channels in and out.

    Examples
    --------
    >>> import torch
    >>> Upsample(4)(torch.randn(1, 4, 4, 4)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, 2 * H, 2 * W)``.
        """
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
