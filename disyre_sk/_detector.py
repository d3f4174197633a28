"""The DISYRE estimator: parameters, validation and shape bookkeeping.

The work itself is delegated: :mod:`._engine.training` optimises the network,
:mod:`._engine.inference` turns restorations into maps, :mod:`._data` handles layouts and
intensities. This module only decides what goes where.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _data
from ._device import (
    activation_bytes,
    check_device_name,
    check_fits,
    mapping_precision,
    resolve_device,
    training_precision,
)
from ._engine import monitor, reference, symmetry
from ._engine.augment import Augmentation
from ._engine.checkpoint import Checkpointer, fingerprint
from ._engine.distributed import World, join_world
from ._engine.inference import Restorer, erode_foreground
from ._engine.persist import detector_payload, load_detector
from ._engine.training import SliceBank, Trainer
from ._files import atomic_write, check_writable, jsonable
from .corruption import get_corruption
from .nn import UNet
from .schedule import check_severities

# Samples are mapped in groups of at most this many voxels, so host memory stays
# bounded however many volumes are passed at once.
_MAX_VOXELS_PER_GROUP = 1 << 24


def _sample_groups(shape) -> list[slice]:
    """The runs of samples mapped together: as many as hold ``_MAX_VOXELS_PER_GROUP``."""
    group = max(1, _MAX_VOXELS_PER_GROUP // int(np.prod(shape[1:])))
    return [slice(start, start + group) for start in range(0, shape[0], group)]


def _check_map_median(value, image_shape=None) -> int:
    """A median filter size as an int; a clear error unless it is 0 or odd and >= 3.

    With ``image_shape``, also refused when wider than the image's smallest side: a
    median over more than the whole image is no longer a local filter.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or (value != 0 and (value < 3 or value % 2 == 0))
    ):
        raise ValueError(
            f"map_median must be 0 (no median filter) or an odd number of voxels >= 3, "
            f"got {value!r}."
        )
    if image_shape is not None and value > min(image_shape):
        raise ValueError(
            f"map_median={value} is wider than the images {tuple(image_shape)}: a median "
            "filter is a local filter; use a small odd size such as 3."
        )
    return int(value)


def _check_map_smoothing(value, name: str = "map_smoothing", unit: str = "pixels") -> float:
    """A smoothing sigma as a float; a clear error unless it is finite and >= 0."""
    if not isinstance(value, Real) or not 0 <= float(value) < math.inf:
        raise ValueError(
            f"{name} must be a finite number >= 0 (a Gaussian sigma in {unit}; 0 for "
            f"none), got {value!r}."
        )
    return float(value)


def _refuse_oversized(config, batch, side, device, *, training, what, advice) -> None:
    """Refuse a batch of ``side``-pixel squares that the network ``config`` cannot fit.

    ``config`` holds the UNet's ``widths``, ``n_res_blocks``, ``attention_levels`` and
    ``mid_attention`` (default True: the middle block attends at the deepest level).
    """
    widths = config["widths"]
    levels = tuple(config.get("attention_levels", ()))
    if config.get("mid_attention", True):
        levels = (*levels, len(widths) - 1)
    estimate = activation_bytes(
        batch, side, widths, config["n_res_blocks"], training, levels, device.type == "cpu"
    )
    check_fits(estimate, device, what, advice)


def _comparable(settings: dict) -> str:
    """Settings as canonical JSON: tuples, lists and arrays of one value compare equal."""
    return json.dumps(jsonable(settings), sort_keys=True)


@dataclass(frozen=True, kw_only=True)
class _FitData:
    """What ``fit`` reads and derives from its input before training."""

    images: np.ndarray
    foreground: np.ndarray
    layout: _data.Layout
    slices: np.ndarray  # scaled training slices (validation samples held out)
    slice_fg: np.ndarray
    intensity_range: tuple
    plan: object  # monitor.plan_validation's record
    world: object  # the process group (distributed.World)
    rng: np.random.RandomState
    init_seed: int
    train_seed: int
    # Healthy samples held out by reference_fraction (None: the references are learned
    # on the training samples), and their indices in X.
    reference_images: np.ndarray | None = None
    reference_fg: np.ndarray | None = None
    reference_samples: list | None = None


class DISYREDetector(OutlierMixin, BaseEstimator):
    """Unsupervised anomaly detection and localisation by synthetic restoration (DISYRE).

    A UNet learns to restore healthy images corrupted by synthetic anomalies of graded
    severity, conditioned on that severity. At test time, the changes it makes to a scan
    are the anomaly map: :meth:`decision_map` gives one value per voxel, and
    :meth:`score_samples` reduces each map to one score per scan. Only healthy scans are
    needed for training.

    Parameters
    ----------
    image_shape : tuple of int, default=None
        Shape ``(H, W)`` or ``(D, H, W)`` of the images when ``X`` is a 2-D table
        ``(n, F)`` of flattened images. With ``image_shape=None`` a table is read as
        ``n`` images of one row (each feature a pixel), so tabular data still works.
    slice_axis : {0, 1, 2}, default=0
        Spatial axis of ``(n, D, H, W)`` volumes along which 2-D slices are cut.
    patch_size : int, default=128
        Side of the square training patches and inference windows; a multiple of
        ``2 ** (len(widths) - 1)``. Images smaller than a patch are zero-padded.
    widths : tuple of int, default=(32, 64, 96, 128, 256, 256)
        Channels of the UNet at each resolution level (the reference network).
    n_res_blocks : int, default=2
        Residual blocks per resolution level.
    attention_levels : tuple of int, default=None
        Resolution levels (0 = full resolution) with self-attention. ``None`` puts it
        at the second-deepest level (8×8 for 128-pixel patches and six levels) when the
        network has at least three levels; the middle block always has attention.
    network : callable, default=None
        Builds the restoration network: called with the keyword arguments of
        :class:`~disyre_sk.nn.UNet` (``in_channels``, ``out_channels``, ``widths``,
        ``n_res_blocks``, ``attention_levels``, ``mid_attention``, ``residual``) and
        returning an ``nn.Module`` called as ``module(x, severity)`` on ``(B, 1, H, W)``
        patches and ``(B,)`` severities, returning the restored ``(B, 1, H, W)``. A
        module whose inputs must be a multiple of some size says so with a
        ``size_multiple`` attribute (default ``2 ** (len(widths) - 1)``). ``None`` is
        :class:`~disyre_sk.nn.UNet`, the reference network. A model with a custom network
        pickles (its module travels as is) but cannot be written to a safe model file,
        which rebuilds a UNet: :meth:`save` refuses it.
    corruption : {'dag', 'fpi', 'gaussian'} or corruption object, default='dag'
        Synthetic anomalies used in training: ``'dag'`` (shape × foreign-patch texture
        × intensity bias, MICCAI 2024), ``'fpi'`` (foreign-patch interpolation, ISBI
        2024), ``'gaussian'`` (noise, the ablation), or an object with
        ``sample_params`` and ``apply`` (see :mod:`disyre_sk.corruption`).
    n_steps : int, default=100_000
        Optimisation steps.
    batch_size : int, default=96
        Patches per optimisation step; under torchrun, the global batch, split evenly
        over the processes.
    learning_rate : float, default=1e-4
        Peak learning rate of AdamW.
    weight_decay : float, default=1e-6
        AdamW weight decay.
    warmup_steps : int, default=500
        Linear warm-up steps before the cosine decay (at most a tenth of ``n_steps``).
    grad_clip : float or None, default=1.0
        Largest gradient norm; ``None`` turns clipping off.
    augment : bool, default=True
        Augment healthy patches (flips, rotation, scaling, elastic, gamma, brightness,
        noise, blur) before corrupting them.
    inference : {'ensemble', 'multistep'}, default='ensemble'
        ``'ensemble'`` restores the input once at each severity and averages
        ``|x - restoration|``; ``'multistep'`` runs cold-diffusion restoration steps
        from the highest severity down and averages the change of each step.
    severities : tuple of float, default=(0.05, 0.25, 0.5, 0.75)
        Severities in ``(0, 1]`` used at inference.
    stride : int, default=None
        Step between inference windows; ``None`` uses a quarter of the window (75 %
        overlap, the authors' setting).
    window_size : int or 'slice', default=None
        Side of the inference windows; ``None`` uses ``patch_size``. The network is
        fully convolutional, so larger windows work too; ``'slice'`` maps each slice in
        one network input covering that slice's foreground box (rectangular, at least
        ``patch_size`` on each side, so a slice's map does not depend on the other
        slices): the fastest way, with no window overlap to average over (measure its
        accuracy on your data before relying on it).
    inference_batch_size : int, default=64
        Windows per network call at inference.
    map_smoothing : float, default=1.0
        Standard deviation, in pixels, of an in-plane Gaussian that smooths each map
        inside the foreground (a normalised convolution: the brain's edge is not
        dimmed, and the map stays 0 outside). Restorations are noisy pixel by pixel
        while lesions span many pixels: one pixel raised pixel AP in every comparison
        recorded (CPU and GPU, three corruptions, two contrasts, two unseen brains; the
        user guide's inference page has the measurements), so it is on by default.
        ``0`` keeps the raw map, as the published method does.
    map_smoothing_across : float, default=0.0
        Standard deviation, in slices, of a Gaussian that smooths the maps of
        ``(n, D, H, W)`` volumes along ``slice_axis``, across neighbouring slices,
        inside the foreground (a normalised convolution, after the in-plane smoothing
        and erosion). The network maps every slice on its own, so its maps hold noise
        that changes from one slice to the next, while a lesion spans several slices:
        averaged across slices, the noise falls and the lesion stays (the user guide's
        inference page has the measurements). A lesion thinner than about one sigma is
        dimmed. ``0`` keeps each slice's map as it is, as the published method does.
        2-D images are never smoothed across samples. With
        ``map_standardization='location'``, set it before ``fit``: the healthy
        reference maps are learned with it.
    map_normalization : {None, 'intensity'}, default=None
        ``'intensity'``: after training, ``fit`` measures how much the network changes
        healthy tissue of each intensity (the mean residual of training slices in 20
        equal intensity bins, ``residual_profile_``), and every map divides each pixel's
        residual by the value of its intensity's bin, before smoothing. Bright CSF, the
        brain's rim and noisy tissue are restored less certainly than white matter;
        normalised, a pixel scores by how much more it changed than healthy tissue of
        its intensity does. It does not depend on where a pixel is, so it carries to
        brains unlike the training ones. ``None`` keeps the raw residual (the
        published method). Setting it after ``fit`` needs a refit.
    map_standardization : {None, 'location'}, default=None
        ``'location'``: after training, ``fit`` maps the healthy training scans and
        keeps, for every voxel, the mean and spread of their maps there (pooled over a
        Gaussian neighbourhood of one voxel; ``location_mean_``, ``location_scale_``).
        Every map then becomes ``max(map - mean, 0) / scale``, after normalisation,
        smoothing and erosion: a voxel scores by how much more it changed than healthy
        scans change at that place, so places the network restores less surely in every
        brain (ventricle walls, the brain's base) stop standing out. Only for scans on
        one grid, registered to a common template; scans in their own space have no
        common "place". The model file grows by two float32 arrays of the image's
        shape. ``None`` keeps the map as it is (the published method). Setting it after
        ``fit`` needs a refit.
    map_erosion : int, default=0
        Set the map to 0 on the outermost ``map_erosion`` pixels of each slice's
        foreground (in-plane erosion by the 3 x 3 cross, as
        ``scipy.ndimage.binary_erosion(..., iterations=map_erosion)``), after
        smoothing. The brain's rim is where a restoration is least certain and
        where skull-stripping leaves its errors; eroding the evaluation mask there is
        the field's standard post-processing. ``0`` keeps every foreground pixel (the
        published method). A lesion that touches the rim loses those pixels too.
    map_median : int, default=0
        Side, in voxels, of a median filter applied to each finished map (after
        normalisation, smoothing, erosion and standardisation): a cube for
        ``(n, D, H, W)`` volumes, a square for 2-D images; the map's zeros outside the
        foreground take part, and it stays 0 there. The median filter of the map is the
        field's standard post-processing: it removes isolated hot voxels that smoothing
        only spreads, and keeps the edges of lesions larger than the filter. ``0``
        turns it off (the published method); otherwise an odd size ``>= 3``. Read at
        predict time, like the other map settings.
    map_flip : bool, default=False
        Restore every slice twice, as it is and mirrored along its last axis (the axis
        the training augmentation mirrors, so the mirrored slice is one the network
        learned to restore), and take the mean of the two restorations (test-time
        augmentation): the part of the network's error that does not mirror with the
        slice cancels, the lesion, removed in both, stays. Doubles the network's share
        of the mapping time. ``False``: one restoration (the published method). Read at
        predict time; the healthy references ``fit`` learns (``residual_profile_``, the
        location reference, ``offset_``) are learned with it, so after changing it on a
        fitted model call :meth:`calibrate`.
    map_symmetry : float in [0, 1], default=0.0
        Weight of a left-right symmetry prior: each finished map is multiplied by
        ``1 - map_symmetry * s``, where ``s`` in ``[0, 1]`` says how well the scan
        mirrors itself at each voxel: the share of healthy voxels at least as
        asymmetric (``symmetry_reference_``). A voxel's asymmetry is the absolute
        difference between the scan and its mirror image along the last axis, the
        mirror aligned to the scan's own midline (the integer shift that matches it
        best) and allowed one voxel of in-plane misalignment, smoothed by one voxel. A
        new person's anatomy (ventricles, cisterns, sulci) differs from the training
        brains' on both sides alike, while most lesions lie on one side: where the scan
        mirrors itself, the map is lowered, at most by ``map_symmetry``; where it does
        not, the map is kept. ``fit`` (and :meth:`calibrate`) learns the healthy
        asymmetry from up to 32 healthy scans when the weight is above 0, before
        ``offset_``. For scans whose last axis runs left to right with the head
        roughly straight (a template space, or the package's ``(Z, Y, X)`` volumes); a
        lesion mirrored on both sides (symmetric white-matter disease) is lowered too,
        which is why the weight stops at 1 and a half-weight is the one measured (user
        guide, inference page). ``0`` turns it off (the published method). Read at
        predict time: after changing it on a fitted model, call :meth:`calibrate`.
    score_reduction : {'topk', 'mean', 'max'}, default='topk'
        How a map is reduced to a scan's score: mean of the ``top_k`` highest foreground
        values, their mean, or their maximum.
    top_k : int or float, default=0.01
        For ``'topk'``: an int ``>= 1`` is a number of voxels, a float in ``(0, 1]`` a
        fraction of the scan's foreground voxels (rounded up), as scikit-learn reads
        sizes and as :func:`disyre_sk.metrics.slice_scores` reads its ``k``: ``1`` is
        the maximum, ``1.0`` the mean of the whole foreground. A float above 1 is
        refused (before this version it was read as a count: pass ``int(k)``).
    contamination : 'auto' or float in (0, 0.5], default='auto'
        Expected fraction of outliers, which sets ``offset_``: the threshold is put at
        that quantile of the training scores. ``'auto'`` uses 0.01, a 1 % false-positive
        rate on the healthy training scans. The network has seen those scans, so on new
        healthy scans the rate is usually somewhat higher.
    calibration_size : int, float or None, default=None
        Training samples that ``fit`` maps, after training, to set ``offset_``: an int
        ``>= 1`` is a number of samples, a float in ``(0, 1]`` a fraction of them
        (rounded up), taken evenly spaced through ``X``; ``None`` maps them all. That
        pass costs one ``decision_map`` of every sample it scores, which on a large
        training set can take as long as a short training run: a few hundred samples
        set a 1 % quantile as well as thousands. Maps do not depend on it, only
        ``offset_`` (so :meth:`predict`). With ``map_standardization='location'``,
        ``fit`` maps every training sample for the location reference anyway, and
        ``offset_`` comes from all of them.
    background : float or None, default=0.0
        Intensity that marks background (skull-stripped scans have 0). Maps are 0 there.
        ``None`` treats every voxel as foreground.
    intensity_percentiles : tuple of float, default=(0.5, 99.5)
        Percentiles of the training foreground mapped to 0 and 1; ``fit`` learns them
        and applies them to every scan it later scores.
    device : str or torch.device, default='auto'
        ``'auto'`` picks CUDA when available, else the CPU.
    precision : {'auto', 'fp32', 'bf16'}, default='auto'
        Autocast of the network; ``'auto'`` trains in bf16 on CUDA and in fp32 on the
        CPU, and maps in fp32 everywhere (on a GPU, bf16 mapping measured slower than
        fp32 with TF32 convolutions). ``'bf16'`` trains and maps in bf16; set after
        ``fit``, it switches the mapping alone.
    random_state : int, RandomState instance or None, default=None
        Seeds network initialisation, patch sampling, augmentation and corruption. On a
        CPU, equal seeds give identical models and maps.
    verbose : bool or int, default=False
        Show progress bars while training and mapping.
    checkpoint_dir : str or path-like, default=None
        Folder for training checkpoints. With it set, training saves its full state
        (weights, optimiser, schedule, step, random generator) every
        ``checkpoint_every`` steps, at the end, and on Ctrl-C or SIGTERM; calling
        ``fit`` again with the same folder and data resumes where it stopped and, on a
        CPU, ends with the same weights as an uninterrupted run. A checkpoint of other
        data or training parameters is refused.
    checkpoint_every : int, default=1000
        Steps between checkpoints.
    validation_fraction : float in [0, 1), default=0.1
        Fraction of the training *samples* (whole volumes or images, never single
        slices, so no subject leaks) held out for synthetic validation: training never
        sees them; every ``validation_every`` steps anomalies of families unlike the
        training corruption are inserted into their slices and scored (pixel AP and best
        Dice per family, in ``history_['validation']``), and the weights of the best
        step are kept. ``floor(validation_fraction * n)`` samples are held out. Nothing
        is held out when no validation is scheduled (``n_steps < validation_every``),
        when that is less than one sample or leaves none for training, or with ``0``;
        ``history_['validation_note']`` says which. Explicit ``X_val`` in :meth:`fit`
        replaces the split.
    reference_fraction : float in (0, 1) or None, default=None
        Fraction of the healthy *samples* held out of training to learn what ``fit``
        learns after training: the healthy references of the maps
        (``map_normalization``, ``map_standardization``) and ``offset_``. A network's
        residuals on scans it trained on are smaller than on a new person's, so
        references learned on them make every new scan look anomalous; held-out healthy
        scans compare a new scan with healthy scans the network has not seen, as
        :meth:`calibrate` does with scans of one's own. ``floor(reference_fraction *
        n)`` samples are held out (at least one, two with
        ``map_standardization='location'``, and at least one left to train on),
        drawn from the seed of ``random_state`` (``None``: one fixed draw, so that a
        resumed fit holds out the same ones); ``validation_fraction`` then splits the
        rest. ``history_['reference_samples']`` lists their indices in ``X``. ``None``
        learns the references on the training samples. On the demo's recipe, 16 of 32
        held out gave no consistent gain over references on the 16 trained on (the
        user guide's thresholds page has the figures).
    validation_every : int, default=1000
        Steps between validations; the last step is validated too.
    early_stopping : bool or 'auto', default=False
        Stop training when ``n_iter_no_change`` validations in a row do not beat the
        best one. ``'auto'`` stops early only when validation runs; ``True`` raises an
        error when it cannot run. Either way the best step's weights are kept.
    n_iter_no_change : int, default=10
        Patience of early stopping, in validations.
    validation_tol : float, default=0.01
        Noise margin of the mean synthetic validation AP. The kept step is the latest
        one whose score is within ``validation_tol`` of the best so far (an earlier
        step must be better by more than the margin to win over more training), and
        early stopping counts validations that do not beat the best by more than it.
        On the offline cohort a flat, noisy validation curve otherwise kept a step
        from early in training (``benchmarks/results/validation_no_margin.md``).
    callbacks : list of :class:`~disyre_sk.callbacks.TrainingCallback`, default=None
        Objects called during training (start, every few steps with the new losses,
        after each validation, end), e.g. to log, time or snapshot the network. They
        observe only: the fitted model is the same with or without them. Not stored by
        :meth:`save`.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained restoration UNet, on ``device_``.
    device_ : torch.device
        Device used for training and inference.
    precision_ : str
        Resolved training precision, ``'fp32'`` or ``'bf16'``.
    history_ : dict
        ``'loss'`` and ``'learning_rate'`` per step, ``'n_slices'`` trained on, and the
        synthetic validation: ``'validation'`` (one record per validation: ``'step'``,
        ``'average_precision'`` and ``'best_dice'`` per family, their means
        ``'mean_average_precision'`` and ``'mean_best_dice'``, ``'seconds'``),
        ``'best_step'`` (the step whose weights ``network_`` holds, by mean AP; ``None``
        without validation), ``'stopped_early'``, ``'validation_note'`` (what
        validation did, or why it did not run), ``'validation_samples'`` (indices of
        the samples of ``X`` held out for it, or ``None``) and ``'reference_samples'``
        (those held out by ``reference_fraction``, or ``None``).
    intensity_range_ : tuple of float
        Raw intensities mapped to 0 and 1.
    residual_profile_ : tuple of float or None
        With ``map_normalization='intensity'``: the mean healthy residual per intensity
        bin (plus a tenth of the overall mean, so no bin divides by almost nothing);
        ``None`` otherwise.
    location_mean_ : ndarray of float32, or None
        With ``map_standardization='location'``: the per-voxel mean of the healthy
        training maps, of shape ``image_shape_``; ``None`` otherwise.
    location_scale_ : ndarray of float32, or None
        With ``map_standardization='location'``: their per-voxel spread plus a floor
        (the median spread inside the brain), always positive; ``None`` otherwise.
    symmetry_reference_ : tuple of float or None
        With ``map_symmetry > 0``: the percentiles (the 0th to the 100th, 101 values) of the
        healthy scans' asymmetry over their foreground; ``None`` otherwise.
    image_shape_ : tuple of int
        Spatial shape of the training images.
    n_features_in_ : int
        Voxels per sample.
    offset_ : float
        ``decision_function = score_samples - offset_``.

    See Also
    --------
    disyre_sk.pyod.DISYREPyOD : The same detector with PyOD's conventions.

    Notes
    -----
    Signs follow scikit-learn: :meth:`score_samples` and :meth:`decision_function` are
    *higher for more normal* scans, whereas :meth:`decision_map` is *higher for more
    anomalous* voxels.

    The network is parameterised as a residual, ``x + f(x, s)`` with ``f``'s last
    convolution initialised at zero: it predicts the clean image, but starts as the
    identity and learns only what to change, which matters most on short runs (the
    user guide's method page gives the measurement).

    Launched by ``torchrun`` (several processes, one GPU each), ``fit`` trains one model
    data-parallel with ``DistributedDataParallel``: each process draws its own patches,
    gradients are averaged, and every process ends with the same fitted detector; see
    the user guide's page on multi-GPU training.

    Intensities need no pre-scaling: ``fit`` learns a robust range from the training
    foreground. Real scans should be skull-stripped, registered and of one contrast.

    References
    ----------
    .. [1] Naval Marimont, S., Baugh, M., Siomos, V., Tzelepis, C., Kainz, B., Tarroni,
       G. "DISYRE: Diffusion-Inspired SYnthetic REstoration for Unsupervised Anomaly
       Detection", ISBI 2024.
    .. [2] Naval Marimont, S., Siomos, V., Baugh, M., Tzelepis, C., Kainz, B., Tarroni,
       G. "Ensembled Cold-Diffusion Restorations for Unsupervised Anomaly Detection",
       MICCAI 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk import DISYREDetector
    >>> rng = np.random.default_rng(0)
    >>> healthy = rng.uniform(0.2, 0.8, size=(8, 16, 16))
    >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=5, batch_size=4,
    ...                      random_state=0).fit(healthy)
    >>> det.decision_map(healthy[:2]).shape
    (2, 16, 16)
    >>> det.score_samples(healthy[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        "image_shape": [None, "array-like"],
        "slice_axis": [Interval(Integral, 0, 2, closed="both")],
        "patch_size": [Interval(Integral, 1, None, closed="left")],
        "widths": ["array-like"],
        "network": [None, callable],
        "n_res_blocks": [Interval(Integral, 1, None, closed="left")],
        "attention_levels": [None, "array-like"],
        "corruption": [
            StrOptions({"dag", "fpi", "gaussian"}),
            HasMethods(["sample_params", "apply"]),
        ],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_steps": [Interval(Integral, 0, None, closed="left")],
        "grad_clip": [None, Interval(Real, 0, None, closed="neither")],
        "augment": ["boolean"],
        "inference": [StrOptions({"ensemble", "multistep"})],
        "severities": ["array-like", Interval(Real, 0, 1, closed="right")],
        "stride": [None, Interval(Integral, 1, None, closed="left")],
        "window_size": [None, StrOptions({"slice"}), Interval(Integral, 1, None, closed="left")],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "map_smoothing": [Interval(Real, 0, None, closed="left")],
        "map_smoothing_across": [Interval(Real, 0, None, closed="left")],
        "map_normalization": [None, StrOptions({"intensity"})],
        "map_standardization": [None, StrOptions({"location"})],
        "map_erosion": [Interval(Integral, 0, None, closed="left")],
        "map_median": [Interval(Integral, 0, None, closed="left")],
        "map_symmetry": [Interval(Real, 0, 1, closed="both")],
        "map_flip": ["boolean"],
        "score_reduction": [StrOptions({"topk", "mean", "max"})],
        "top_k": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "calibration_size": [
            None,
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "background": [None, Real],
        "intensity_percentiles": ["array-like"],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_dir": [None, str, os.PathLike],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [None, Interval(Real, 0, 1, closed="left")],
        "reference_fraction": [None, Interval(Real, 0, 1, closed="neither")],
        "validation_every": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "validation_tol": [Interval(Real, 0, None, closed="left")],
        "callbacks": [None, list, tuple],
    }

    def __init__(
        self,
        *,
        image_shape=None,
        slice_axis=0,
        patch_size=128,
        widths=(32, 64, 96, 128, 256, 256),
        n_res_blocks=2,
        attention_levels=None,
        network=None,
        corruption="dag",
        n_steps=100_000,
        batch_size=96,
        learning_rate=1e-4,
        weight_decay=1e-6,
        warmup_steps=500,
        grad_clip=1.0,
        augment=True,
        inference="ensemble",
        severities=(0.05, 0.25, 0.5, 0.75),
        stride=None,
        window_size=None,
        inference_batch_size=64,
        map_smoothing=1.0,
        map_smoothing_across=0.0,
        map_normalization=None,
        map_standardization=None,
        map_erosion=0,
        map_median=0,
        map_flip=False,
        map_symmetry=0.0,
        score_reduction="topk",
        top_k=0.01,
        contamination="auto",
        calibration_size=None,
        background=0.0,
        intensity_percentiles=(0.5, 99.5),
        device="auto",
        precision="auto",
        random_state=None,
        verbose=False,
        checkpoint_dir=None,
        checkpoint_every=1000,
        validation_fraction=0.1,
        reference_fraction=None,
        validation_every=1000,
        early_stopping=False,
        n_iter_no_change=10,
        validation_tol=0.01,
        callbacks=None,
    ):
        self.image_shape = image_shape
        self.slice_axis = slice_axis
        self.patch_size = patch_size
        self.widths = widths
        self.network = network
        self.n_res_blocks = n_res_blocks
        self.attention_levels = attention_levels
        self.corruption = corruption
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.augment = augment
        self.inference = inference
        self.severities = severities
        self.stride = stride
        self.window_size = window_size
        self.inference_batch_size = inference_batch_size
        self.map_smoothing = map_smoothing
        self.map_smoothing_across = map_smoothing_across
        self.map_normalization = map_normalization
        self.map_standardization = map_standardization
        self.map_erosion = map_erosion
        self.map_median = map_median
        self.map_flip = map_flip
        self.map_symmetry = map_symmetry
        self.score_reduction = score_reduction
        self.top_k = top_k
        self.contamination = contamination
        self.calibration_size = calibration_size
        self.background = background
        self.intensity_percentiles = intensity_percentiles
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.validation_fraction = validation_fraction
        self.reference_fraction = reference_fraction
        self.validation_every = validation_every
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.validation_tol = validation_tol
        self.callbacks = callbacks

    # ------------------------------------------------------------------ validation
    def _check_settings(self):
        widths = tuple(int(w) for w in np.atleast_1d(self.widths))
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths!r}.")
        multiple = 2 ** (len(widths) - 1)
        if self.patch_size % multiple:
            raise ValueError(
                f"patch_size={self.patch_size} must be a multiple of {multiple} "
                f"(2 ** (len(widths) - 1) for widths={widths})."
            )
        severities = check_severities(self.severities)
        _check_map_smoothing(self.map_smoothing)  # inf passes the Interval constraint
        _check_map_smoothing(self.map_smoothing_across, "map_smoothing_across", "slices")
        _check_map_median(self.map_median)
        for name in ("top_k", "learning_rate", "weight_decay", "grad_clip", "validation_tol"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        if isinstance(self.window_size, Integral) and self.window_size % multiple:
            raise ValueError(
                f"window_size={self.window_size} must be a multiple of {multiple} "
                f"(2 ** (len(widths) - 1) for widths={widths})."
            )
        window = self.patch_size if self.window_size is None else self.window_size
        if self.stride is not None and window != "slice" and self.stride > window:
            raise ValueError(
                f"stride={self.stride} is larger than the inference window ({window} "
                "pixels): the pixels between windows would never be mapped. Use a stride "
                "of at most the window size (None: a quarter of it)."
            )
        low, high = (float(p) for p in np.asarray(self.intensity_percentiles, dtype=float))
        if not 0 <= low < high <= 100:
            raise ValueError(
                "intensity_percentiles must be two increasing percentiles in [0, 100], got "
                f"{self.intensity_percentiles!r}."
            )
        if self.attention_levels is None:
            attention = (len(widths) - 2,) if len(widths) >= 3 else ()
        else:
            attention = tuple(int(a) for a in np.atleast_1d(self.attention_levels))
        return widths, severities, attention

    def _validate_input(self, X, *, reset: bool):
        """Validate ``X``; return ``(images, layout)`` with images ``(n, *image_shape)``."""
        X = _ensure_array(X)
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
        dtype = [np.float32, np.float64]
        # scikit-learn's finiteness fast path sums X: +max + -max warns 'invalid value'.
        with np.errstate(over="ignore", invalid="ignore"):
            if ndim == 2 and (reset or self._layout.kind == "table"):
                # Tables go through scikit-learn's own checks (feature counts and names).
                X = validate_data(self, X, reset=reset, dtype=dtype)
            else:
                X = check_array(X, allow_nd=True, dtype=dtype)
                if reset and hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
        if reset:
            layout = _data.resolve_layout(X, self.image_shape)
            self.n_features_in_ = int(np.prod(layout.image_shape))
            return _data.as_images(X, layout), layout
        layout = self._layout
        fitted_ndim = 2 if layout.kind == "table" else len(layout.image_shape) + 1
        if X.ndim != fitted_ndim:
            raise ValueError(
                f"X has {X.ndim} dimensions but this detector was fitted on {fitted_ndim}-D "
                f"input ({layout.kind} of shape {layout.image_shape}); pass the same layout."
            )
        if layout.kind != "table" and tuple(X.shape[1:]) != layout.image_shape:
            raise ValueError(
                f"X has images of shape {tuple(X.shape[1:])} but this detector was fitted on "
                f"images of shape {layout.image_shape}; resample or crop the scans to the "
                "training shape (for example, register them to the same template)."
            )
        return _data.as_images(X, layout), layout

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, X_val=None):
        """Train the restoration network on healthy images.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Healthy training images; any finite real intensities.
        y : None
            Ignored; present for API consistency.
        X_val : array-like, default=None
            Healthy images for synthetic validation, in the layout of ``X``; all of
            ``X`` is then used for training and ``validation_fraction`` is ignored.
            Validated every ``validation_every`` steps and at the last step.

        Returns
        -------
        self : DISYREDetector
            The fitted detector.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> healthy = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(healthy)
        >>> det.image_shape_, len(det.history_["loss"])
        ((16, 16), 2)
        """
        # A failed or interrupted fit leaves no fitted state behind, not even a previous
        # fit's, so nothing half-trained is ever presented as fitted.
        self._clear_fitted_state()
        try:
            return self._fit(X, X_val)
        except BaseException:
            self._clear_fitted_state()
            raise

    def _fit(self, X, X_val=None):
        widths, attention = self._refuse_before_reading()
        data = self._fit_data(X, X_val)
        self._train(data, widths, attention)
        self.history_["reference_samples"] = data.reference_samples
        # After training: the map references fit learns, then offset_, from the held-out
        # healthy samples when reference_fraction asks for them.
        if data.reference_images is None:
            self._learn_references(
                data.world, data.images, data.foreground, data.slices, data.slice_fg, data.rng
            )
        else:
            images, fg = data.reference_images, data.reference_fg
            self._learn_references(
                data.world, images, fg, *self._scaled_slices(images, fg), data.rng
            )
        return self

    def _scaled_slices(self, images, foreground) -> tuple[np.ndarray, np.ndarray]:
        """Scans scaled by the learned intensity range and cut into slices, with their
        foreground slices, as the network sees them."""
        is_volume = self._layout.is_volume
        scaled = _data.scale_intensities(images, foreground, self.intensity_range_)
        return (
            _data.to_slices(scaled, is_volume, self.slice_axis),
            _data.to_slices(foreground, is_volume, self.slice_axis),
        )

    def _reference_split(self, n: int, train_seed: int) -> np.ndarray | None:
        """Sorted indices of the samples ``reference_fraction`` holds out, or None."""
        fraction = self.reference_fraction
        if fraction is None:
            return None
        n_ref = math.floor(fraction * n + 1e-9)
        need = 2 if self.map_standardization == "location" else 1
        if n_ref < need or n - n_ref < 1:
            why = " (map_standardization='location' measures a per-voxel spread)"
            raise ValueError(
                f"reference_fraction={fraction:g} of {n} samples holds out {n_ref} for the "
                f"healthy references and leaves {n - n_ref} for training; it needs at least "
                f"{need} held out"
                + (why if need == 2 else "")
                + " and one to train on. Pass more healthy samples, change the fraction, or "
                "set reference_fraction=None."
            )
        # A stream of its own from the training seed: processes agree, the members of a
        # CombinedDetector with one random_state hold out the same samples, and the
        # training stream is the one it would be without the split. Without a seed, one
        # fixed draw: a fit resumed from its checkpoint holds out the same samples.
        seed = 0 if self.random_state is None else train_seed
        rng = np.random.default_rng([seed, 7])
        return np.sort(rng.choice(n, size=n_ref, replace=False))

    def _refuse_before_reading(self) -> tuple[list[int], list[int]]:
        """Settings checked before any data is read or any step is run, not after an hour."""
        widths, _, attention = self._check_settings()
        _refuse_oversized(
            dict(widths=widths, n_res_blocks=self.n_res_blocks, attention_levels=attention),
            self.batch_size,
            self.patch_size,
            resolve_device(self.device),
            training=True,
            what=f"Training with batch_size={self.batch_size} and patch_size={self.patch_size}",
            advice="lower batch_size or patch_size",
        )
        if self.checkpoint_dir is not None:
            check_writable(self.checkpoint_dir, "checkpoint_dir")
        return widths, attention

    def _fit_data(self, X, X_val) -> _FitData:
        """Checked inputs, seeds, the process group, the validation plan, training slices."""
        images, layout = self._validate_input(X, reset=True)
        self._layout = layout
        self._check_symmetry_layout()  # before training, not after it
        foreground = _data.foreground_of(images, self.background)
        _data.check_foreground(foreground, "X")
        rng = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        # Under torchrun every rank joins one process group and takes rank 0's seeds and
        # intensity range (random_state=None draws them per process); else a no-op.
        world = join_world(resolve_device(self.device))
        world.check_same_data(images)
        init_seed, train_seed = world.agree((init_seed, train_seed))
        held = self._reference_split(len(images), train_seed)
        reference, keep = {}, None
        if held is not None:
            reference = dict(
                reference_images=images[held],
                reference_fg=foreground[held],
                reference_samples=held.tolist(),
            )
            keep = np.setdiff1d(np.arange(len(images)), held)
            images, foreground = images[keep], foreground[keep]
        # Validation draws from a seed of its own: the training stream stays the same.
        val_images = None if X_val is None else self._validate_input(X_val, reset=False)[0]
        plan = monitor.plan_validation(
            self, layout, images, foreground, val_images, monitor.validation_seed(train_seed)
        )
        if keep is not None and plan.held_out is not None:
            # The plan split the samples left after the reference split: name them in X.
            plan.held_out = keep[plan.held_out].tolist()
        fit_images, fit_fg = plan.training_data(images, foreground)
        intensity_range = _data.learn_intensity_range(
            fit_images, fit_fg, tuple(float(p) for p in self.intensity_percentiles), rng
        )
        intensity_range = world.agree(intensity_range)
        scaled = _data.scale_intensities(fit_images, fit_fg, intensity_range)
        return _FitData(
            images=images,
            foreground=foreground,
            layout=layout,
            slices=_data.to_slices(scaled, layout.is_volume, self.slice_axis),
            slice_fg=_data.to_slices(fit_fg, layout.is_volume, self.slice_axis),
            intensity_range=intensity_range,
            plan=plan,
            world=world,
            rng=rng,
            init_seed=init_seed,
            train_seed=train_seed,
            **reference,
        )

    def _train(self, data: _FitData, widths, attention) -> None:
        """Build the network, train it (resuming a checkpoint), set the training state."""
        world, plan = data.world, data.plan
        device = world.device
        precision = training_precision(device, self.precision)
        # Initialise the weights from our own seed without touching the caller's
        # global torch RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(data.init_seed)
            network = self._build_network(widths, attention)
        # Contiguous (NCHW) on every device: on an H100, channels_last made the bf16
        # training step 1.22x slower (GroupNorm; benchmarks/results/speed_cuda.md).
        network = network.to(device)
        bank = SliceBank(data.slices, data.slice_fg, self.patch_size, device)
        # Known before training; the validator maps with them as predict would.
        self.image_shape_ = data.layout.image_shape
        self.intensity_range_ = data.intensity_range
        self.device_ = device
        self.precision_ = precision
        self.network_ = network
        self.residual_profile_ = self.symmetry_reference_ = None
        self.location_mean_ = self.location_scale_ = None
        # The profile is learned after training: validation maps the raw residual.
        validator = monitor.make_validator(
            self, plan, self._restorer(post_process=False), is_volume=data.layout.is_volume
        )
        trainer = Trainer(
            network,
            bank,
            get_corruption(self.corruption),
            Augmentation() if self.augment else None,
            n_steps=self.n_steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_clip=self.grad_clip,
            device=device,
            precision=precision,
            seed=data.train_seed,
            world=world,
            monitor=validator,
            callbacks=self.callbacks or (),
            owner=self,
        )
        checkpointer = None
        if self.checkpoint_dir is not None:
            checkpointer = Checkpointer(
                self.checkpoint_dir,
                self.checkpoint_every,
                monitor.run_fingerprint(fingerprint(self._training_params(), data.images), plan),
            )
            if checkpointer.restore(trainer) and self.verbose and world.is_main:
                print(f"Resuming training at step {trainer.step} from {checkpointer.path}")
        history = trainer.run(verbose=bool(self.verbose), checkpointer=checkpointer)
        history["n_slices"] = len(bank)
        history.update(monitor.history_entries(plan, validator, bool(self.verbose)))
        if validator is not None:
            self._validation_examples = validator.vset.examples(2)
        self.network_ = network.eval()
        self.history_ = history

    def _learn_references(self, world, images, foreground, slices, slice_fg, rng) -> None:
        """The healthy references of the maps (residual profile, healthy asymmetry,
        location reference) that the map settings ask for, then ``offset_``, from
        healthy scans and their ``[0, 1]``-scaled slices."""
        self.residual_profile_ = self.symmetry_reference_ = None
        self.location_mean_ = self.location_scale_ = None
        if self.map_normalization == "intensity":
            self.residual_profile_ = self._residual_profile(slices, slice_fg, rng)
        if self.map_symmetry > 0:
            self.symmetry_reference_ = self._symmetry_reference(images, foreground)
        if self.map_standardization == "location":
            train_scores = -self._fit_location_reference(world, images, foreground)
        else:
            pick = self._calibration_samples(len(images))
            images, foreground = images[pick], foreground[pick]
            train_scores = -world.gather_shards(
                lambda part: self._anomaly_scores(images[part], foreground[part]), len(images)
            )
        self.offset_ = self._offset(train_scores)
        self._offset_settings = self._scoring_settings()

    def calibrate(self, X) -> DISYREDetector:
        """Learn the healthy references of the maps, and ``offset_``, again from ``X``.

        The network is kept; what ``fit`` learns after training is learned anew from
        healthy scans, as the map settings ask: the healthy residual per intensity
        (``map_normalization='intensity'``), the per-voxel healthy maps
        (``map_standardization='location'``), the healthy asymmetry
        (``map_symmetry > 0``) and the threshold ``offset_``. Calibrating on
        healthy scans of one's own site (scanner, protocol, population), kept out of
        any evaluation, compares every map with healthy scans like the ones it will map,
        rather than with the training scans, which the network has seen. It also applies
        map settings changed with ``set_params`` after ``fit`` that need a reference.
        The intensity range learned in ``fit`` is kept: scans must be on the training
        scale.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Healthy scans in the layout used for ``fit``; at least two with
            ``map_standardization='location'`` (a per-voxel spread needs several; a few
            dozen estimate it well).

        Returns
        -------
        self : DISYREDetector
            The calibrated detector.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> rng = np.random.default_rng(0)
        >>> X, site = rng.uniform(0.2, 1, (6, 16, 16)), rng.uniform(0.3, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      map_standardization="location", random_state=0).fit(X)
        >>> before = det.location_mean_.copy()
        >>> det = det.calibrate(site)
        >>> bool((det.location_mean_ != before).any()), det.predict(site).shape
        (True, (6,))
        """
        images, foreground = self._prepare(X)
        self._check_params_now()
        if self.map_standardization == "location" and len(images) < 2:
            raise ValueError(
                f"calibrate got {len(images)} scan; map_standardization='location' needs at "
                "least two healthy scans to measure each voxel's spread (a few dozen "
                "estimate it well)."
            )
        # One process: the references are sums over the given scans.
        world = World(device=self.device_)
        rng = check_random_state(self.random_state)
        with references_kept(self):
            self._learn_references(
                world, images, foreground, *self._scaled_slices(images, foreground), rng
            )
        return self

    def _build_network(self, widths, attention) -> torch.nn.Module:
        """The network ``fit`` trains: the UNet, or what the ``network`` callable builds."""
        config = dict(
            in_channels=1,
            out_channels=1,
            widths=widths,
            n_res_blocks=self.n_res_blocks,
            attention_levels=attention,
            mid_attention=True,
            residual=True,
        )
        if self.network is None:
            return UNet(**config)
        network = self.network(**config)
        if not isinstance(network, torch.nn.Module):
            raise TypeError(
                f"network must build a torch.nn.Module, got {type(network).__name__} from "
                f"{self.network!r}."
            )
        if not hasattr(network, "size_multiple"):
            network.size_multiple = 2 ** (len(widths) - 1)
        if self.patch_size % network.size_multiple:
            raise ValueError(
                f"patch_size={self.patch_size} must be a multiple of "
                f"{network.size_multiple}, the network's size_multiple."
            )
        if not hasattr(network, "config"):
            network.config = config
        # One tiny call now: a network that does not fit the contract fails here, with
        # a message, not after the data is on the device.
        side = network.size_multiple * max(1, 16 // network.size_multiple)
        try:
            with torch.no_grad():
                out = network(torch.zeros(1, 1, side, side), torch.full((1,), 0.5))
        except Exception as exc:
            raise TypeError(
                f"network(x, severity) failed on a (1, 1, {side}, {side}) patch: "
                f"{type(exc).__name__}: {exc}. It must take (B, 1, H, W) patches and (B,) "
                "severities."
            ) from exc
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 1, side, side):
            raise TypeError(
                "network(x, severity) must return a tensor of the input's shape (1, 1, "
                f"{side}, {side}); got {getattr(out, 'shape', type(out).__name__)}."
            )
        return network

    def _scoring_settings(self) -> dict:
        """Parameters that change the scores, hence the meaning of ``offset_``."""
        names = (
            "inference",
            "severities",
            "stride",
            "window_size",
            "map_smoothing",
            "map_smoothing_across",
            "map_normalization",
            "map_standardization",
            "map_erosion",
            "map_median",
            "map_flip",
            "map_symmetry",
            "score_reduction",
            "top_k",
            "background",
        )
        return {k: v for k, v in self.get_params().items() if k in names}

    def _training_params(self) -> dict:
        """Parameters that change training (a checkpoint is valid only for these)."""
        inference_only = {
            "inference",
            "severities",
            "stride",
            "window_size",
            "inference_batch_size",
            "map_smoothing",
            "map_smoothing_across",
            "map_normalization",
            "map_standardization",
            "map_erosion",
            "map_median",
            "map_flip",
            "map_symmetry",
            "score_reduction",
            "top_k",
            "contamination",
            "calibration_size",
            "device",
            "verbose",
            "checkpoint_dir",
            "checkpoint_every",
            "callbacks",
        }
        params = {k: v for k, v in self.get_params().items() if k not in inference_only}
        if params.get("network") is not None:
            # By name: a function's repr holds its address, which changes every run.
            net = params["network"]
            params["network"] = (
                f"{getattr(net, '__module__', '')}.{getattr(net, '__qualname__', repr(net))}"
            )
        return params

    def _clear_fitted_state(self) -> None:
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)
        self.__dict__.pop("_layout", None)
        self.__dict__.pop("_validation_examples", None)

    def _calibration_samples(self, n: int) -> np.ndarray:
        """Indices of the training samples scored for ``offset_``: evenly spaced."""
        size = self.calibration_size
        if size is None:
            return np.arange(n)
        k = min(n, size if isinstance(size, Integral) else math.ceil(size * n))
        return np.unique(np.linspace(0, n - 1, k).round().astype(int))

    def _offset(self, scores: np.ndarray) -> float:
        # 'auto' flags what 1 % of the healthy training scans would be flagged for: a
        # label-free threshold at a 1 % false-positive rate on healthy data.
        fraction = 0.01 if self.contamination == "auto" else self.contamination
        return float(np.percentile(scores, 100.0 * fraction))

    # ------------------------------------------------------------------ inference
    def _symmetry_reference(self, images, foreground) -> tuple:
        """Quantiles of the healthy asymmetry, from up to 32 scans evenly spaced."""
        self._check_symmetry_layout()
        pick = np.unique(np.linspace(0, len(images) - 1, min(len(images), 32)).astype(int))
        scaled = _data.scale_intensities(images[pick], foreground[pick], self.intensity_range_)
        return tuple(float(v) for v in symmetry.reference_quantiles(scaled, foreground[pick]))

    def _check_symmetry_layout(self) -> None:
        if self.map_symmetry > 0 and self._layout.kind == "table" and self.image_shape is None:
            raise ValueError(
                f"map_symmetry={self.map_symmetry:g} mirrors images left to right; this "
                "detector was fitted on a plain table of features, which has no left and "
                "right. Pass images (n, H, W) or (n, D, H, W), or image_shape, or set "
                "map_symmetry=0."
            )

    def _checked_symmetry(self):
        if self.map_symmetry == 0:
            return None
        self._check_symmetry_layout()
        quantiles = getattr(self, "symmetry_reference_", None)
        if quantiles is None:
            raise ValueError(
                f"map_symmetry={self.map_symmetry:g} needs the healthy asymmetry that fit "
                "learns when the weight is above 0; this detector was fitted without it. "
                "Call calibrate(X) with healthy scans (or fit again) with the weight set, "
                "or set map_symmetry=0."
            )
        try:
            q = np.asarray(quantiles, dtype=np.float64)
        except (TypeError, ValueError):
            q = np.zeros(0)
        valid = q.shape == (symmetry.N_QUANTILES,) and np.all(np.isfinite(q))
        if not valid or np.any(np.diff(q) < 0):
            raise ValueError(
                f"symmetry_reference_ must be {symmetry.N_QUANTILES} finite, non-decreasing "
                f"numbers; this detector holds {type(quantiles).__name__} "
                f"{str(quantiles)[:60]}. Call calibrate(X) with healthy scans to learn them "
                "again."
            )
        return q

    def _residual_profile(self, slices, slice_fg, rng, n_bins: int = 20) -> tuple:
        """Mean healthy residual per intensity bin, from up to 256 training slices."""
        has_fg = np.flatnonzero(slice_fg.reshape(len(slice_fg), -1).any(axis=1))
        pick = np.sort(rng.permutation(has_fg)[:256])
        restorer = self._restorer(post_process=False)
        restorer.smoothing = 0.0
        residual = restorer.maps(slices[pick], slice_fg[pick])
        fg = slice_fg[pick]
        values, x = residual[fg].astype(np.float64), slices[pick][fg]
        bins = np.clip((x * n_bins).astype(np.int64), 0, n_bins - 1)
        count = np.bincount(bins, minlength=n_bins)
        total = np.bincount(bins, weights=values, minlength=n_bins)
        overall = float(values.mean()) if values.size else 1.0
        # Bins too sparse to estimate take the overall mean; the floor (a tenth of the
        # overall mean) keeps a near-empty, near-perfectly restored bin from exploding.
        mean = np.where(count >= 50, total / np.maximum(count, 1), overall)
        return tuple(float(v) for v in mean + 0.1 * max(overall, 1e-8))

    def _fit_location_reference(self, world, images, foreground) -> np.ndarray:
        """Learn ``location_mean_``/``location_scale_``; return the training scans' scores.

        One mapping pass: each process maps its shard, the per-voxel sums are pooled over
        processes, and the same maps, standardised, give the scores ``offset_`` needs.
        """
        part = world.shard(len(images))
        fg = foreground[part]
        maps = self._maps(images[part], fg, standardize=False)
        sums = sum(world.all_gather(reference.reference_sums(maps, fg)))
        self.location_mean_, self.location_scale_ = reference.location_reference(sums)
        z = self._finish_maps(maps, images[part], fg, (self.location_mean_, self.location_scale_))
        mine = _data.reduce_scores(z, fg, self.score_reduction, self.top_k)
        if self.__dict__.get("_keep_reference_maps") and not world.is_distributed:
            self._reference_maps = z  # for a CombinedDetector's offset_ (it takes them)
        return np.concatenate([np.asarray(s) for s in world.all_gather(mine)])

    def _checked_reference(self):
        # The value itself was checked by the constraint table (_restorer runs it first).
        if self.map_standardization is None:
            return None
        mean = getattr(self, "location_mean_", None)
        scale = getattr(self, "location_scale_", None)
        if mean is None or scale is None:
            raise ValueError(
                "map_standardization='location' needs the healthy reference maps that fit "
                "learns when the parameter is set; this detector was fitted without them. "
                "Fit again with map_standardization='location', or set it back to None."
            )
        return mean, scale

    def _checked_profile(self):
        if self.map_normalization is None:
            return None
        if not (isinstance(self.map_normalization, str) and self.map_normalization == "intensity"):
            raise ValueError(
                f"map_normalization must be None or 'intensity', got {self.map_normalization!r}."
            )
        profile = getattr(self, "residual_profile_", None)
        if profile is None:
            raise ValueError(
                "map_normalization='intensity' needs the residual profile that fit learns "
                "when the parameter is set; this detector was fitted without it. Fit again "
                "with map_normalization='intensity', or set it back to None."
            )
        return profile

    def _check_params_now(self) -> None:
        """The constraint table and the cross-parameter checks, as ``fit`` runs them.

        Predict-time parameters can change after ``fit`` (``set_params``, a model
        file): they are checked where they are used, so no value that ``fit`` would
        refuse slips into inference as a silent fallback or a loop that never ends.
        """
        self._validate_params()
        widths, _, _ = self._check_settings()
        check_device_name(self.device)
        network = getattr(self, "network_", None)
        if network is not None:
            window = self.patch_size if self.window_size in (None, "slice") else self.window_size
            _refuse_oversized(
                {
                    "widths": widths,
                    "n_res_blocks": self.n_res_blocks,
                    **getattr(network, "config", {}),
                },
                self.inference_batch_size,
                window,
                self.device_,
                training=False,
                what=f"Inference with inference_batch_size={self.inference_batch_size} and "
                f"windows of {window} pixels",
                advice="lower inference_batch_size or window_size",
            )

    def _restorer(self, post_process: bool = True) -> Restorer:
        # post_process=False: the raw residual (no normalisation, no erosion) that the
        # training monitor and the residual profile measure.
        self._check_params_now()
        whole_slice = self.window_size == "slice"
        if whole_slice:
            # One network input per slice, its own foreground box: the network is fully
            # convolutional, so this is the cheapest way to map a slice.
            window = self.patch_size
            stride = window
        else:
            window = self.window_size or self.patch_size
            stride = self.stride or max(1, window // 4)
        _check_map_median(self.map_median, self.image_shape_)  # read after mapping
        return Restorer(
            self.network_,
            patch_size=window,
            stride=stride,
            whole_slice=whole_slice,
            size_multiple=self.network_.size_multiple,
            # Inference settings are read at predict time: set_params needs no refit,
            # and their checks run here too.
            smoothing=_check_map_smoothing(self.map_smoothing),
            severities=check_severities(self.severities),
            residual_profile=self._checked_profile() if post_process else None,
            erosion=int(self.map_erosion) if post_process else 0,
            flip=bool(self.map_flip),
            mode=self.inference,
            batch_size=self.inference_batch_size,
            device=self.device_,
            precision=mapping_precision(self.device_, self.precision, self.precision_),
            verbose=bool(self.verbose),
        )

    def _maps(
        self, images: np.ndarray, foreground: np.ndarray, *, standardize: bool = True
    ) -> np.ndarray:
        """Maps of ``(n, *image_shape)`` raw images, one group of samples at a time.

        ``standardize=False`` skips the location standardisation (``fit`` learns it from
        these maps).
        """
        layout = self._layout
        restorer = self._restorer()
        location = self._checked_reference() if standardize else None
        across = float(self.map_smoothing_across)  # checked by _restorer() above
        out = np.empty(images.shape, dtype=np.float32)
        for part in _sample_groups(images.shape):
            slices, slice_fg = self._scaled_slices(images[part], foreground[part])
            n = len(images[part])
            maps = restorer.maps(slices, slice_fg)
            out[part] = _data.from_slices(maps, n, layout.image_shape, self.slice_axis)
            if layout.is_volume and across >= 0.1:
                # The rim the restorer zeroed, found by the restorer's own erosion.
                support = (
                    erode_foreground(
                        torch.from_numpy(np.ascontiguousarray(slice_fg[:, None], np.float32)),
                        int(self.map_erosion),
                    )[:, 0]
                    .numpy()
                    .astype(bool)
                )
                out[part] = _data.smooth_across_slices(
                    out[part],
                    _data.from_slices(support, n, layout.image_shape, self.slice_axis),
                    across,
                    self.slice_axis,
                )
        bad = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))
        if bad.size:
            # Inputs are checked finite, so the network made these: damaged weights.
            raise FloatingPointError(
                f"the maps of {bad.size} of {len(out)} scans (indices "
                f"{bad[:10].tolist()}) hold NaN or infinite values: the network's weights "
                "are damaged or diverged. Load a model file that passes its checksum, or "
                "refit (a lower learning_rate, grad_clip) if this model came from fit."
            )
        return self._finish_maps(out, images, foreground, location) if standardize else out

    def _finish_maps(self, maps, images, foreground, location) -> np.ndarray:
        """The last map steps, after the per-slice ones: location standardisation (when
        ``location`` holds the reference), the median filter, then the symmetry prior.
        ``fit``'s reference scoring and every prediction both finish their maps here."""
        if location is not None:
            maps = reference.standardize(maps, foreground, *location)
        size = _check_map_median(self.map_median, self.image_shape_)
        maps = _data.median_filter_maps(maps, foreground, size)
        quantiles = self._checked_symmetry()
        if quantiles is not None:
            weight = float(self.map_symmetry)
            for i in range(len(maps)):
                scaled = _data.scale_intensities(
                    images[i : i + 1], foreground[i : i + 1], self.intensity_range_
                )[0]
                maps[i] *= 1.0 - weight * symmetry.symmetry(scaled, quantiles)
        return maps

    def _anomaly_scores(self, images, foreground) -> np.ndarray:
        maps = self._maps(images, foreground)
        return _data.reduce_scores(maps, foreground, self.score_reduction, self.top_k)

    def _map_and_score(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``decision_map(X)`` and ``score_samples(X)`` from one inference pass."""
        images, foreground = self._prepare(X)
        maps = self._maps(images, foreground)
        scores = -_data.reduce_scores(maps, foreground, self.score_reduction, self.top_k)
        return maps.reshape(np.shape(images)[:1] + tuple(self._input_shape(X))), scores

    def _prepare(self, X):
        check_is_fitted(self)
        images, _ = self._validate_input(X, reset=False)
        foreground = _data.foreground_of(images, self.background)
        _data.check_foreground(foreground, "X")
        return images, foreground

    def decision_map(self, X) -> np.ndarray:
        """Voxel-wise anomaly map: higher = more anomalous, 0 outside the foreground.

        Its sign is the opposite of :meth:`decision_function`'s and
        :meth:`score_samples`'s, which follow scikit-learn (higher = more normal).

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Scans in the layout used for ``fit``.

        Returns
        -------
        maps : ndarray of float32, same shape as X
            Mean absolute change of the restorations; non-negative.

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(X)
        >>> maps = det.decision_map(X[:2])
        >>> maps.shape, maps.dtype, bool((maps >= 0).all())
        ((2, 16, 16), dtype('float32'), True)
        """
        return self._map_and_score(X)[0]

    def inference_plan(self, X) -> Bunch:
        """The network inputs :meth:`decision_map` would make for ``X``, without running.

        How a scan is cut for the network depends on ``window_size``, ``stride``,
        ``patch_size`` and the foreground; this says what that cut is, to estimate the
        cost of mapping a cohort before running it, to see where windows fall, or to
        choose ``window_size`` and ``stride`` knowingly. In windowed mode all the
        slices mapped together (up to several scans) share one box, the union of their
        foregrounds, tiled at ``stride``; windows without foreground are skipped. With
        ``window_size='slice'`` each slice is one input, its own foreground box padded to
        at least ``patch_size`` and to the network's size step.

        Parameters
        ----------
        X : array-like of shape (n, H, W), (n, D, H, W) or (n, F)
            Scans in the layout used for ``fit``.

        Returns
        -------
        plan : :class:`~sklearn.utils.Bunch`
            One row per slice with foreground, in the order ``decision_map`` meets them:
            ``sample`` and ``slice`` (int arrays: the scan in ``X`` and the slice's index
            along ``slice_axis``, 0 for 2-D images); ``box`` (int array ``(rows, 4)``:
            ``row0, row1, col0, col1`` of the slice region the input holds, in the
            slice's own coordinates); ``input_shape`` (int array ``(rows, 2)``: the
            padded height and width the network tiles, or sees whole); ``windows``
            (int array: network inputs per restoration step, 1 for a whole slice).
            And ``steps`` (the severities each input is restored at, one network pass
            each), ``window`` (the window side, or None for whole slices) and
            ``network_inputs`` (``windows.sum() * len(steps)``, what the mapping costs in
            network inputs).

        Examples
        --------
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> X = np.zeros((4, 24, 24))
        >>> X[:, 4:20, 2:22] = np.random.default_rng(0).uniform(0.2, 1, (4, 16, 20))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      severities=(0.25, 0.5), random_state=0).fit(X)
        >>> plan = det.inference_plan(X[:1])
        >>> plan.box[0].tolist(), plan.input_shape[0].tolist(), int(plan.windows[0])
        ([4, 20, 2, 22], [16, 20], 2)
        >>> int(plan.network_inputs)  # 2 windows at each of 2 severities
        4
        >>> det.set_params(window_size="slice").inference_plan(X[:1]).windows.tolist()
        [1]
        """
        images, foreground = self._prepare(X)
        layout = self._layout
        restorer = self._restorer()
        rows = []
        for part in _sample_groups(images.shape):
            # The same groups as decision_map: in windowed mode they share one box.
            slice_fg = _data.to_slices(foreground[part], layout.is_volume, self.slice_axis)
            depth = slice_fg.shape[0] // len(foreground[part])
            for z, box, shape, windows in restorer.plan(slice_fg):
                rows.append((part.start + z // depth, z % depth, *box, *shape, windows))
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 9)
        steps = tuple(float(s) for s in restorer.steps)
        return Bunch(
            sample=table[:, 0],
            slice=table[:, 1],
            box=table[:, 2:6],
            input_shape=table[:, 6:8],
            windows=table[:, 8],
            steps=steps,
            window=None if restorer.whole_slice else restorer.patch_size,
            network_inputs=int(table[:, 8].sum()) * len(steps),
        )

    def _input_shape(self, X):
        if self._layout.kind == "table":
            return (self.n_features_in_,)
        return self._layout.image_shape

    def score_samples(self, X) -> np.ndarray:
        """Normality score of each scan: higher = more normal (scikit-learn's sign).

        The negative of the scan's map reduced by ``score_reduction``.

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
        >>> from disyre_sk import DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(X)
        >>> scores = det.score_samples(X)
        >>> scores.shape, bool((scores <= 0).all())  # minus a non-negative map's top-k mean
        ((6,), True)
        """
        images, foreground = self._prepare(X)
        return -self._anomaly_scores(images, foreground)

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
        >>> from disyre_sk import DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(X)
        >>> shifted = det.decision_function(X)
        >>> bool(np.allclose(shifted, det.score_samples(X) - det.offset_))
        True
        """
        scores = self.score_samples(X)  # invalid settings fail here, before any warning
        settings = getattr(self, "_offset_settings", None)
        if settings is not None and _comparable(settings) != _comparable(self._scoring_settings()):
            warnings.warn(
                "offset_ was set at fit time with other inference or scoring settings "
                f"({settings}); the scores have changed scale since, so predict and "
                "decision_function use a stale threshold. Refit, or choose a threshold on "
                "healthy scans with the new settings.",
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
        >>> from disyre_sk import DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(X)
        >>> labels = det.predict(X)
        >>> labels.shape, set(labels.tolist()) <= {-1, 1}
        ((6,), True)
        >>> bool(np.array_equal(labels == -1, det.decision_function(X) < 0))
        True
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    # ------------------------------------------------------------------ model files
    def save(self, path) -> Path:
        """Save the fitted detector to a safe, versioned model file.

        The file holds the parameters and learned state as JSON and the network's
        weights as tensors; :meth:`load` reads it back without unpickling, so a model
        file from another lab cannot run code. (Pickle and joblib files do run code when
        loaded: open those only from a trusted source.) The write is atomic.

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
        >>> from disyre_sk import DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(X)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.disyre"
        >>> loaded = DISYREDetector.load(det.save(path))
        >>> bool(np.allclose(loaded.score_samples(X), det.score_samples(X)))
        True
        """
        return atomic_write(Path(path), lambda handle: torch.save(self._payload(), handle))

    def _payload(self) -> dict:
        """What :meth:`save` writes: strings and tensors only."""
        check_is_fitted(self)
        if self.network is not None:
            raise TypeError(
                "this detector was fitted with a custom network, which a safe model file "
                "cannot hold (loading rebuilds the package's UNet from its description). "
                "Pickle the detector instead (joblib.dump; open such files only from a "
                "trusted source), or save network_.state_dict() with your own code."
            )
        return detector_payload(
            self,
            layout_kind=self._layout.kind,
            offset_settings=getattr(self, "_offset_settings", None),
        )

    @classmethod
    def load(cls, path, device="auto") -> DISYREDetector:
        """Load a detector written by :meth:`save`, without unpickling.

        The file's format version is checked (a newer format raises a ``ValueError``
        that says to upgrade); a different package version only warns.

        Parameters
        ----------
        path : str or path-like
            A model file written by :meth:`save`.
        device : str or torch.device, default='auto'
            Where to put the network; a GPU-trained model loads on a CPU.

        Returns
        -------
        detector : DISYREDetector
            A fitted detector.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from disyre_sk import DISYREDetector
        >>> X = np.random.default_rng(0).uniform(0.2, 1, (6, 16, 16))
        >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=2, batch_size=2,
        ...                      random_state=0).fit(X)
        >>> path = det.save(pathlib.Path(tempfile.mkdtemp()) / "model.disyre")
        >>> loaded = DISYREDetector.load(path, device="cpu")
        >>> loaded.device_, loaded.image_shape_
        (device(type='cpu'), (16, 16))
        >>> bool(np.allclose(loaded.decision_map(X), det.decision_map(X)))
        True
        """
        return cls._from_payload(path, None, device)

    @classmethod
    def _from_payload(cls, path, payload, device) -> DISYREDetector:
        """:meth:`load`, or with ``payload`` an already verified one (``path`` names it)."""
        detector, private = load_detector(
            cls,
            path,
            device=device,
            check_params=lambda det: det._check_params_now(),
            payload=payload,
        )
        detector._layout = private["layout"]
        settings = private["offset_settings"]
        if isinstance(settings, dict):
            # Files from before the parameter existed were scored without it.
            settings.setdefault("map_standardization", None)
        detector._offset_settings = settings
        return detector

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        # A copy: object.__getstate__ may hand back the live __dict__.
        state = dict(super().__getstate__())
        network = state.get("network_")
        if isinstance(network, torch.nn.Module) and type(network) is not UNet:
            # A custom network travels as itself, on the CPU (a copy: this one stays).
            state["network_"] = {"module": copy.deepcopy(network).cpu()}
        elif isinstance(network, torch.nn.Module):
            # Weights travel as CPU tensors so a GPU-trained detector unpickles anywhere.
            state["network_"] = {
                "config": dict(network.config),
                "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
            }
        return state

    def __setstate__(self, state):
        packed = state.get("network_")
        if isinstance(packed, dict) and ("state_dict" in packed or "module" in packed):
            device = state.get("device_", torch.device("cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
                state["device_"] = device
                state["precision_"] = "fp32"
            if "module" in packed:
                network = packed["module"]
            else:
                network = UNet(**packed["config"])
                network.load_state_dict(packed["state_dict"])
            state["network_"] = network.to(device).eval()
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _tensor_to_numpy(x):
    """A CPU numpy view of a torch tensor from any device, with or without autograd."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.detach().cpu().resolve_conj().resolve_neg()
    if x.dtype == torch.bfloat16:  # numpy has no bfloat16
        x = x.float()
    return x.numpy()


def _ensure_array(X):
    """Turn tensors and lists of arrays into one array, with a clear error when shapes differ."""
    X = _tensor_to_numpy(X)
    if (
        isinstance(X, np.ndarray)
        and X.dtype == object
        and X.ndim == 1
        and X.size
        and all(hasattr(x, "shape") for x in X)
    ):
        # An object array of images (np.array(list_of_images, dtype=object)) is a list.
        X = list(X)
    if isinstance(X, (list, tuple)) and X and all(hasattr(x, "shape") for x in X):
        X = [_tensor_to_numpy(x) for x in X]
        shapes = {tuple(np.shape(x)) for x in X}
        if len(shapes) > 1:
            raise ValueError(
                f"X is a list of arrays with different shapes {sorted(shapes)[:5]}; stack "
                "images of one shape (crop or resample them to a common grid first)."
            )
        return np.stack([np.asarray(x) for x in X])
    if isinstance(X, (list, tuple)):
        try:
            return np.asarray(X)
        except ValueError as exc:
            raise ValueError(
                "X is a nested list that does not form one rectangular array (rows or images "
                f"of different lengths): {exc}"
            ) from exc
    return X


# --------------------------------------------------------------------------- internal
# What the package's own programs (streaming detect, the validation report) need from a
# fitted detector: named functions here, instead of reaches into its private members.


def map_and_score(detector: DISYREDetector, X) -> tuple[np.ndarray, np.ndarray]:
    """``detector.decision_map(X)`` and ``detector.score_samples(X)`` from one pass."""
    return detector._map_and_score(X)


# What calibrate replaces: restored as a whole if it stops half way.
_REFERENCE_STATE = (
    "residual_profile_",
    "symmetry_reference_",
    "location_mean_",
    "location_scale_",
    "offset_",
    "_offset_settings",
)


@contextmanager
def references_kept(*models):
    """Restore each model's references (a combination's: its ``offset_``) if the block
    stops half way, on an error or an interrupt: never half calibrated."""
    kept = []
    for model in models:
        names = _REFERENCE_STATE if isinstance(model, DISYREDetector) else ("offset_",)
        kept.append((model, names, {k: model.__dict__[k] for k in names if k in model.__dict__}))
    try:
        yield
    except BaseException:
        for model, names, state in kept:
            for name in names:
                model.__dict__.pop(name, None)
            model.__dict__.update(state)
        raise


def fitted_layout(detector: DISYREDetector) -> _data.Layout:
    """The kind (``'images'`` or ``'volumes'``) and shape of the samples it was fitted on."""
    check_is_fitted(detector)
    return detector._layout


def checked_samples(detector: DISYREDetector, X) -> np.ndarray:
    """``X`` checked and converted as ``decision_map`` checks it (samples first)."""
    check_is_fitted(detector)
    return detector._validate_input(X, reset=False)[0]


def restorer_of(detector: DISYREDetector) -> Restorer:
    """The inference engine of a fitted detector, with its map post-processing."""
    check_is_fitted(detector)
    return detector._restorer()


def kept_validation_examples(detector: DISYREDetector) -> dict | None:
    """Two synthetic validation images per family kept by ``fit``, or None."""
    return getattr(detector, "_validation_examples", None)
