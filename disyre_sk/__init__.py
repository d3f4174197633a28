"""disyre_sk: unsupervised anomaly detection in medical images by synthetic restoration."""

from ._detector import DISYREDetector
from ._version import __version__

__all__ = ["DISYREDetector", "__version__"]
