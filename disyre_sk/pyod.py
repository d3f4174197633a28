"""PyOD adapter: :class:`DISYREPyOD`, a PyOD ``BaseDetector`` around ``DISYREDetector``.

PyOD is optional: ``import disyre_sk`` never imports it, and importing this module without
PyOD installed raises an :class:`ImportError` that says how to install it
(``pip install "disyre-sk[pyod]"``).

The adapter carries PyOD's conventions, which differ from scikit-learn's: scores are
**higher = more anomalous** and labels are **0 = inlier, 1 = outlier**. The wrapped
:class:`~disyre_sk.DISYREDetector` keeps scikit-learn's (``score_samples`` higher = more
normal, ``predict`` +1 / -1).
"""

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

try:
    from pyod.models.base import BaseDetector
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "disyre_sk.pyod needs PyOD, an optional dependency. Install it with "
        '`pip install "disyre-sk[pyod]"` (or `pip install pyod`).'
    ) from exc

from . import CombinedDetector, DISYREDetector

__all__ = ["DISYREPyOD"]


class DISYREPyOD(BaseDetector):
    """DISYRE anomaly detector with PyOD's interface.

    Wraps a :class:`~disyre_sk.DISYREDetector` the way PyOD wraps scikit-learn's models
    (e.g. ``pyod.models.iforest.IForest``): ``fit`` trains a fresh clone of ``detector``,
    then sets ``decision_scores_``, ``threshold_`` and ``labels_`` from the training
    scores and ``contamination``. Use it to compare DISYRE side by side with PyOD
    detectors, or inside PyOD's combination and thresholding tools.

    Parameters
    ----------
    detector : DISYREDetector, CombinedDetector or None, default=None
        The configured, unfitted estimator to wrap (cloned on ``fit``; the instance
        itself is never fitted). ``None`` uses ``DISYREDetector()`` with its defaults.
        Its own ``contamination`` only affects its ``offset_``; this adapter's labels
        follow ``contamination`` below.
    contamination : float in (0, 0.5], default=0.1
        Expected fraction of outliers in the training data; ``threshold_`` is the
        ``1 - contamination`` quantile of ``decision_scores_``.

    Attributes
    ----------
    detector_ : DISYREDetector or CombinedDetector
        The fitted clone of ``detector``.
    decision_scores_ : ndarray of shape (n_samples,)
        Anomaly scores of the training samples, higher = more anomalous
        (``-detector_.score_samples(X)``).
    threshold_ : float
        Scores above it are labelled outliers.
    labels_ : ndarray of shape (n_samples,)
        Training labels: 0 = inlier, 1 = outlier.

    See Also
    --------
    disyre_sk.DISYREDetector : The estimator with scikit-learn's conventions.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk import DISYREDetector
    >>> from disyre_sk.pyod import DISYREPyOD
    >>> X = np.random.default_rng(0).random((20, 16))  # 20 images of 4x4, flattened
    >>> det = DISYREDetector(image_shape=(4, 4), patch_size=8, widths=(4, 8), n_steps=2,
    ...                      batch_size=4, severities=(0.5,), random_state=0)
    >>> clf = DISYREPyOD(det, contamination=0.1).fit(X)
    >>> clf.decision_scores_.shape, int(clf.labels_.sum())
    ((20,), 2)
    >>> set(clf.predict(X).tolist()) <= {0, 1}  # 0 = inlier, 1 = outlier
    True
    >>> clf.predict_proba(X[:2]).shape  # columns: P(inlier), P(outlier)
    (2, 2)
    >>> clf.decision_map(X[:3]).shape  # higher = more anomalous, as the scores
    (3, 16)
    """

    def __init__(
        self,
        detector: DISYREDetector | CombinedDetector | None = None,
        contamination: float = 0.1,
    ):
        super().__init__(contamination=contamination)
        self.detector = detector

    def fit(self, X: ArrayLike, y: None = None) -> "DISYREPyOD":
        """Fit the wrapped detector on (healthy) scans and score them.

        Parameters
        ----------
        X : array-like
            Training scans in any layout :class:`~disyre_sk.DISYREDetector` accepts:
            ``(n, H, W)``, ``(n, D, H, W)``, or ``(n, F)`` with ``image_shape`` set.
        y : None
            Ignored (unsupervised), kept for API consistency; PyOD warns when given.

        Returns
        -------
        self : DISYREPyOD
            The fitted adapter.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> from disyre_sk.pyod import DISYREPyOD
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (10, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0)
        >>> clf = DISYREPyOD(det, contamination=0.2).fit(X)
        >>> clf.decision_scores_.shape, int(clf.labels_.sum())  # 20 % of 10 flagged
        ((10,), 2)
        >>> bool((clf.decision_scores_[clf.labels_ == 1] > clf.threshold_).all())
        True
        """
        self._set_n_classes(y)
        detector = DISYREDetector() if self.detector is None else clone(self.detector)
        self.detector_ = detector.fit(X)
        self.decision_scores_ = self._anomaly_scores(X)
        self._process_decision_scores()
        return self

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Anomaly score of each sample, higher = more anomalous (PyOD's sign).

        Parameters
        ----------
        X : array-like
            Scans, in the layout used for ``fit``.

        Returns
        -------
        anomaly_scores : ndarray of shape (n_samples,)
            ``-detector_.score_samples(X)``.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> from disyre_sk.pyod import DISYREPyOD
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (10, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0)
        >>> clf = DISYREPyOD(det).fit(X)
        >>> scores = clf.decision_function(X[:3])
        >>> bool(np.allclose(scores, -clf.detector_.score_samples(X[:3])))
        True
        """
        check_is_fitted(self, ["detector_", "decision_scores_"])
        return self._anomaly_scores(X)

    def decision_map(self, X: ArrayLike) -> np.ndarray:
        """Voxel-wise anomaly maps, higher = more anomalous.

        A passthrough to :meth:`DISYREDetector.decision_map
        <disyre_sk.DISYREDetector.decision_map>`; its sign already matches PyOD's.

        Parameters
        ----------
        X : array-like
            Scans, in the layout used for ``fit``.

        Returns
        -------
        maps : ndarray of float32
            Maps with the shape of ``X``'s images, 0 outside the foreground.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> from disyre_sk.pyod import DISYREPyOD
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (10, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0)
        >>> clf = DISYREPyOD(det).fit(X)
        >>> maps = clf.decision_map(X[:2])
        >>> maps.shape, bool((maps >= 0).all())
        ((2, 16, 16), True)
        """
        check_is_fitted(self, ["detector_"])
        return self.detector_.decision_map(X)

    def _anomaly_scores(self, X: ArrayLike) -> np.ndarray:
        return -np.asarray(self.detector_.score_samples(X), dtype=np.float64).ravel()
