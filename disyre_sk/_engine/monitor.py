"""The training monitor: synthetic validation during fit, on held-out healthy scans.

Unsupervised training has no lesion labels to validate on. Healthy scans that training
never sees (``validation_fraction`` of the samples, or ``X_val``) receive anomalies from
families outside the training corruption (:mod:`.anomaly_families`), with exact masks,
and the network's maps are scored on them every ``validation_every`` steps.

The :class:`Validator` is the training loop's monitor (see ``Trainer.monitor``): it maps
a fixed validation set with the detector's own :class:`~.inference.Restorer`, records
pixel AP and best Dice per family with :mod:`disyre_sk.metrics`, keeps a CPU copy of the
best step's weights, and can ask the loop to stop early. Nothing here imports
:mod:`disyre_sk.corruption`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import _data
from ..metrics import pixel_metrics
from .anomaly_families import (
    _MARGIN,
    FAMILIES,
    MIN_RADIUS,
    ValidationSet,
    make_validation_set,
    usable_slices,
)
from .checkpoint import fingerprint


def score_maps(maps: np.ndarray, vset: ValidationSet) -> dict:
    """Pooled pixel AP and best Dice of each family, and their means over families."""
    ap, dice = {}, {}
    for family in dict.fromkeys(vset.families.tolist()):
        sel = vset.families == family
        m = pixel_metrics(maps[sel], vset.masks[sel], vset.foreground[sel])
        ap[family] = float(m["average_precision"])
        dice[family] = float(m["best_dice"])
    return {
        "average_precision": ap,
        "best_dice": dice,
        "mean_average_precision": float(np.mean(list(ap.values()))),
        "mean_best_dice": float(np.mean(list(dice.values()))),
    }


# --------------------------------------------------------------------------- monitor


class Validator:
    """Score a fixed validation set during training; keep the best step's weights.

    The training loop calls :meth:`due` after every step and, when it is due, the
    validator itself; :attr:`stop` asks the loop to stop; :meth:`state_dict` travels in
    training checkpoints, so a resumed run keeps its validation history and best
    weights.

    Parameters
    ----------
    vset : ValidationSet
        The images, masks and families to score.
    restorer : Restorer
        Maps the images with the network being trained (the detector's settings).
    every : int
        Validate every this many steps, and at the last step.
    early_stopping : bool
        Stop when ``n_iter_no_change`` validations in a row did not beat the best.
    n_iter_no_change : int
        Patience, in validations.
    tol : float, default=0.0
        Noise margin of the score: the kept step is the latest whose score is within
        ``tol`` of the best so far, and only a gain of more than ``tol`` resets the
        patience.
    """

    def __init__(self, vset, restorer, *, every, early_stopping, n_iter_no_change, tol=0.0):
        self.vset = vset
        self.restorer = restorer
        self.every = int(every)
        self.early_stopping = bool(early_stopping)
        self.n_iter_no_change = int(n_iter_no_change)
        self.tol = float(tol)
        self.records: list[dict] = []
        self.best_step: int | None = None
        self.best_score = -math.inf
        self.best_state: dict | None = None
        self.since_best = 0
        self.stop = False

    def due(self, step: int, n_steps: int) -> bool:
        """Whether ``step`` (just completed) is a validation step."""
        return step % self.every == 0 or step == n_steps

    def evaluate(self) -> dict:
        """Scores of the network as it is now (no bookkeeping)."""
        start = time.perf_counter()
        maps = self.restorer.maps(self.vset.images, self.vset.foreground)
        record = score_maps(maps, self.vset)
        record["seconds"] = time.perf_counter() - start
        return record

    def __call__(self, trainer) -> None:
        """Validate at ``trainer.step``; update the best weights and the stop flag."""
        record = {"step": int(trainer.step), **self.evaluate()}
        self.records.append(record)
        score = record["mean_average_precision"]
        # Patience: only a gain beyond the noise margin counts as progress.
        improved = score > self.best_score + self.tol
        self.since_best = 0 if improved else self.since_best + 1
        self.best_score = max(self.best_score, score)
        # Within the margin of the best, the later (more trained) step wins: a flat,
        # noisy curve must not send the model back to early training.
        if score >= self.best_score - self.tol:
            self.best_step = record["step"]
            weights = self.restorer.network.state_dict()
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
        if self.early_stopping and self.since_best >= self.n_iter_no_change:
            self.stop = True

    def progress(self) -> dict[str, str]:
        """Progress-bar fields: the latest mean validation AP."""
        if not self.records:
            return {}
        return {"val_AP": f"{self.records[-1]['mean_average_precision']:.3f}"}

    def state_dict(self) -> dict:
        """History, best weights and patience counter, for checkpoints."""
        return {
            "records": [dict(r) for r in self.records],
            "best_step": self.best_step,
            "best_score": self.best_score,
            "best_state": self.best_state,
            "since_best": self.since_best,
            "stop": self.stop,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.records = [dict(r) for r in state["records"]]
        self.best_step = state["best_step"]
        self.best_score = float(state["best_score"])
        self.best_state = state["best_state"]
        self.since_best = int(state["since_best"])
        self.stop = bool(state["stop"])

    def restore_best(self) -> None:
        """Load the best step's weights into the network."""
        if self.best_state is not None:
            self.restorer.network.load_state_dict(self.best_state)


# --------------------------------------------------------------------------- the split


@dataclass
class Plan:
    """What validation does in one fit: which samples it holds out, or why it is off."""

    note: str
    train_index: np.ndarray | None = None  # samples used for training; None = all
    val_images: np.ndarray | None = None  # raw validation samples (n_val, *image_shape)
    val_foreground: np.ndarray | None = None
    held_out: list[int] | None = None  # indices of X held out, for history_
    seed: int = 0
    digest: np.ndarray | None = None  # X_val, part of the checkpoint fingerprint

    @property
    def active(self) -> bool:
        return self.val_images is not None

    def training_data(self, images, foreground):
        """The part of ``X`` that training uses."""
        if self.train_index is None:
            return images, foreground
        return images[self.train_index], foreground[self.train_index]


def plan_validation(detector, layout, images, foreground, val_images, seed: int) -> Plan:
    """Decide how ``detector.fit`` validates, from its parameters and data.

    ``layout`` is the training data's :class:`~disyre_sk._data.Layout`; ``val_images``
    the explicit validation samples (``X_val``) already checked by the detector, or None.

    Explicit ``X_val`` always validates (at least at the last step). A split by
    ``validation_fraction`` holds samples out only when a validation is scheduled
    (``n_steps >= validation_every``), ``floor(fraction * n)`` is at least one sample
    with at least one left for training, and a held-out slice is large enough for the
    anomalies; otherwise training uses every sample and the note says why.
    """
    every, fraction = detector.validation_every, detector.validation_fraction or 0.0

    def usable(fg):
        return usable_slices(_data.to_slices(fg, layout.is_volume, detector.slice_axis))

    if val_images is not None:
        val_fg = _data.foreground_of(val_images, detector.background)
        _data.check_foreground(val_fg, "X_val")
        if not usable(val_fg).any():
            raise ValueError(
                "X_val has no slice with room for the validation anomalies (a foreground "
                f"disc of radius {MIN_RADIUS + _MARGIN:g} pixels); pass larger healthy "
                "images, or X_val=None."
            )
        note = (
            f"validating on X_val ({len(val_images)} samples) every {every} steps and at "
            "the last step"
        )
        return Plan(note, None, val_images, val_fg, None, seed, val_images)
    n = len(images)
    n_val = math.floor(fraction * n + 1e-9)
    if fraction == 0:
        return Plan("off: validation_fraction=0 and no X_val")
    if detector.n_steps < every:
        return Plan(
            f"skipped: n_steps={detector.n_steps} < validation_every={every}, so no "
            "validation is scheduled and no sample is held out"
        )
    if n_val < 1 or n - n_val < 1:
        return Plan(
            f"skipped: validation_fraction={fraction:g} of {n} samples leaves "
            f"{n_val} for validation and {n - n_val} for training; every sample is used "
            "for training (pass more samples, a larger fraction, or X_val)"
        )
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(n, size=n_val, replace=False))
    if not usable(foreground[held]).any():
        return Plan(
            "skipped: the held-out samples have no slice with room for the validation "
            f"anomalies (a foreground disc of radius {MIN_RADIUS + _MARGIN:g} pixels); "
            "every sample is used for training"
        )
    train = np.setdiff1d(np.arange(n), held)
    note = (
        f"validating on {n_val} of {n} samples held out by validation_fraction="
        f"{fraction:g} (never trained on) every {every} steps and at the last step"
    )
    return Plan(note, train, images[held], foreground[held], held.tolist(), seed)


def make_validator(detector, plan: Plan, restorer, *, is_volume: bool) -> Validator | None:
    """The training monitor of an active plan; ``None`` when validation is off.

    ``early_stopping=True`` (not ``'auto'``) needs validation: without it, this raises.
    """
    validator = _build_validator(detector, plan, restorer, is_volume)
    requested = detector.early_stopping
    if validator is None and not isinstance(requested, str) and requested:
        raise ValueError(
            f"early_stopping=True needs validation, but validation is {plan.note}. Pass "
            "X_val, or use early_stopping='auto' to stop early only when validation runs."
        )
    return validator


def _build_validator(detector, plan: Plan, restorer, is_volume: bool) -> Validator | None:
    if not plan.active:
        return None
    scaled = _data.scale_intensities(
        plan.val_images, plan.val_foreground, detector.intensity_range_
    )
    axis, volume = detector.slice_axis, is_volume
    slices = _data.to_slices(scaled, volume, axis)
    fg = _data.to_slices(plan.val_foreground, volume, axis)
    # Its own generator: the anomalies never draw from the training stream.
    vset = make_validation_set(slices, fg, np.random.default_rng([plan.seed, 1]))
    if vset is None:
        plan.note = (
            "skipped: no validation anomaly could be placed in the held-out slices "
            f"(samples {plan.held_out} were held out all the same)"
        )
        return None
    restorer.verbose = False
    present = [f for f in FAMILIES if f in set(vset.families.tolist())]
    plan.note += f"; {len(vset)} images ({', '.join(present)})"
    missing = [f for f in FAMILIES if f not in present]
    if missing:
        plan.note += f"; left out, as no slice had the room or contrast: {', '.join(missing)}"
    return Validator(
        vset,
        restorer,
        every=detector.validation_every,
        early_stopping=bool(detector.early_stopping),  # True or 'auto': validation runs
        n_iter_no_change=detector.n_iter_no_change,
        tol=detector.validation_tol,
    )


def history_entries(plan: Plan, validator: Validator | None, verbose: bool) -> dict:
    """``history_`` entries of validation; restores the best weights when it ran."""
    if validator is None:
        return {
            "validation": [],
            "best_step": None,
            "stopped_early": False,
            "validation_note": plan.note,
            "validation_samples": None,
        }
    validator.restore_best()
    if verbose and validator.best_step is not None:
        kept = next(r for r in validator.records if r["step"] == validator.best_step)
        print(
            f"Kept the weights of step {validator.best_step} (mean synthetic validation AP "
            f"{kept['mean_average_precision']:.3f}, best {validator.best_score:.3f})"
            + (", stopped early" if validator.stop else "")
        )
    return {
        "validation": [dict(r) for r in validator.records],
        "best_step": validator.best_step,
        "stopped_early": validator.stop,
        "validation_note": plan.note,
        "validation_samples": plan.held_out,
    }


def validation_seed(train_seed: int) -> int:
    """Seed of the validation split and anomalies, derived without touching other draws."""
    return int(np.random.SeedSequence([train_seed, 0x7A11D]).generate_state(1)[0])


def run_fingerprint(training_run: str, plan: Plan) -> str:
    """Checkpoint identity: the training run's, and the ``X_val`` data when given."""
    if plan.digest is None:
        return training_run
    return fingerprint({"training_run": training_run}, plan.digest)
