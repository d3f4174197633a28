"""disyre_sk: unsupervised anomaly detection in medical images by synthetic restoration."""

from ._combined import CombinedDetector, load_model, small_anomaly_specialist
from ._detector import DISYREDetector
from ._recipes import make_recipe, signed_network
from ._version import __version__

__all__ = [
    "CombinedDetector",
    "DISYREDetector",
    "__version__",
    "load_model",
    "make_recipe",
    "signed_network",
    "small_anomaly_specialist",
]
