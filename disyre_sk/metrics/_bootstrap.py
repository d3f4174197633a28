"""Confidence intervals of a metric by resampling the scans it is computed on.

Public names live in :mod:`disyre_sk.metrics`.
"""

from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state


def _check_groups(groups) -> list[np.ndarray]:
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.size == 0:
        raise ValueError(
            f"groups must be a non-empty 1-D array with one label per resampled unit "
            f"(e.g. per test volume), got shape {groups.shape}."
        )
    return [np.flatnonzero(groups == g) for g in np.unique(groups)]


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    groups: ArrayLike,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric, resampling whole scans within groups.

    A test set of a dozen scans gives a volume AUROC from a few dozen healthy-lesioned
    pairs, and a slice AUROC from slices that share their volume's anatomy and lesion:
    the figure moves a lot with which scans were drawn. The interval shows by how much.
    The resampled unit is the scan (a cluster bootstrap: a scan's slices or voxels stay
    together), drawn with replacement *within* each group so that every resample keeps
    the groups' sizes (a stratified bootstrap: with healthy and lesioned scans as the
    groups, every resample holds both, as an AUROC needs).

    Parameters
    ----------
    statistic : callable
        ``statistic(index)`` computes the metric on the units ``index`` (an int array of
        positions into ``groups``, with repeats), e.g.
        ``lambda i: sample_auroc(scores[i], labels[i])``. Resamples where it returns a
        non-finite value (a metric undefined on that draw) are left out.
    groups : array-like of shape (n_units,)
        One label per unit; units are resampled within their label. Give the same label
        to every unit for a plain bootstrap.
    n_resamples : int, default=1000
        Bootstrap resamples.
    confidence : float in (0, 1), default=0.95
        Coverage of the interval; its ends are the ``(1 - confidence) / 2`` and
        ``(1 + confidence) / 2`` quantiles of the resampled metric.
    random_state : int, RandomState instance or None, default=None
        Seed of the resampling (local: the global generator is untouched).

    Returns
    -------
    low, high : float
        The interval's ends.

    Raises
    ------
    ValueError
        On bad ``groups``, ``n_resamples`` or ``confidence``, or when the statistic is
        undefined on more than half of the resamples (too few units to bootstrap).

    Notes
    -----
    The percentile interval of a handful of scans per group is rough (it tends to be too
    narrow for very small groups): read it as the scale of the uncertainty, not as an
    exact coverage. Units are assumed independent; scans built from one anatomy are not
    fully so.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk.metrics import bootstrap_interval, sample_auroc
    >>> scores = np.array([0.1, 0.3, 0.2, 0.8, 0.6, 0.25])
    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> round(sample_auroc(scores, labels), 3)
    0.889
    >>> low, high = bootstrap_interval(
    ...     lambda i: sample_auroc(scores[i], labels[i]), labels, random_state=0
    ... )
    >>> bool(low < 0.889 <= high)
    True
    """
    strata = _check_groups(groups)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1, got {n_resamples!r}.")
    if isinstance(confidence, bool) or not isinstance(confidence, Real) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}.")
    if not callable(statistic):
        raise TypeError(f"statistic must be a callable of an index array, got {statistic!r}.")
    rng = check_random_state(random_state)
    values = np.empty(int(n_resamples))
    for r in range(int(n_resamples)):
        index = np.concatenate([s[rng.randint(0, s.size, s.size)] for s in strata])
        values[r] = float(statistic(index))
    values = values[np.isfinite(values)]
    if values.size * 2 < n_resamples:
        raise ValueError(
            f"the statistic was undefined (not finite) on {int(n_resamples) - values.size} "
            f"of {int(n_resamples)} resamples: too few units per group to bootstrap it."
        )
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
