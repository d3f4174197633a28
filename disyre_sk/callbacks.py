"""Training callbacks: watch, time or snapshot a fit without patching the package.

A callback is an object with any of the methods of :class:`TrainingCallback`; pass a list
of them as ``DISYREDetector(callbacks=[...])``. ``fit`` calls them at the start of
training, after every step, each time the losses reach the host (every few steps, so that
a GPU is not made to wait at every step), after each synthetic validation and at the end
of training. Each call receives the detector being fitted and a :class:`TrainingInfo`.

Callbacks observe; they do not steer. What they do to the network or the detector is
the caller's responsibility. Under ``torchrun`` every process calls its own callbacks;
:attr:`TrainingInfo.rank` tells them apart. Callbacks are not stored in model files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["TrainingCallback", "TrainingInfo"]


@dataclass(frozen=True)
class TrainingInfo:
    """Where training stands when a callback is called.

    Attributes
    ----------
    step : int
        Optimisation steps done so far (resumed runs start above 0).
    n_steps : int
        Steps the run is set to reach.
    losses : list of float
        Training losses of the steps since the previous ``on_log`` call (empty outside
        ``on_log``).
    learning_rate : float
        Learning rate of the last step taken (of the next one before the first).
    network : torch.nn.Module
        The network being trained (not a copy: clone its ``state_dict`` to keep one).
    validation : dict or None
        The latest synthetic validation record (``step``, ``mean_average_precision``,
        per-family ``average_precision`` and ``best_dice``, ``seconds``), or None.
    rank : int
        This process's rank under ``torchrun``; 0 otherwise.
    history : dict
        Losses and learning rates of every step so far.

    Examples
    --------
    >>> import torch
    >>> info = TrainingInfo(step=3, n_steps=10, network=torch.nn.Identity())
    >>> info.step, info.losses, info.rank
    (3, [], 0)
    """

    step: int
    n_steps: int
    network: torch.nn.Module
    losses: list = field(default_factory=list)
    learning_rate: float = float("nan")
    validation: dict | None = None
    rank: int = 0
    history: dict = field(default_factory=dict)


class TrainingCallback:
    """Base class of training callbacks; every method does nothing by default.

    Subclass it and override the events you need; any object with some of these
    methods works too (a missing one is skipped).

    Examples
    --------
    >>> import numpy as np
    >>> from disyre_sk import DISYREDetector
    >>> class LossLog(TrainingCallback):
    ...     def __init__(self):
    ...         self.steps = []
    ...     def on_log(self, detector, info):
    ...         self.steps.append(info.step)
    >>> log = LossLog()
    >>> X = np.random.default_rng(0).random((4, 32, 32))
    >>> det = DISYREDetector(
    ...     patch_size=32, widths=(8, 16), n_steps=4, batch_size=2, stride=32,
    ...     severities=(0.5,), validation_fraction=0.0, callbacks=[log], random_state=0,
    ... ).fit(X)
    >>> log.steps[-1]
    4
    """

    def on_train_begin(self, detector, info: TrainingInfo) -> None:
        """Called once the network, data and optimiser are ready, before the first step."""

    def on_step_end(self, detector, info: TrainingInfo) -> None:
        """Called after every optimisation step, before the next batch is drawn.

        The step's loss may still be on the device (``info.losses`` is empty): on a GPU
        the step has been queued, not necessarily run. A callback that times steps must
        synchronise the device itself (``torch.cuda.synchronize()``), which slows the
        fit it watches.
        """

    def on_log(self, detector, info: TrainingInfo) -> None:
        """Called when the losses of the last few steps reach the host."""

    def on_validation(self, detector, info: TrainingInfo) -> None:
        """Called after each synthetic validation (``validation_fraction > 0``)."""

    def on_train_end(self, detector, info: TrainingInfo) -> None:
        """Called after the last step, before the best weights are restored."""
