"""``CombinedDetector``: several DISYRE networks, one anomaly map.

One restoration network trained on one family of synthetic anomalies sees what that
family teaches it: DAG's blurred shapes of a few pixels and up leave lesions of a voxel
or two unseen. A second network trained only on small, sharp anomalies sees those; the
two maps, each standardised against the healthy training maps at every voxel (so both
are z-scores), add on one scale. This module holds the estimator that fits the members
on the same healthy scans and joins their maps (sum or maximum), and the helper that
builds the small anomaly specialist from a detector.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from joblib import cpu_count, effective_n_jobs
from joblib.externals.loky import ProcessPoolExecutor
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context, clone
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _data
from ._detector import DISYREDetector, checked_samples, fitted_layout, references_kept
from ._engine.combined_file import read_combined, save_combined
from ._engine.distributed import launch_from_env
from ._engine.persist import COMBINED_FORMAT_NAME, load_archive
from .corruption import DAGCorruption


@contextmanager
def _naming(name: str):
    """A member's refusal, prefixed with the member's name."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"detector {name!r}: {exc}") from exc


def _fit_member(det: DISYREDetector, X, X_val, threads: int) -> DISYREDetector:
    """Fit one member in a worker process, on its share of the CPU threads (a worker
    that took all of them would compete with the others for every core)."""
    torch.set_num_threads(threads)
    return det.fit(X, X_val=X_val)


def _fit_side_by_side(dets: list, X, X_val, n_jobs: int) -> list:
    """Fit ``dets`` in ``n_jobs`` worker processes, each on an equal share of the threads.

    A pool of its own, closed when the fits end: idle workers left waiting for more work
    (joblib's reusable pool keeps them for minutes) slowed the next fit in this process
    on two cores.
    """
    threads = max(1, cpu_count() // n_jobs)
    # The numerical libraries read these when a worker starts.
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with ProcessPoolExecutor(max_workers=n_jobs, env=env) as pool:
        futures = [pool.submit(_fit_member, det, X, X_val, threads) for det in dets]
        return [f.result() for f in futures]


def _reference_part(X, fitted: list):
    """The samples of ``X`` that no member trained on (``reference_fraction``), or ``X``.

    Members with one ``random_state`` and ``reference_fraction`` hold out the same
    samples; where they differ, the samples every member held out, if any.
    """
    held = [det.history_.get("reference_samples") for _, det in fitted]
    if any(h is None for h in held):
        return X
    common = sorted(set.intersection(*(set(h) for h in held)))
    return np.asarray(X)[common] if common else X


def small_anomaly_specialist(
    detector: DISYREDetector,
    *,
    patch_size: int | None = None,
    n_steps: int | None = None,
    p_bright: float = 1.0,
) -> DISYREDetector:
    """A copy of ``detector`` that learns to restore small, sharp anomalies only.

    Its corruption is DAG with semi-axes of 0.8 to 2.8 pixels at any patch size (the box
    the shape is drawn in spans ``16 / patch_size`` of the patch), a blur of at most one
    pixel, and an intensity bias that brightens with probability ``p_bright`` (by
    default always): foci of a voxel or two, which the default DAG shapes (blurred up to
    5 pixels, semi-axes up to the box's half) leave to chance. Combined with ``detector``
    in a :class:`CombinedDetector`, its map adds what the other one misses.

    Parameters
    ----------
    detector : DISYREDetector
        The detector to copy (unfitted or fitted: its parameters only are used).
    patch_size : int, optional
        Training patch side of the specialist; small anomalies need little context, and
        a smaller patch trains faster. ``None`` keeps ``detector``'s.
    n_steps : int, optional
        Training steps of the specialist (its warm-up is kept under a tenth of them).
        ``None`` keeps ``detector``'s.
    p_bright : float, default=1.0
        Probability that an anomaly brightens (:class:`~disyre_sk.corruption.DAGCorruption`):
        1 for bright foci only, 0.5 for either sign (small dark lesions too, such as
        lacunes and small cavities), 0 for dark ones only.

    Returns
    -------
    specialist : DISYREDetector
        An unfitted detector.

    Examples
    --------
    >>> from disyre_sk import DISYREDetector, small_anomaly_specialist
    >>> main = DISYREDetector(patch_size=32, widths=(16, 32), n_steps=1000)
    >>> spec = small_anomaly_specialist(main, patch_size=16, n_steps=500)
    >>> spec.patch_size, spec.n_steps, spec.corruption.p_bright
    (16, 500, 1.0)
    >>> spec.corruption.box_fraction
    1.0
    >>> small_anomaly_specialist(main, p_bright=0.5).corruption.p_bright
    0.5
    """
    spec = clone(detector)
    patch = spec.patch_size if patch_size is None else int(patch_size)
    if patch < 16:
        raise ValueError(
            f"patch_size={patch} is too small for the specialist: its anomalies have "
            "semi-axes up to 2.8 pixels in a 16-pixel box; use a patch of 16 pixels or more."
        )
    params = dict(
        patch_size=patch,
        corruption=DAGCorruption(
            box_fraction=min(1.0, 16.0 / patch),
            size_range=(0.1, 0.35),
            sigma_range=(0.0, 1.0),
            p_bright=p_bright,
        ),
    )
    if n_steps is not None:
        params["n_steps"] = int(n_steps)
        params["warmup_steps"] = min(spec.warmup_steps, int(n_steps) // 10)
    return spec.set_params(**params)


class CombinedDetector(OutlierMixin, BaseEstimator):
    """Several DISYRE detectors fitted on the same scans; their maps, weighted, summed.

    Each member maps a scan as it would alone, standardised against the healthy training
    maps at every voxel (``map_standardization='location'``), so the maps are z-scores on
    one scale; the combined map is their weighted sum (or, with ``combination="max"``,
    the largest weighted map at each voxel), and a scan's score reduces it
    as the first member reduces its own (``score_reduction``, ``top_k``). ``fit`` fits a
    clone of each member on ``X``, then maps ``X`` with the combination to set
    ``offset_`` (the threshold of :meth:`predict`).

    The typical pair is a detector and its :func:`small_anomaly_specialist`: on the
    demo's protocol (a brain the training never saw), the specialist's map added at a
    quarter of the weight found the foci the single network missed, and raised slice
    and volume AUROC on every seed (see the user guide's evaluation page).

    Parameters
    ----------
    detectors : list of (str, DISYREDetector)
        Named members, as scikit-learn's ``VotingClassifier`` takes them. Each must use
        ``map_standardization='location'`` and the same ``background``; names must be
        distinct. They are cloned, never fitted themselves.
    weights : sequence of float, default=None
        Weight of each member's map (non-negative, not all zero); ``None`` weighs them
        equally.
    combination : {'sum', 'max'}, default='sum'
        How the weighted maps make one: ``'sum'`` adds them; ``'max'`` keeps the largest
        at each voxel, so a voxel scores by the member that sees it most, and members
        that see nothing there add none of their noise. With members that each find one
        kind of anomaly (one sign, or foci), ``'max'`` found more foci and raised slice
        AUROC on the demo's protocol, pooled pixel AP within 0.02 either way (the user
        guide's method page); the CPU recipe (:func:`~disyre_sk.make_recipe`) takes it.
        ``weights`` and ``combination`` are read when mapping: ``set_params``
        changes them without refitting (``offset_`` then needs :meth:`calibrate`).
    contamination : 'auto' or float in (0, 0.5], default='auto'
        Share of the healthy training scans :meth:`predict` would call anomalous:
        ``'auto'`` sets the threshold at a 1 % false-positive rate on them.
    n_jobs : int, default=None
        How many members :meth:`fit` trains at once, each in a worker process of its own
        (a pool that closes when the fits end). ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; ``-1`` means all processors; never more
        processes than members. Each process gets an equal share of the CPU
        threads: small networks use two threads poorly, so on a CPU two members side by
        side, one thread each, finish sooner than one after the other on two threads
        (the CPU recipe's three networks on two cores:
        ``benchmarks/results/parallel_fit_cpu.md``).
        Each member draws the same random numbers either way; the thread count moves
        the rounding, which training carries (maps within 0.02 z there). Members'
        callbacks run in the worker processes.
        Not available under ``torchrun`` (the processes there are the ranks).

    Attributes
    ----------
    detectors_ : list of (str, DISYREDetector)
        The fitted members.
    named_detectors_ : :class:`~sklearn.utils.Bunch`
        The fitted members by name.
    weights_ : ndarray of float
        The weights at fit (maps read ``weights`` as it is when they are made).
    offset_ : float
        Threshold on :meth:`score_samples` below which :meth:`predict` says -1.
    image_shape_ : tuple of int
        Shape of one training image or volume.
    n_features_in_ : int
        Voxels per training sample.
    device_ : torch.device
        The first member's device.

    See Also
    --------
    DISYREDetector : one network.
    small_anomaly_specialist : the usual second member.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk import CombinedDetector, DISYREDetector, small_anomaly_specialist
    >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
    >>> main = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
    ...                       map_standardization="location", random_state=0)
    >>> both = CombinedDetector(
    ...     [("main", main), ("foci", small_anomaly_specialist(main))], weights=[1, 0.25]
    ... ).fit(X)
    >>> maps = both.decision_map(X[:2])
    >>> maps.shape, maps.dtype
    ((2, 16, 16), dtype('float32'))
    >>> alone = [d.decision_map(X[:2]) for _, d in both.detectors_]
    >>> bool(np.allclose(maps, alone[0] + 0.25 * alone[1], atol=1e-5))
    True
    >>> both.predict(X).shape
    (6,)
    """

    _parameter_constraints: dict = {
        "detectors": [list],
        "weights": [None, "array-like"],
        "combination": [StrOptions({"sum", "max"})],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "n_jobs": [None, Integral],
    }

    def __init__(
        self, detectors, *, weights=None, combination="sum", contamination="auto", n_jobs=None
    ):
        self.detectors = detectors
        self.weights = weights
        self.combination = combination
        self.contamination = contamination
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _checked_members(self) -> tuple[list[tuple[str, DISYREDetector]], np.ndarray]:
        members = list(self.detectors)
        if not members or not all(
            isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) for m in members
        ):
            raise ValueError(
                "detectors must be a non-empty list of (name, DISYREDetector) pairs, e.g. "
                "[('main', det), ('foci', small_anomaly_specialist(det))]."
            )
        names = [name for name, _ in members]
        if len(set(names)) != len(names) or any(not n or "__" in n for n in names):
            raise ValueError(
                f"detector names must be distinct, non-empty and free of '__'; got {names}."
            )
        for name, det in members:
            if not isinstance(det, DISYREDetector):
                raise TypeError(
                    f"detector {name!r} is a {type(det).__name__}, not a DISYREDetector."
                )
            if det.map_standardization != "location":
                raise ValueError(
                    f"detector {name!r} has map_standardization={det.map_standardization!r}: "
                    "maps add on one scale only as z-scores against the healthy training "
                    "maps; set map_standardization='location' on every member."
                )
        backgrounds = {repr(det.background) for _, det in members}
        if len(backgrounds) > 1:
            raise ValueError(
                f"the members mark background differently ({sorted(backgrounds)}): give them "
                "one background value, so their maps cover the same voxels."
            )
        dirs = [str(d.checkpoint_dir) for _, d in members if d.checkpoint_dir is not None]
        if len(set(dirs)) != len(dirs):
            raise ValueError(
                "two members share a checkpoint_dir: each would resume the other's "
                "training. Give each member its own folder."
            )
        return members, self._checked_weights(len(members))

    def _checked_weights(self, n: int) -> np.ndarray:
        if self.weights is None:
            weights = np.ones(n)
        else:
            weights = np.asarray(self.weights, dtype=float).ravel()
            if weights.shape != (n,):
                raise ValueError(f"weights has {weights.size} values for {n} detectors.")
            if not np.isfinite(weights).all() or (weights < 0).any() or not weights.any():
                raise ValueError(
                    f"weights must be finite, non-negative and not all zero; got {self.weights!r}."
                )
        return weights

    def _map_settings(self) -> tuple[str, np.ndarray]:
        """``combination`` and ``weights`` as the maps read them now (set_params may
        have changed them since fit), checked."""
        if self.combination not in ("sum", "max"):
            raise ValueError(f"combination must be 'sum' or 'max', got {self.combination!r}.")
        return self.combination, self._checked_weights(len(self.detectors_))

    def _mark_offset(self) -> None:
        combination, weights = self._map_settings()
        self._offset_settings = (combination, [float(w) for w in weights])

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, *, X_val=None):
        """Fit a clone of each member on ``X``, then set ``offset_`` on their combination.

        ``offset_`` is set on the combined scores of the samples the members held out
        with ``reference_fraction`` (the same ones when they share ``random_state``), or
        of ``X`` when they hold none out.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Healthy training images.
        y : None
            Ignored; present for API consistency.
        X_val : array-like, default=None
            Healthy images for each member's synthetic validation.

        Returns
        -------
        self : CombinedDetector
            The fitted combination.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> both = CombinedDetector([("a", det), ("b", det)]).fit(X)
        >>> [name for name, _ in both.detectors_], both.weights_.tolist()
        (['a', 'b'], [1.0, 1.0])
        """
        members, weights = self._check_params_now()
        fitted = ("detectors_", "named_detectors_", "weights_", "offset_")
        for attr in (*fitted, "image_shape_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        clones = [(name, clone(det)) for name, det in members]
        for _, det in clones:
            # Each member keeps its finished maps of its reference scans, which its own fit
            # computes anyway: offset_ joins them instead of mapping those scans again.
            det._keep_reference_maps = True
        n_jobs = self._fit_jobs(len(clones))
        if n_jobs == 1:
            done = [det.fit(X, X_val=X_val) for _, det in clones]
        else:
            done = _fit_side_by_side([det for _, det in clones], X, X_val, n_jobs)
        fitted = [(name, det) for (name, _), det in zip(clones, done)]
        kept = [det.__dict__.pop("_reference_maps", None) for _, det in fitted]
        for _, det in fitted:
            det.__dict__.pop("_keep_reference_maps", None)
        self._set_members(fitted, weights)
        reference = _reference_part(X, fitted)
        held = {repr(det.history_.get("reference_samples")) for _, det in fitted}
        if len(held) == 1 and all(m is not None for m in kept):
            scores = self._join_and_score(reference, lambda _, i: kept[i])[1]
        else:  # members that mapped other scans, or under torchrun (each rank a shard)
            scores = self.score_samples(reference)
        self.offset_ = self._offset(scores)
        self._mark_offset()
        return self

    def calibrate(self, X) -> CombinedDetector:
        """Learn each member's healthy references, and ``offset_``, again from ``X``.

        Each member's :meth:`DISYREDetector.calibrate` runs on the same healthy scans,
        then ``offset_`` is set on the combined scores, as ``fit`` sets it. The networks
        are kept.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Healthy scans of one's own site, in the layout used for ``fit``; at least
            two.

        Returns
        -------
        self : CombinedDetector
            The calibrated combination.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> rng = np.random.default_rng(0)
        >>> X, site = rng.uniform(0.2, 1, (6, 16, 16)), rng.uniform(0.3, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> both = CombinedDetector([("a", det), ("b", det)]).fit(X).calibrate(site)
        >>> both.predict(site).shape
        (6,)
        """
        check_is_fitted(self)
        with references_kept(self, *(det for _, det in self.detectors_)):
            for name, det in self.detectors_:
                with _naming(name):
                    det.calibrate(X)
            self.offset_ = self._offset(self.score_samples(X))
        self._mark_offset()
        return self

    def _check_params_now(self) -> tuple:
        """The combination's and every member's settings, as ``fit`` checks them before
        the first member trains (not after an hour); returns ``_checked_members()``."""
        members, weights = self._checked_members()
        self._fit_jobs(len(members))
        for name, det in members:
            with _naming(name):
                det._check_params_now()
        return members, weights

    def _fit_jobs(self, n_members: int) -> int:
        """The processes ``fit`` trains the members in; a clear error for a bad ``n_jobs``."""
        if self.n_jobs == 0:
            raise ValueError(
                "n_jobs=0 trains nothing: give None or 1 (one member after the other), a "
                "positive count of processes, or -1 for one per processor."
            )
        n_jobs = min(effective_n_jobs(self.n_jobs), n_members)
        if n_jobs > 1 and launch_from_env()[1] > 1:
            raise ValueError(
                f"n_jobs={self.n_jobs} under torchrun: the ranks already train together, "
                "and each would start its own processes; leave n_jobs=None there."
            )
        return n_jobs

    def _set_members(self, fitted, weights) -> None:
        first = fitted[0][1]
        self.detectors_ = fitted
        self.named_detectors_ = Bunch(**dict(fitted))
        self.weights_ = np.asarray(weights, dtype=float)
        self.image_shape_ = first.image_shape_
        self.n_features_in_ = first.n_features_in_

    def _offset(self, scores: np.ndarray) -> float:
        fraction = 0.01 if self.contamination == "auto" else self.contamination
        return float(np.percentile(scores, 100.0 * fraction))

    @property
    def device_(self):
        """The first member's device."""
        check_is_fitted(self)
        return self.detectors_[0][1].device_

    # ------------------------------------------------------------------ inference
    def _map_and_score(self, X) -> tuple[np.ndarray, np.ndarray]:
        """The combined map and each sample's score, from one pass of each member."""
        check_is_fitted(self)
        return self._join_and_score(X, lambda det, _: det.decision_map(X))

    def _join_and_score(self, X, member_map) -> tuple[np.ndarray, np.ndarray]:
        """Join ``member_map(det, i)`` (member ``i``'s map of ``X``) as ``combination``
        says, with ``weights``; return the joined map and each sample's score."""
        # Read now, as a member reads its map settings: set_params needs no refit.
        combination, weights = self._map_settings()
        join = np.add if combination == "sum" else np.maximum
        maps = None
        for i, ((_, det), w) in enumerate(zip(self.detectors_, weights)):
            if w == 0:
                continue
            m = w * member_map(det, i).astype(np.float32)
            maps = m if maps is None else join(maps, m.reshape(maps.shape))
        first = self.detectors_[0][1]
        images = checked_samples(first, X)
        foreground = _data.foreground_of(images, first.background)
        reduced = _data.reduce_scores(
            maps.reshape(images.shape), foreground, first.score_reduction, first.top_k
        )
        return maps.astype(np.float32, copy=False), -reduced

    def decision_map(self, X) -> np.ndarray:
        """The members' weighted maps, summed (or their maximum): higher = more anomalous.

        Its sign is the opposite of :meth:`decision_function`'s and
        :meth:`score_samples`'s, which follow scikit-learn (higher = more normal). Each
        member's map is 0 outside the foreground, and so is their combination.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Scans in the layout used for ``fit``.

        Returns
        -------
        maps : ndarray of float32, same shape as X
            Sum (or maximum) of weighted z-scores; negative where every member sees
            less change than in the healthy training scans.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> both = CombinedDetector([("a", det), ("b", det)], weights=[1, 0]).fit(X)
        >>> bool(np.allclose(both.decision_map(X), both.named_detectors_.a.decision_map(X)))
        True
        >>> from sklearn.base import clone
        >>> other = clone(det).set_params(random_state=1)
        >>> pair = CombinedDetector([("a", det), ("b", other)], combination="max").fit(X)
        >>> a, b = (d.decision_map(X) for _, d in pair.detectors_)
        >>> bool(np.allclose(pair.decision_map(X), np.maximum(a, b)))
        True
        """
        return self._map_and_score(X)[0]

    def score_samples(self, X) -> np.ndarray:
        """Normality score of each scan (higher = more normal): minus its reduced map.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Scans in the layout used for ``fit``.

        Returns
        -------
        scores : ndarray of shape (n,)
            Lower means more abnormal.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> CombinedDetector([("a", det)]).fit(X).score_samples(X).shape
        (6,)
        """
        return self._map_and_score(X)[1]

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Scans in the layout used for ``fit``.

        Returns
        -------
        scores : ndarray of shape (n,)
            Shifted normality scores.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> both = CombinedDetector([("a", det)]).fit(X)
        >>> bool(np.allclose(both.decision_function(X), both.score_samples(X) - both.offset_))
        True
        """
        scores = self.score_samples(X)
        combination, weights = self._map_settings()
        now = (combination, [float(w) for w in weights])
        then = getattr(self, "_offset_settings", now)
        if then != now:
            warnings.warn(
                f"offset_ was set with combination={then[0]!r}, weights={then[1]}; the "
                f"maps are now combined with combination={now[0]!r}, weights={now[1]} and "
                "have changed scale, so predict and decision_function use a stale "
                "threshold. Call calibrate on healthy scans, or refit.",
                UserWarning,
                stacklevel=2,
            )
        return scores - self.offset_

    def predict(self, X) -> np.ndarray:
        """Label each scan: +1 inlier (normal), -1 outlier (anomalous).

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Scans in the layout used for ``fit``.

        Returns
        -------
        labels : ndarray of shape (n,)
            ``+1`` or ``-1``.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> set(CombinedDetector([("a", det)]).fit(X).predict(X).tolist()) <= {-1, 1}
        True
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    # ------------------------------------------------------------------ model files
    def save(self, path) -> Path:
        """Save the fitted combination to one safe model file (no unpickling to load).

        Each member is stored as :meth:`DISYREDetector.save` stores it, with its own
        checksums; the weights and ``offset_`` beside them. ``disyre detect`` and
        :meth:`load` read it.

        Parameters
        ----------
        path : str or path-like
            Destination file, conventionally ``*.disyre``.

        Returns
        -------
        path : pathlib.Path
            The written file.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> both = CombinedDetector([("a", det), ("b", det)], weights=[1, 0.5]).fit(X)
        >>> path = both.save(pathlib.Path(tempfile.mkdtemp()) / "model.disyre")
        >>> again = CombinedDetector.load(path, device="cpu")
        >>> bool(np.allclose(again.decision_map(X), both.decision_map(X)))
        True
        """
        check_is_fitted(self)
        members = {name: det._payload() for name, det in self.detectors_}
        params = {
            "names": [name for name, _ in self.detectors_],
            "weights": [float(w) for w in self._map_settings()[1]],
            "combination": self.combination,
            "contamination": self.contamination,
        }
        # The settings offset_ was set with, so a stale threshold still warns once loaded.
        combination, weights = getattr(self, "_offset_settings", (params["combination"], None))
        state = {
            "offset_": float(self.offset_),
            "offset_combination": combination,
            "offset_weights": params["weights"] if weights is None else weights,
        }
        return save_combined(path, params, state, members)

    @classmethod
    def load(cls, path, device="auto") -> CombinedDetector:
        """Load a combination written by :meth:`save`, without unpickling.

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save`.
        device : str or torch.device, default='auto'
            Where to put every member's network.

        Returns
        -------
        detector : CombinedDetector
            A fitted combination; its ``detectors`` parameter holds the fitted members.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from disyre_sk import CombinedDetector, DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0)
        >>> path = CombinedDetector([("a", det)]).fit(X).save(
        ...     pathlib.Path(tempfile.mkdtemp()) / "model.disyre")
        >>> CombinedDetector.load(path).named_detectors_.a.image_shape_
        (16, 16)
        """
        return cls._from_payload(path, load_archive(path), device)

    @classmethod
    def _from_payload(cls, path, payload, device) -> CombinedDetector:
        from ._engine.persist import _DAMAGED, _fail

        params, state, members = read_combined(path, payload)
        names, weights = params.get("names"), params.get("weights")
        # Files written before the option existed summed the maps.
        combination = params.get("combination", "sum")
        offset = state.get("offset_")
        ok = (
            isinstance(names, list)
            and names == list(members)
            and isinstance(weights, list)
            and len(weights) == len(names)
            and all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights)
            and isinstance(offset, (int, float))
            and math.isfinite(offset)
            and combination in ("sum", "max")
        )
        if not ok:
            raise _fail(path, "holds invalid combination settings", _DAMAGED)
        fitted = [
            (name, DISYREDetector._from_payload(f"{path} (member {name!r})", member, device))
            for name, member in members.items()
        ]
        shapes = {tuple(det.image_shape_) for _, det in fitted}
        if len(shapes) > 1:
            raise _fail(path, f"holds members fitted on different shapes {shapes}", _DAMAGED)
        combo = cls(
            fitted,
            weights=weights,
            combination=combination,
            contamination=params.get("contamination", "auto"),
        )
        try:
            combo._checked_members()
        except (TypeError, ValueError) as exc:
            raise _fail(path, f"holds invalid combination settings: {exc}", _DAMAGED) from exc
        combo._set_members(fitted, weights)
        combo.offset_ = float(offset)
        # Files without them (written before) set offset_ with the settings they hold.
        then = (
            state.get("offset_combination", combination),
            state.get("offset_weights", [float(w) for w in weights]),
        )
        combo._offset_settings = (then[0], [float(w) for w in then[1]])
        return combo

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def load_model(path, device="auto") -> DISYREDetector | CombinedDetector:
    """A :class:`DISYREDetector` or a :class:`CombinedDetector`, whichever ``path`` holds.

    Parameters
    ----------
    path : str or path-like
        A model file written by either estimator's ``save``.
    device : str or torch.device, default='auto'
        Where to put the network(s).

    Returns
    -------
    detector : DISYREDetector or CombinedDetector
        The fitted model.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from disyre_sk import DISYREDetector, load_model
    >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
    >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
    ...                      random_state=0).fit(X)
    >>> type(load_model(det.save(pathlib.Path(tempfile.mkdtemp()) / "m.disyre"))).__name__
    'DISYREDetector'
    """
    payload = load_archive(path)
    if isinstance(payload, dict) and payload.get("format") == COMBINED_FORMAT_NAME:
        return CombinedDetector._from_payload(path, payload, device)
    from ._engine.persist import check_payload

    return DISYREDetector._from_payload(path, check_payload(path, payload), device)


def members_of(model) -> list:
    """``(name, DISYREDetector)`` pairs: a combination's members, or the model alone."""
    if isinstance(model, CombinedDetector):
        return list(model.detectors_)
    return [("detector", model)]


def layout_of(detector):
    """The fitted layout of a detector or of a combination's first member."""
    if isinstance(detector, CombinedDetector):
        check_is_fitted(detector)
        return fitted_layout(detector.detectors_[0][1])
    return fitted_layout(detector)
