"""Checkpoints: resume after a kill, stop cleanly on SIGTERM, never keep a diverged state."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from toy import smooth_brains

import disyre_sk._engine.training as training
from disyre_sk import DISYREDetector
from disyre_sk._engine.checkpoint import CHECKPOINT_NAME

PARAMS = dict(
    patch_size=16,
    widths=(8, 16),
    batch_size=4,
    stride=8,
    severities=(0.5,),
    random_state=0,
    device="cpu",
)
N_STEPS = 150

SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch
    torch.set_num_threads(1)
    from disyre_sk import DISYREDetector
    X = np.load(sys.argv[1])
    params = dict(patch_size=16, widths=(8, 16), batch_size=4, stride=8, severities=(0.5,),
                  random_state=0, device="cpu", n_steps=int(sys.argv[3]),
                  checkpoint_dir=sys.argv[2], checkpoint_every=10)
    DISYREDetector(**params).fit(X)
    """
)


@pytest.fixture(scope="module")
def data():
    return smooth_brains(10, size=16, seed=0)


@pytest.fixture(scope="module")
def reference(data):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return DISYREDetector(**PARAMS, n_steps=N_STEPS).fit(data)
    finally:
        torch.set_num_threads(old)


def _weights(det):
    return {k: v.clone() for k, v in det.network_.state_dict().items()}


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)


def _start(tmp_path, data, steps=N_STEPS):
    np.save(tmp_path / "X.npy", data)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "X.npy"), str(tmp_path / "ckpt"), str(steps)],
        env=env,
        stderr=subprocess.PIPE,
    )


def _wait_for_checkpoint(proc, path, timeout=60):
    start = time.time()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended before a checkpoint: {proc.stderr.read().decode()}")
        if time.time() - start > timeout:
            proc.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.05)


def _resume(data, tmp_path):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return DISYREDetector(
            **PARAMS, n_steps=N_STEPS, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=10
        ).fit(data)
    finally:
        torch.set_num_threads(old)


def test_checkpointing_does_not_change_training(data, reference, tmp_path):
    _assert_same_weights(_resume(data, tmp_path), reference)
    assert (tmp_path / "ckpt" / CHECKPOINT_NAME).exists()


def test_resume_after_kill_gives_same_weights(data, reference, tmp_path):
    proc = _start(tmp_path, data)
    _wait_for_checkpoint(proc, tmp_path / "ckpt" / CHECKPOINT_NAME)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = torch.load(tmp_path / "ckpt" / CHECKPOINT_NAME, weights_only=True)
    assert 0 < saved["trainer"]["step"] < N_STEPS
    resumed = _resume(data, tmp_path)
    _assert_same_weights(resumed, reference)
    assert resumed.history_["loss"] == pytest.approx(reference.history_["loss"])


def test_sigterm_saves_and_stops_cleanly(data, reference, tmp_path):
    proc = _start(tmp_path, data, steps=N_STEPS)
    _wait_for_checkpoint(proc, tmp_path / "ckpt" / CHECKPOINT_NAME)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert rc != 0 and "resume" in err, err
    _assert_same_weights(_resume(data, tmp_path), reference)


def test_finished_checkpoint_refits_without_training(data, tmp_path, monkeypatch):
    first = _resume(data, tmp_path)
    monkeypatch.setattr(training.Trainer, "train_step", lambda *a: pytest.fail("trained"))
    again = _resume(data, tmp_path)
    _assert_same_weights(first, again)


def test_checkpoint_of_other_run_is_refused(data, tmp_path):
    _resume(data, tmp_path)
    with pytest.raises(ValueError, match="another training run"):
        DISYREDetector(**PARAMS, n_steps=N_STEPS, checkpoint_dir=tmp_path / "ckpt").fit(
            data[::-1].copy()
        )


def test_divergence_stops_with_step_and_keeps_good_checkpoint(data, tmp_path, monkeypatch):
    original = training.Trainer.train_step

    def diverging(self, *batch):
        loss = original(self, *batch)
        return loss * float("nan") if self.step >= 57 else loss

    monkeypatch.setattr(training.Trainer, "train_step", diverging)
    det = DISYREDetector(
        **PARAMS, n_steps=N_STEPS, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=10
    )
    with pytest.raises(FloatingPointError, match="step 57"):
        det.fit(data)
    with pytest.raises(NotFittedError):
        det.decision_map(data)
    saved = torch.load(tmp_path / "ckpt" / CHECKPOINT_NAME, weights_only=True)
    assert saved["trainer"]["step"] == 50
    assert all(np.isfinite(saved["trainer"]["history"]["loss"]))
    assert all(torch.isfinite(v).all() for v in saved["trainer"]["network"].values())


def test_failed_refit_leaves_detector_unfitted(data, monkeypatch):
    det = DISYREDetector(**PARAMS, n_steps=5).fit(data)
    monkeypatch.setattr(training.Trainer, "train_step", lambda *a: torch.tensor(float("inf")))
    with pytest.raises(FloatingPointError):
        det.fit(data)
    assert not hasattr(det, "network_")
    with pytest.raises(NotFittedError):
        det.predict(data)


def test_failed_checkpoint_write_keeps_the_old_file_and_the_training(data, tmp_path, monkeypatch):
    _resume(data, tmp_path)
    path = tmp_path / "ckpt" / CHECKPOINT_NAME
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    from disyre_sk._engine.checkpoint import Checkpointer

    ckpt = Checkpointer(tmp_path / "ckpt", 10, "x")
    with pytest.warns(RuntimeWarning, match="disk full"):
        ckpt.save(type("T", (), {"state_dict": lambda self: {}, "step": 1})())
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [CHECKPOINT_NAME]
    assert ckpt.failed and ckpt.last_saved == -1


def test_checkpoint_folder_failing_mid_run_does_not_lose_the_model(data, tmp_path, monkeypatch):
    # The folder is writable at the start, then every write fails (disk full, remount).
    from disyre_sk._engine import checkpoint

    def broken(self, state):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.Checkpointer, "_write", broken)
    with pytest.warns(RuntimeWarning, match="goes on without checkpoints"):
        det = DISYREDetector(
            **PARAMS, n_steps=30, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=10
        ).fit(data)
    assert np.isfinite(det.decision_map(data[:1])).all()
    assert len(det.history_["loss"]) == 30


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_checkpoint_dir_is_refused_before_training(data, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    calls = []
    monkeypatch.setattr(training.Trainer, "run", lambda *a, **k: calls.append(1))
    try:
        with pytest.raises(PermissionError, match="checkpoint_dir"):
            DISYREDetector(**PARAMS, n_steps=5, checkpoint_dir=folder).fit(data)
    finally:
        folder.chmod(0o700)
    assert not calls


def test_checkpoint_dir_under_a_file_is_refused_before_training(data, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    calls = []
    monkeypatch.setattr(training.Trainer, "run", lambda *a, **k: calls.append(1))
    with pytest.raises(OSError, match="checkpoint_dir: cannot write"):
        DISYREDetector(**PARAMS, n_steps=5, checkpoint_dir=tmp_path / "file" / "ckpt").fit(data)
    assert not calls


def test_damaged_checkpoint_is_refused_with_its_name_or_harmless(data, tmp_path):
    # A flip either fails the load (naming the file) or sits in bytes the archive never
    # reads (zip padding): then the resumed model is exactly the undamaged one.
    intact = _resume(data, tmp_path)
    path = tmp_path / "ckpt" / CHECKPOINT_NAME
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for offset in rng.choice(len(raw), size=12, replace=False):
        flipped = bytearray(raw)
        flipped[offset] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            resumed = _resume(data, tmp_path)
        except ValueError as exc:
            assert CHECKPOINT_NAME in str(exc)
            refused += 1
            continue
        _assert_same_weights(resumed, intact)
    assert refused >= 8


def test_truncated_checkpoint_is_refused(data, tmp_path):
    _resume(data, tmp_path)
    path = tmp_path / "ckpt" / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated, damaged"):
        _resume(data, tmp_path)


def test_checkpoint_with_a_stale_checksum_is_refused(data, tmp_path):
    _resume(data, tmp_path)
    path = tmp_path / "ckpt" / CHECKPOINT_NAME
    payload = torch.load(path, weights_only=True)
    payload["trainer"]["step"] = 1
    torch.save(payload, path)
    with pytest.raises(ValueError, match="SHA-256"):
        _resume(data, tmp_path)
