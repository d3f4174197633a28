"""Data-parallel training: two gloo processes on the CPU, and the pieces one at a time."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from toy import add_discs, smooth_brains

from disyre_sk import DISYREDetector
from disyre_sk._engine.distributed import (
    World,
    join_world,
    launch_from_env,
    launch_rank,
    rank_seed,
    resume_generators,
)

TESTS = Path(__file__).resolve().parent
# Tiny and quick, yet it learns the disc task in 40 steps (pixel AP 0.35-0.48 against a
# chance level of 0.11, depending on the seed).
PARAMS = dict(
    patch_size=32,
    widths=(8, 16),
    n_steps=40,
    batch_size=8,
    learning_rate=1e-3,
    stride=32,
    severities=(0.25, 0.5),
    augment=False,
    random_state=0,
    device="cpu",
)
TIMEOUT_S = 240  # far above the ~20-40 s it takes on two busy cores: only a hang hits it


# ---------------------------------------------------------------- units, one process
def test_launch_from_env():
    assert launch_from_env({}) == (0, 1, 0)
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert launch_from_env(env) == (3, 4, 1)
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}) == (0, 1, 0)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "0"}, "RANK is set but WORLD_SIZE is not"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
        ({"RANK": "a", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK is 'a', not an integer"),
        ({"RANK": "1", "WORLD_SIZE": "2"}, "LOCAL_RANK is not set"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "0 <= RANK < WORLD_SIZE"),
    ],
)
def test_launch_from_env_errors(env, message):
    with pytest.raises(ValueError, match=message) as info:
        launch_from_env(env)
    assert "torchrun" in str(info.value)


def test_rank_seed():
    assert rank_seed(7, 0, 1) == 7  # one process: the seed is unchanged
    seeds = [rank_seed(7, r, 8) for r in range(8)]
    assert len(set(seeds)) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [rank_seed(7, r, 8) for r in range(8)]  # the same on every rerun
    assert rank_seed(7, 1, 2) == rank_seed(7, 1, 4)  # a rank's stream: seed and rank only
    assert rank_seed(8, 1, 2) != rank_seed(7, 1, 2)
    torch.Generator().manual_seed(max(seeds))  # a valid torch seed


def test_single_process_world_is_the_identity():
    world = World()
    assert not world.is_distributed and world.is_main and world.device == torch.device("cpu")
    net = torch.nn.Linear(2, 2)
    assert world.wrap(net) is net
    assert world.local_batch(7) == 7 and world.rank_seed(11) == 11
    t = torch.arange(3.0)
    assert world.mean(t) is t and world.agree({"a": 1}) == {"a": 1}
    assert world.all_gather(5) == [5] and world.any(True) and not world.any(False)
    assert world.should_stop({"signal": 15}, synced=False) and not world.should_stop({}, True)
    world.barrier()
    world.check_same(1, "x")
    world.check_same_data(np.zeros((2, 3)))
    assert world.gather_shards(lambda part: np.arange(10)[part], 10).tolist() == list(range(10))


def test_plain_process_joins_no_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = join_world(torch.device("cpu"))
    assert world.size == 1 and not torch.distributed.is_initialized()
    assert launch_rank() == 0
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert join_world(torch.device("cpu")).size == 1 and not torch.distributed.is_initialized()


def test_missing_rendezvous_is_explained(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set"):
        DISYREDetector(**PARAMS).fit(smooth_brains(4, 16))
    assert not torch.distributed.is_initialized()


def test_global_batch_must_split_evenly():
    world = World(rank=1, size=4)
    assert world.local_batch(96) == 24
    with pytest.raises(ValueError, match=r"multiple of 4 \(for example 92\)"):
        world.local_batch(94)


def test_resume_generators_with_other_world_size_warns():
    g = torch.Generator().manual_seed(1)
    saved = {"generator": g.get_state(), "step": 10}
    fresh = torch.Generator()
    resume_generators(saved, World(), fresh, seed=3)  # same size (1): exact
    assert torch.equal(fresh.get_state(), g.get_state())
    with pytest.warns(RuntimeWarning, match="written by 1 process.* resumed by 2"):
        resume_generators(saved, World(rank=0, size=2), fresh, seed=3)
    assert not torch.equal(fresh.get_state(), g.get_state())


# ---------------------------------------------------------------- two gloo processes
def _torchrun(folder: Path) -> subprocess.CompletedProcess:
    # --standalone: the launcher binds a free port itself, so parallel runs never collide.
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(TESTS / "ddp_worker.py"),
        str(folder),
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]),
        OMP_NUM_THREADS="1",
    )
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the launcher and both ranks can be killed as one group
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the two-process run did not finish in {TIMEOUT_S} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


@pytest.fixture(scope="module")
def task():
    healthy = smooth_brains(24, size=32, seed=0)
    lesioned, masks = add_discs(smooth_brains(8, size=32, seed=20), seed=3)
    return healthy, lesioned, masks


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, task):
    folder = tmp_path_factory.mktemp("ddp")
    healthy, lesioned, _ = task
    np.save(folder / "X.npy", healthy)
    np.save(folder / "X_test.npy", lesioned)
    (folder / "params.json").write_text(json.dumps(PARAMS))
    run = _torchrun(folder)
    assert run.returncode == 0, run.stdout[-4000:]
    results = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]
    return folder, results


@pytest.fixture(scope="module")
def one_rank(task):
    return DISYREDetector(**PARAMS).fit(task[0])


def _load(path):
    return torch.load(path, weights_only=True)


def test_ranks_end_identical(two_ranks):
    folder, (r0, r1) = two_ranks
    assert r0["world"] == [0, 2] and r1["world"] == [1, 2]
    w0, w1 = _load(folder / "rank0_weights.pt"), _load(folder / "rank1_weights.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert r0["loss"] == r1["loss"] and len(r0["loss"]) == PARAMS["n_steps"]
    assert r0["offset"] == r1["offset"]
    np.testing.assert_array_equal(
        np.load(folder / "rank0_maps.npy"), np.load(folder / "rank1_maps.npy")
    )


def test_gradients_are_averaged_over_the_global_batch(two_ranks):
    _, (r0, r1) = two_ranks
    # Each rank drew half of the global batch of 8 ...
    assert r0["one_step_batches"] == [4, 4]
    # ... and a DDP step on the halves applies the gradient of one plain step on the whole
    # batch (the mean of the two halves' gradients), up to float rounding.
    assert r0["one_step_max_diff"] < 1e-5 and r1["one_step_max_diff"] < 1e-5


def test_batch_not_divisible_is_refused_on_every_rank(two_ranks):
    _, results = two_ranks
    for r in results:
        assert "batch_size=7 is the global batch" in r["batch_error"]
        assert "multiple of 2" in r["batch_error"]


def test_trained_detector_is_a_plain_detector(two_ranks, task):
    folder, (r0, _) = two_ranks
    assert r0["network_type"] == "UNet" and r0["pickle_same_maps"]
    loaded = DISYREDetector.load(folder / "model.disyre", device="cpu")
    assert type(loaded.network_).__name__ == "UNet"
    saved = _load(folder / "rank0_weights.pt")
    for k, v in loaded.network_.state_dict().items():
        assert torch.equal(v, saved[k]), k
    np.testing.assert_allclose(
        loaded.decision_map(task[1]), np.load(folder / "rank0_maps.npy"), rtol=0, atol=1e-6
    )
    assert loaded.offset_ == r0["offset"]


def test_resume_across_ranks_is_exact(two_ranks):
    folder, results = two_ranks
    # Rank 0 alone got SIGTERM at step 12; both stopped together at the next loss sync
    # (step 20), where a checkpoint was written ...
    assert "signal 15 at step 20" in results[0]["stopped"]
    assert "another process at step 20" in results[1]["stopped"]
    # ... and the resumed run ends exactly where the uninterrupted one did.
    for rank, r in enumerate(results):
        full, resumed = (
            _load(folder / f"rank{rank}_weights.pt"),
            _load(folder / f"rank{rank}_resumed.pt"),
        )
        for k in full:
            assert torch.equal(full[k], resumed[k]), (rank, k)
        assert r["resumed_loss"] == r["loss"]


def test_two_ranks_match_one_rank_statistically(two_ranks, one_rank, task):
    folder, (r0, _) = two_ranks
    # Same global batch, other random patches: the loss curves agree within noise. The
    # tolerance is four standard errors of the difference of the two means, from each
    # curve's own step-to-step spread over the last half of training.
    last = PARAMS["n_steps"] // 2
    a, b = np.array(r0["loss"][-last:]), np.array(one_rank.history_["loss"][-last:])
    se = np.sqrt(a.var(ddof=1) / last + b.var(ddof=1) / last)
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    # Both find the discs, about equally well: after 40 steps, single-process runs with
    # other seeds differ by up to ~0.13 in pixel AP, so 0.2 allows for that and no more.
    _, lesioned, masks = task
    fg = lesioned > 0
    ap_two = average_precision_score(masks[fg], np.load(folder / "rank0_maps.npy")[fg])
    ap_one = average_precision_score(masks[fg], one_rank.decision_map(lesioned)[fg])
    chance = masks[fg].mean()
    assert ap_two > 2 * chance and ap_one > 2 * chance, (ap_two, ap_one, chance)
    assert abs(ap_two - ap_one) < 0.2, (ap_two, ap_one)


def test_validation_and_early_stopping_agree_across_ranks(two_ranks):
    folder, (r0, r1) = two_ranks
    assert r0["validation"] == r1["validation"]
    assert r0["validation"]["n_records"] >= 1
    w0, w1 = _load(folder / "rank0_validated.pt"), _load(folder / "rank1_validated.pt")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k


def test_location_reference_pools_every_rank(two_ranks):
    folder, (r0, r1) = two_ranks
    np.testing.assert_array_equal(
        np.load(folder / "rank0_location_mean.npy"), np.load(folder / "rank1_location_mean.npy")
    )
    for r in (r0, r1):
        # Shard sums added in another order than one pass over all scans: float64 ulps,
        # then one float32 rounding.
        assert r["location"]["max_rel_diff"] < 1e-6
        # A shard is mapped in other batches than all scans at once: float32 ulps apart.
        assert r["location"]["offset"] == pytest.approx(r["location"]["score_percentile"], rel=1e-6)
    assert r0["location"]["offset"] == r1["location"]["offset"]


def test_held_out_references_are_the_same_scans_on_every_rank(two_ranks, task):
    _, (r0, r1) = two_ranks
    assert r0["reference"]["samples"] == r1["reference"]["samples"]
    assert len(r0["reference"]["samples"]) == len(task[0]) // 4
    for r in (r0, r1):
        assert r["reference"]["max_rel_diff"] < 1e-6
        assert r["reference"]["offset"] == pytest.approx(
            r["reference"]["score_percentile"], rel=1e-6
        )
    assert r0["reference"]["offset"] == r1["reference"]["offset"]


def test_symmetry_reference_is_the_same_on_every_rank(two_ranks):
    _, (r0, r1) = two_ranks
    assert len(r0["symmetry"]["reference"]) == 101
    assert r0["symmetry"]["reference"] == r1["symmetry"]["reference"]
    for r in (r0, r1):
        assert r["symmetry"]["offset"] == pytest.approx(r["symmetry"]["score_percentile"], rel=1e-6)
    assert r0["symmetry"]["offset"] == r1["symmetry"]["offset"]
