"""disyre_sk: unsupervised anomaly detection in medical images by synthetic restoration."""

from ._combined import CombinedDetector, load_model, small_anomaly_specialist
from ._detector import DISYREDetector
from ._version import __version__

__all__ = [
    "CombinedDetector",
    "DISYREDetector",
    "__version__",
    "load_model",
    "small_anomaly_specialist",
]
