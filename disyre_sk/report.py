"""Training reports: what a fitted detector learned, as figures and numbers.

:func:`write_training_report` writes a folder with the training-loss curve, the
synthetic-validation curves, a grid of validation images (their synthetic anomaly, the
restorations at each severity, the map) and a JSON file of the final figures. The
figures are drawn with matplotlib's object-oriented API on the Agg canvas: the report
never touches pyplot's global state or the user's backend.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.utils.validation import check_is_fitted

from . import _data
from ._detector import checked_samples, fitted_layout, kept_validation_examples, restorer_of
from ._engine import monitor
from ._version import __version__
from .metrics import pixel_average_precision

__all__ = ["write_training_report"]

LOSS_FIGURE = "loss.png"
VALIDATION_FIGURE = "validation.png"
EXAMPLES_FIGURE = "examples.png"
SUMMARY_FILE = "report.json"


def write_training_report(
    detector,
    folder: str | os.PathLike,
    *,
    X_val=None,
    n_examples: int = 2,
    random_state: int = 0,
) -> dict:
    """Write a training report of a fitted detector into ``folder``.

    The folder receives:

    - ``loss.png``: the training loss per step (raw and smoothed, log scale) and the
      learning rate;
    - ``validation.png``: synthetic-validation pixel AP and best Dice per anomaly
      family and their mean, against the step, with the step whose weights were kept;
    - ``examples.png``: validation images with their synthetic anomaly (outlined), the
      clean image, the restoration at each severity and the anomaly map, one row per
      image, with the image's pixel AP;
    - ``report.json``: the final figures (training steps, last loss, the validation
      record of the kept step and of the last step, validation time, what validation
      did) and the names of the files written.

    The validation figures measure synthetic anomalies on held-out healthy scans: they
    compare training steps and runs, and do not promise any accuracy on real lesions
    (see the user guide, "Knowing when a model is good").

    Parameters
    ----------
    detector : DISYREDetector
        A fitted detector.
    folder : str or path-like
        Output folder, created if needed; files of the same names are replaced.
    X_val : array-like, default=None
        Healthy images (layout of the training data) to draw the example anomalies in.
        By default the examples are those kept from the detector's own validation set
        (available right after ``fit``; not stored in model files).
    n_examples : int, default=2
        Example images per anomaly family.
    random_state : int, default=0
        Seed of the example anomalies drawn in ``X_val``.

    Returns
    -------
    summary : dict
        The content of ``report.json``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from disyre_sk import DISYREDetector
    >>> from disyre_sk.report import write_training_report
    >>> yy, xx = np.mgrid[:32, :32] - 15.5
    >>> brain = (yy / 13) ** 2 + (xx / 11) ** 2 <= 1
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0.3, 0.7, (10, 32, 32)) * brain
    >>> det = DISYREDetector(patch_size=16, widths=(8, 16), n_steps=4, batch_size=4,
    ...                      severities=(0.5,), stride=16, validation_every=2,
    ...                      validation_fraction=0.2, random_state=0).fit(X)
    >>> summary = write_training_report(det, tempfile.mkdtemp())
    >>> sorted(summary["files"])
    ['examples', 'loss', 'summary', 'validation']
    >>> summary["best_step"] in (2, 4)
    True
    """
    check_is_fitted(detector)
    if not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be a positive int, got {n_examples!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    history = detector.history_
    files = {"loss": LOSS_FIGURE, "validation": VALIDATION_FIGURE}
    _plot_loss(history, folder / LOSS_FIGURE)
    _plot_validation(history, folder / VALIDATION_FIGURE)
    examples, source = _examples(detector, X_val, n_examples, random_state)
    example_ap = None
    if examples is not None:
        example_ap = _plot_examples(detector, examples, folder / EXAMPLES_FIGURE)
        files["examples"] = EXAMPLES_FIGURE
    files["summary"] = SUMMARY_FILE
    summary = _summary(detector, files, source, examples, example_ap)
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, allow_nan=False))
    return summary


# --------------------------------------------------------------------------- figures


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def _smooth(values: np.ndarray) -> np.ndarray:
    window = max(1, len(values) // 50)
    if window == 1:
        return values
    kernel = np.ones(window) / window
    # 'valid' averaging, padded at the start so the curve keeps one value per step.
    smoothed = np.convolve(values, kernel, mode="valid")
    return np.concatenate([np.cumsum(values[: window - 1]) / np.arange(1, window), smoothed])


def _plot_loss(history: dict, path: Path) -> None:
    loss = np.asarray(history.get("loss", []), dtype=float)
    steps = np.arange(1, len(loss) + 1)
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    if loss.size:
        ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="loss per step")
        ax.plot(steps, _smooth(loss), color="tab:blue", lw=1.8, label="smoothed")
        if np.all(loss > 0):
            ax.set_yscale("log")
        lr = np.asarray(history.get("learning_rate", []), dtype=float)
        if lr.size == loss.size:
            twin = ax.twinx()
            twin.plot(steps, lr, color="tab:gray", lw=1, ls=":")
            twin.set_ylabel("learning rate (dotted)", color="tab:gray")
    if history.get("best_step") is not None:
        ax.axvline(history["best_step"], color="tab:red", ls="--", lw=1, label="kept step")
    ax.set_xlabel("step")
    ax.set_ylabel("restoration MSE")
    ax.set_title("Training loss")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _plot_validation(history: dict, path: Path) -> None:
    records = history.get("validation") or []
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    if not records:
        for ax in axes:
            ax.axis("off")
        note = history.get("validation_note") or "no validation in this fit"
        fig.text(0.5, 0.5, f"No synthetic validation:\n{note}", ha="center", va="center", wrap=True)
        _save(fig, path)
        return
    steps = [r["step"] for r in records]
    families = list(records[0]["average_precision"])
    for ax, key, mean_key, label in (
        (axes[0], "average_precision", "mean_average_precision", "pixel AP"),
        (axes[1], "best_dice", "mean_best_dice", "best Dice"),
    ):
        for family in families:
            ax.plot(steps, [r[key][family] for r in records], marker=".", lw=1, label=family)
        ax.plot(steps, [r[mean_key] for r in records], color="black", lw=2, label="mean")
        if history.get("best_step") is not None:
            ax.axvline(history["best_step"], color="tab:red", ls="--", lw=1, label="kept step")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.set_title(f"Synthetic validation: {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _plot_examples(detector, examples: dict, path: Path) -> list[float]:
    restorer = restorer_of(detector)
    restorer.verbose = False
    maps, restored, severities = restorer.restorations(examples["images"], examples["foreground"])
    n, k = len(maps), len(severities)
    fg = examples["foreground"]
    rows = np.flatnonzero(fg.any(axis=(0, 2)))
    cols = np.flatnonzero(fg.any(axis=(0, 1)))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    positive = maps[maps > 0]
    vmax = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    fig = Figure(figsize=(1.7 * (k + 3), 1.8 * n + 0.4))
    axes = np.asarray(fig.subplots(n, k + 3, squeeze=False))
    aps = []
    for i in range(n):
        mask = examples["masks"][i]
        ap = float(pixel_average_precision(maps[i][None], mask[None], fg[i][None]))
        aps.append(ap)
        panels = [
            (examples["images"][i], "gray", 1.0, f"{examples['families'][i]}\nAP {ap:.2f}"),
            (examples["clean"][i], "gray", 1.0, "before"),
            *[(restored[j, i], "gray", 1.0, f"restored s={s:g}") for j, s in enumerate(severities)],
            (maps[i], "inferno", vmax, "map"),
        ]
        for ax, (image, cmap, top, title) in zip(axes[i], panels):
            ax.imshow(image[box], cmap=cmap, vmin=0, vmax=top, origin="lower")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        for ax in (axes[i][0], axes[i][-1]):
            ax.contour(mask[box].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
    fig.suptitle("Synthetic validation anomalies (cyan: exact mask)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return aps


# --------------------------------------------------------------------------- content


def _examples(detector, X_val, n_examples: int, random_state: int):
    """Example validation images: from ``X_val``, else those kept by ``fit``."""
    if X_val is not None:
        images = checked_samples(detector, X_val)
        fg = _data.foreground_of(images, detector.background)
        _data.check_foreground(fg, "X_val")
        scaled = _data.scale_intensities(images, fg, detector.intensity_range_)
        volume = fitted_layout(detector).is_volume
        slices = _data.to_slices(scaled, volume, detector.slice_axis)
        slice_fg = _data.to_slices(fg, volume, detector.slice_axis)
        vset = monitor.make_validation_set(
            slices, slice_fg, np.random.default_rng(random_state), per_family=n_examples
        )
        if vset is None:
            raise ValueError(
                "X_val has no slice with room for the validation anomalies; pass larger "
                "healthy images."
            )
        return vset.examples(n_examples), "X_val"
    kept = kept_validation_examples(detector)
    if kept is None:
        return None, None
    keep = np.concatenate(
        [np.flatnonzero(kept["families"] == f)[:n_examples] for f in np.unique(kept["families"])]
    )
    keep.sort()
    return {k: v[keep] for k, v in kept.items()}, "the validation set of fit"


def _finite(value):
    """JSON-safe: non-finite floats become None, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(detector, files, source, examples, example_ap) -> dict:
    history = detector.history_
    loss = np.asarray(history.get("loss", []), dtype=float)
    records = history.get("validation") or []
    best = history.get("best_step")
    at_best = next((r for r in records if r["step"] == best), None)
    summary = {
        "package_version": __version__,
        "n_steps": int(detector.n_steps),
        "steps_trained": int(loss.size),
        "final_loss": float(loss[-min(100, loss.size) :].mean()) if loss.size else None,
        "final_loss_window": int(min(100, loss.size)),
        "best_step": best,
        "stopped_early": bool(history.get("stopped_early", False)),
        "validation_note": history.get("validation_note"),
        "validation_samples": history.get("validation_samples"),
        "n_validations": len(records),
        "validation_seconds": float(sum(r.get("seconds", 0.0) for r in records)),
        "validation_at_kept_step": at_best,
        "validation_at_last_step": records[-1] if records else None,
        "examples": None,
        "files": files,
    }
    if examples is not None:
        summary["examples"] = {
            "source": source,
            "families": examples["families"].tolist(),
            "average_precision": example_ap,
        }
    return _finite(summary)
