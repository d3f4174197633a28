"""One rank of the data-parallel tests, started by torchrun from tests/test_distributed.py.

Usage: torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py FOLDER

FOLDER holds ``X.npy`` (training images), ``X_test.npy`` and ``params.json``. Each rank
writes ``rank<r>.json`` and ``rank<r>_*.pt`` there; rank 0 also writes ``model.disyre``.
"""

import json
import os
import pickle
import signal
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

import disyre_sk._engine.training as training  # noqa: E402
from disyre_sk import DISYREDetector  # noqa: E402
from disyre_sk._engine.checkpoint import StopRequested  # noqa: E402
from disyre_sk._engine.distributed import join_world  # noqa: E402
from disyre_sk._engine.reference import location_reference, reference_sums  # noqa: E402
from disyre_sk.corruption import get_corruption  # noqa: E402
from disyre_sk.nn import UNet  # noqa: E402

# Ranks agree on stopping at loss syncs; sync often so that a stop lands mid-run.
training._SYNC_EVERY = 10
# Rank 0 alone gets SIGTERM before this step: both ranks must stop at step 20.
SIGNAL_AT = 12


def weights(det):
    return {k: v.detach().clone() for k, v in det.network_.state_dict().items()}


def one_step_equivalence(world, X):
    """One DDP step on two half batches against one plain step on the whole batch.

    Returns the largest gradient difference relative to the largest gradient, and the
    batch size of each rank.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # Not residual: every weight gets a gradient in the first step.
        net = UNet(widths=(8, 16), attention_levels=(), residual=False)
    plain = pickle.loads(pickle.dumps(net))
    slices = X.astype(np.float32)
    bank = training.SliceBank(slices, slices > 0, 16, torch.device("cpu"))
    settings = dict(
        n_steps=1,
        batch_size=8,
        learning_rate=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        grad_clip=1.0,
        device=torch.device("cpu"),
        precision="fp32",
        seed=0,
    )
    corruption = get_corruption("fpi")
    ddp = training.Trainer(net, bank, corruption, None, world=world, **settings)
    clean, corrupted, severity = ddp.make_batch()
    parts = world.all_gather((clean, corrupted, severity))
    ddp.train_step(clean, corrupted, severity)
    single = training.Trainer(plain, bank, corruption, None, **settings)
    single.train_step(*(torch.cat([p[k] for p in parts]) for k in range(3)))
    # Compare the gradients each step applied (Adam's first step is about lr * sign(g),
    # which turns rounding noise on near-zero gradients into lr-sized differences).
    pairs = list(zip(net.parameters(), plain.parameters()))
    scale = max(float(b.grad.abs().max()) for _, b in pairs)
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in pairs)
    return diff / scale, [len(p[0]) for p in parts]


def main(folder: Path) -> None:
    rank = int(os.environ["RANK"])
    X = np.load(folder / "X.npy")
    X_test = np.load(folder / "X_test.npy")
    params = json.loads((folder / "params.json").read_text())
    out: dict = {"rank": rank}

    try:
        DISYREDetector(**{**params, "batch_size": params["batch_size"] - 1}).fit(X)
    except ValueError as exc:
        out["batch_error"] = str(exc)

    det = DISYREDetector(**params).fit(X)
    out["network_type"] = type(det.network_).__name__
    out["loss"] = det.history_["loss"]
    out["offset"] = det.offset_
    maps = det.decision_map(X_test)
    again = pickle.loads(pickle.dumps(det))
    out["pickle_same_maps"] = bool(np.array_equal(again.decision_map(X_test), maps))
    torch.save(weights(det), folder / f"rank{rank}_weights.pt")
    np.save(folder / f"rank{rank}_maps.npy", maps)
    if rank == 0:
        det.save(folder / "model.disyre")

    world = join_world(torch.device("cpu"))
    out["world"] = [world.rank, world.size]
    out["one_step_max_diff"], out["one_step_batches"] = one_step_equivalence(world, X)

    # Interrupted (SIGTERM to rank 0 only), then resumed from the checkpoint.
    ckpt = dict(params, checkpoint_dir=str(folder / "ckpt"), checkpoint_every=10)
    original = training.Trainer.train_step

    def train_step(self, *batch):
        if rank == 0 and self.step == SIGNAL_AT:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *batch)

    training.Trainer.train_step = train_step
    try:
        DISYREDetector(**ckpt).fit(X)
        out["stopped"] = None
    except StopRequested as exc:
        out["stopped"] = str(exc)
    finally:
        training.Trainer.train_step = original
    resumed = DISYREDetector(**ckpt).fit(X)
    torch.save(weights(resumed), folder / f"rank{rank}_resumed.pt")
    out["resumed_loss"] = resumed.history_["loss"]

    # Synthetic validation on every rank, with early stopping after one validation
    # without improvement: the ranks must agree on when to stop and never wait forever.
    validated = DISYREDetector(
        **params,
        validation_fraction=0.25,
        validation_every=10,
        early_stopping=True,
        n_iter_no_change=1,
    ).fit(X)
    h = validated.history_
    out["validation"] = {
        "n_records": len(h["validation"]),
        "best_step": h["best_step"],
        "stopped_early": h["stopped_early"],
        "n_loss": len(h["loss"]),
    }
    torch.save(weights(validated), folder / f"rank{rank}_validated.pt")

    # Location standardisation: each rank maps its shard of the training scans; the
    # reference must be the one all the scans give, and offset_ the scores' percentile.
    located = DISYREDetector(**dict(params, n_steps=10, map_standardization="location")).fit(X)
    located.set_params(map_standardization=None)
    raw = located.decision_map(X)
    located.set_params(map_standardization="location")
    mean, _ = location_reference(reference_sums(raw, X != 0))
    out["location"] = {
        "max_rel_diff": float(np.abs(mean - located.location_mean_).max() / np.abs(mean).max()),
        "offset": located.offset_,
        "score_percentile": float(np.percentile(located.score_samples(X), 1.0)),
    }
    np.save(folder / f"rank{rank}_location_mean.npy", located.location_mean_)

    # Held-out references: every rank holds out the same scans, trains on the rest, and
    # pools the held-out scans' maps, which alone make the reference and offset_.
    held = DISYREDetector(
        **dict(params, n_steps=10, map_standardization="location", reference_fraction=0.25)
    ).fit(X)
    ref = held.history_["reference_samples"]
    held.set_params(map_standardization=None)
    raw = held.decision_map(X[ref])
    held.set_params(map_standardization="location")
    mean, _ = location_reference(reference_sums(raw, X[ref] != 0))
    out["reference"] = {
        "samples": ref,
        "max_rel_diff": float(np.abs(mean - held.location_mean_).max() / np.abs(mean).max()),
        "offset": held.offset_,
        "score_percentile": float(np.percentile(held.score_samples(X[ref]), 1.0)),
    }
    # The symmetry prior: every rank learns the healthy asymmetry from all the scans (the
    # same quantiles), and offset_ is the percentile of the prior-weighted scores.
    sym = DISYREDetector(
        **dict(params, n_steps=10, map_standardization="location", map_symmetry=0.5)
    ).fit(X)
    out["symmetry"] = {
        "reference": list(sym.symmetry_reference_),
        "offset": sym.offset_,
        "score_percentile": float(np.percentile(sym.score_samples(X), 1.0)),
    }
    (folder / f"rank{rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
