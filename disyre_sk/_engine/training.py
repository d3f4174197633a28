"""Training loop: patches from the foreground, augmentation, corruption, restoration loss.

Everything per step — patch sampling, augmentation, corruption — runs on the training
device from ``torch.Generator`` streams, so a GPU is never left waiting on the CPU and a
CPU run is reproducible bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._data import foreground_boxes, union_box
from .._device import autocast_for
from ..callbacks import TrainingCallback, TrainingInfo
from ..schedule import warmup_cosine_factor
from .checkpoint import StopRequested, stop_on_signals
from .distributed import World, resume_generators

# The base class's no-op: a callback that does not override it is not called per step.
_NO_STEP_END = TrainingCallback.on_step_end
# Losses are copied to the host every this many steps: one sync, not one per step.
_SYNC_EVERY = 25


class SliceBank:
    """Healthy training slices held on the device, with foreground-aware patch sampling.

    Slices without foreground are dropped; the rest are cropped to the union bounding
    box of their foreground and padded to at least one patch. Slices are drawn in
    proportion to their foreground area, and each patch is centred on a random point of
    its slice's foreground bounding box.

    Parameters
    ----------
    slices : ndarray of shape (N, H, W), float32
        Intensities in ``[0, 1]``.
    foreground : ndarray of shape (N, H, W), bool
        Foreground of each slice.
    patch_size : int
        Side of the square patches.
    device : torch.device
        Where the bank lives and patches are cut.
    """

    def __init__(self, slices, foreground, patch_size: int, device: torch.device):
        keep = foreground.reshape(len(foreground), -1).any(axis=1)
        slices, foreground = slices[keep], foreground[keep]
        r0, r1, c0, c1 = union_box(foreground_boxes(foreground))
        slices, foreground = slices[:, r0:r1, c0:c1], foreground[:, r0:r1, c0:c1]
        pad_h = max(0, patch_size - slices.shape[1])
        pad_w = max(0, patch_size - slices.shape[2])
        pads = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        slices = np.pad(slices, pads)
        foreground = np.pad(foreground, pads)
        self.patch_size = patch_size
        self.device = device
        # Half precision halves the device memory of the bank; values in [0, 1] keep
        # about three significant digits, far below the noise of real scans.
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.images = torch.as_tensor(slices).to(device=device, dtype=dtype)
        self.foreground = torch.as_tensor(foreground).to(device)
        self.bbox = torch.as_tensor(
            foreground_boxes(foreground), dtype=torch.float32, device=device
        )
        self.weights = torch.as_tensor(
            foreground.reshape(len(foreground), -1).sum(1), dtype=torch.float32, device=device
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, batch_size: int, generator: torch.Generator):
        """Cut a batch of patches and their foreground masks, ``(B, 1, P, P)`` each."""
        p = self.patch_size
        dev = self.device
        idx = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        box = self.bbox[idx]
        u = torch.rand(batch_size, 2, generator=generator, device=dev)
        cy = box[:, 0] + u[:, 0] * (box[:, 1] - box[:, 0])
        cx = box[:, 2] + u[:, 1] * (box[:, 3] - box[:, 2])
        h, w = self.images.shape[1:]
        y0 = (cy.long() - p // 2).clamp(0, h - p)
        x0 = (cx.long() - p // 2).clamp(0, w - p)
        ar = torch.arange(p, device=dev)
        rr = (y0[:, None] + ar)[:, :, None]
        cc = (x0[:, None] + ar)[:, None, :]
        ii = idx[:, None, None]
        x = self.images[ii, rr, cc].float().unsqueeze(1)
        fg = self.foreground[ii, rr, cc].unsqueeze(1)
        return x, fg


class Trainer:
    """Optimise a restoration network on corrupted healthy patches.

    Loss: mean squared error between the network's restoration of the corrupted patch
    and the clean (augmented) patch, over the whole patch. Optimiser: AdamW with a
    linear warm-up and cosine decay, gradient-norm clipping, bf16 autocast when asked.

    Parameters
    ----------
    network : nn.Module
        Called as ``network(x, severity)``; on ``device``.
    bank : SliceBank
        Source of healthy patches.
    corruption : callable
        ``corruption(x, generator, foreground=fg)`` returning ``(image, mask, severity)``.
    augmentation : callable or None
        ``augmentation(x, fg, generator)`` returning ``(x, fg)``.
    n_steps, batch_size, learning_rate, weight_decay, warmup_steps, grad_clip
        Optimisation settings.
    device : torch.device
        Training device.
    precision : {'fp32', 'bf16'}
        Autocast setting of the forward pass.
    seed : int
        Seed of the device generator that drives patches, augmentation and corruption.
    world : World, optional
        The processes training together under torchrun (see :mod:`.distributed`): each
        draws ``batch_size / world.size`` patches from its own seed, gradients are
        averaged. ``None``: this process alone.
    monitor : object or None, default=None
        Optional hook, e.g. :class:`~.monitor.Validator`: after each step,
        ``monitor.due(step, n_steps)`` says whether to call ``monitor(trainer)`` (after
        the loss check); ``monitor.stop`` ends training early; ``monitor.progress()``
        adds progress-bar fields; ``monitor.state_dict()`` travels in checkpoints.
    callbacks : sequence, default=()
        Objects with any of the methods of :class:`disyre_sk.callbacks.TrainingCallback`,
        called as ``callback.on_<event>(owner, info)``.
    owner : object, optional
        What the callbacks receive as their first argument (the detector being fitted).
    """

    def __init__(
        self,
        network: nn.Module,
        bank: SliceBank,
        corruption,
        augmentation,
        *,
        n_steps: int,
        batch_size: int,
        learning_rate: float,
        weight_decay: float,
        warmup_steps: int,
        grad_clip: float | None,
        device: torch.device,
        precision: str,
        seed: int,
        world: World | None = None,
        betas=(0.95, 0.999),
        monitor=None,
        callbacks=(),
        owner=None,
    ):
        self.network = network
        self.bank = bank
        self.corruption = corruption
        self.augmentation = augmentation
        self.n_steps = n_steps
        self.world = world if world is not None else World(device=device)
        self.batch_size = self.world.local_batch(batch_size)
        self.model = self.world.wrap(network)  # DDP in a process group, else network
        self.seed = seed
        self.grad_clip = grad_clip
        self.device = device
        self.precision = precision
        self.generator = torch.Generator(device=device).manual_seed(self.world.rank_seed(seed))
        # One fused kernel for the whole update, on the CPU too, where torch's default is
        # a loop per tensor: a few milliseconds of every step of a small network
        # (benchmarks/results/optimizer_step_cpu.md).
        fused = device.type in ("cuda", "cpu")
        self._foreach = fused
        self.optimizer = torch.optim.AdamW(
            network.parameters(),
            lr=learning_rate,
            betas=betas,
            weight_decay=weight_decay,
            fused=fused or None,
        )
        # Short runs still get a proper warm-up and decay: the warm-up never takes more
        # than a tenth of the run.
        self.warmup_steps = min(warmup_steps, n_steps // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: warmup_cosine_factor(s, self.n_steps, self.warmup_steps),
        )
        self.step = 0
        self.history: dict[str, list[float]] = {"loss": [], "learning_rate": []}
        self.monitor = monitor
        self.callbacks = tuple(callbacks)
        self.owner = owner

    def _notify(self, event: str, losses=()) -> None:
        if not self.callbacks:
            return
        records = getattr(self.monitor, "records", None)
        info = TrainingInfo(
            step=self.step,
            n_steps=self.n_steps,
            network=self.network,
            losses=list(losses),
            learning_rate=float(
                self.history["learning_rate"][-1]
                if self.history["learning_rate"]
                else self.optimizer.param_groups[0]["lr"]
            ),
            validation=dict(records[-1]) if records else None,
            rank=self.world.rank,
            history=self.history,
        )
        for callback in self.callbacks:
            method = getattr(callback, f"on_{event}", None)
            if method is not None:
                method(self.owner, info)

    def make_batch(self):
        """Healthy patches, their corrupted versions and severities, all on the device."""
        g = self.generator
        x, fg = self.bank.sample(self.batch_size, g)
        if self.augmentation is not None:
            x, fg = self.augmentation(x, fg, g)
        corrupted = self.corruption(x, g, foreground=fg)
        return x, corrupted.image, corrupted.severity

    def train_step(self, clean, corrupted, severity) -> torch.Tensor:
        """One optimisation step; returns the loss as a detached device scalar."""
        self.network.train()
        with autocast_for(self.device, self.precision):
            restored = self.model(corrupted, severity)
        loss = F.mse_loss(restored.float(), clean)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(
                self.network.parameters(), self.grad_clip, foreach=self._foreach or None
            )
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly where it stopped.

        With several processes this is a collective: every rank's generator state is
        gathered, so that rank 0's checkpoint resumes every rank's stream.
        """
        state = {
            "step": self.step,
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "history": {k: list(v) for k, v in self.history.items()},
            "monitor": None if self.monitor is None else self.monitor.state_dict(),
        }
        if self.world.is_distributed:
            state["world_size"] = self.world.size
            state["rank_generators"] = self.world.all_gather(state["generator"])
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        resume_generators(state, self.world, self.generator, self.seed)
        self.step = int(state["step"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        if self.monitor is not None and state.get("monitor") is not None:
            self.monitor.load_state_dict(state["monitor"])

    def run(self, verbose: bool = False, checkpointer=None):
        """Train until ``n_steps`` (or the monitor's stop); returns losses and learning rates.

        With a ``checkpointer``, the state is saved every ``checkpointer.every`` steps,
        at the end, and when Ctrl-C or SIGTERM arrives (then :class:`StopRequested` is
        raised). A non-finite loss raises ``FloatingPointError`` before anything is
        saved, so the last checkpoint stays a good one.
        """
        pending: list[torch.Tensor] = []
        lrs: list[float] = []
        stop: dict = {}
        halt = False
        bar = tqdm(
            total=self.n_steps,
            initial=self.step,
            disable=not verbose or not self.world.is_main,
            desc="DISYRE training",
            unit="step",
            dynamic_ncols=True,
        )
        with bar, stop_on_signals(stop):
            # Early stopping is agreed by every process (a collective) at each validation.
            monitor_stop = self._monitor_stop()
            self._notify("train_begin")
            # Notified only when a callback overrides the event: most fits have no
            # per-step observer, and each notification builds a TrainingInfo.
            per_step = any(
                getattr(type(c), "on_step_end", _NO_STEP_END) is not _NO_STEP_END
                for c in self.callbacks
            )
            while self.step < self.n_steps and not halt and not monitor_stop:
                lrs.append(self.optimizer.param_groups[0]["lr"])
                pending.append(self.train_step(*self.make_batch()))
                self.step += 1
                bar.update(1)
                if per_step:
                    self._notify("step_end")
                # `due` depends on the step alone, so every process agrees on `synced`.
                due = self.monitor is not None and self.monitor.due(self.step, self.n_steps)
                synced = len(pending) == _SYNC_EVERY or self.step == self.n_steps or due
                if synced:
                    self._flush(pending, lrs, bar)
                    if due:
                        # Every process validates its own (identical) weights, with no
                        # collective inside, so none waits on another.
                        self.monitor(self)
                        self._show(bar)
                        self._notify("validation")
                        monitor_stop = self.world.any(self._monitor_stop())
                    if checkpointer is not None:
                        checkpointer.maybe_save(self)
                halt = self.world.should_stop(stop, synced)
            if pending:
                self._flush(pending, lrs, bar)
            if checkpointer is not None and checkpointer.last_saved != self.step:
                checkpointer.save(self)
        if halt:
            where = f"; checkpoint saved in {checkpointer.folder}" if checkpointer else ""
            how = f"signal {stop['signal']}" if stop else "a signal to another process"
            raise StopRequested(
                f"training stopped by {how} at step {self.step}{where}. "
                "Call fit again with the same checkpoint_dir to resume."
            )
        self.network.eval()
        self._notify("train_end")
        return self.history

    def _flush(self, pending, lrs, bar):
        # Under torchrun: the loss of the global batch, the mean of the ranks' losses.
        losses = self.world.mean(torch.stack(pending).float()).cpu().numpy()
        if not np.all(np.isfinite(losses)):
            bad = self.step - len(losses) + int(np.flatnonzero(~np.isfinite(losses))[0])
            raise FloatingPointError(
                f"the training loss became non-finite at step {bad}. Lower learning_rate, "
                "check the training scans for extreme values, or use precision='fp32'."
            )
        values = losses.tolist()
        self.history["loss"].extend(values)
        self.history["learning_rate"].extend(lrs)
        self._show(bar)
        self._notify("log", values)
        pending.clear()
        lrs.clear()

    def _show(self, bar):
        postfix = {"loss": f"{np.mean(self.history['loss'][-_SYNC_EVERY:]):.4g}"}
        if self.monitor is not None:
            postfix.update(self.monitor.progress())
        bar.set_postfix(postfix)

    def _monitor_stop(self) -> bool:
        return self.monitor is not None and bool(self.monitor.stop)
