"""Neural networks: the severity-conditioned restoration UNet and its building blocks.

Plain :mod:`torch.nn` modules; they know nothing of scikit-learn, corruptions or
severity schedules.
"""

from .blocks import GroupNorm, SinusoidalEmbedding
from .unet import UNet

__all__ = ["GroupNorm", "SinusoidalEmbedding", "UNet"]
