"""Training callbacks: called at the documented events, observe without changing the fit."""

import numpy as np
import pytest
import torch

from disyre_sk import DISYREDetector
from disyre_sk.callbacks import TrainingCallback, TrainingInfo

TINY = dict(
    patch_size=32,
    widths=(8, 16),
    n_steps=40,
    batch_size=2,
    stride=32,
    severities=(0.5,),
    random_state=0,
)


class Recorder(TrainingCallback):
    def __init__(self):
        self.events = []
        self.losses = []
        self.snapshots = {}

    def on_train_begin(self, detector, info):
        self.events.append(("begin", info.step))

    def on_log(self, detector, info):
        self.events.append(("log", info.step))
        self.losses.extend(info.losses)

    def on_validation(self, detector, info):
        self.events.append(("validation", info.step))
        assert info.validation["step"] == info.step
        self.snapshots[info.step] = {
            k: v.detach().clone() for k, v in info.network.state_dict().items()
        }

    def on_train_end(self, detector, info):
        self.events.append(("end", info.step))
        self.detector = detector


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)


def test_events_in_order_with_every_loss(images):
    rec = Recorder()
    det = DISYREDetector(**TINY, validation_fraction=0.3, validation_every=20, callbacks=[rec]).fit(
        images
    )
    # Losses reach the host every 20 steps here (the validation steps force a sync).
    assert rec.events == [
        ("begin", 0),
        ("log", 20),
        ("validation", 20),
        ("log", 40),
        ("validation", 40),
        ("end", 40),
    ]
    assert rec.losses == det.history_["loss"]
    assert rec.detector is det
    assert sorted(rec.snapshots) == [20, 40]
    # The snapshots are copies: the two steps' weights differ.
    name = next(iter(rec.snapshots[20]))
    assert not torch.equal(rec.snapshots[20][name], rec.snapshots[40][name])


def test_callbacks_do_not_change_the_model(images):
    plain = DISYREDetector(**TINY, validation_fraction=0.0).fit(images)
    watched = DISYREDetector(**TINY, validation_fraction=0.0, callbacks=[Recorder()]).fit(images)
    assert watched.history_["loss"] == plain.history_["loss"]
    np.testing.assert_array_equal(watched.decision_map(images), plain.decision_map(images))


def test_any_object_with_some_methods_works(images):
    class EndOnly:
        def on_train_end(self, detector, info):
            self.info = info

    cb = EndOnly()
    DISYREDetector(**TINY, validation_fraction=0.0, callbacks=(cb,)).fit(images)
    assert isinstance(cb.info, TrainingInfo)
    assert (cb.info.step, cb.info.n_steps, cb.info.rank) == (40, 40, 0)
    assert cb.info.validation is None
    assert cb.info.learning_rate == pytest.approx(cb.info.history["learning_rate"][-1])


def test_callbacks_are_not_saved_and_do_not_invalidate_checkpoints(images, tmp_path):
    det = DISYREDetector(**TINY, validation_fraction=0.0, callbacks=[Recorder()]).fit(images)
    loaded = DISYREDetector.load(det.save(tmp_path / "m.disyre"))
    assert loaded.callbacks is None
    # Adding a callback keeps the checkpoint's fingerprint: the run resumes (here at
    # its end) instead of starting again.
    ckpt = tmp_path / "ckpt"
    DISYREDetector(**TINY, validation_fraction=0.0, checkpoint_dir=ckpt).fit(images)
    rec = Recorder()
    DISYREDetector(**TINY, validation_fraction=0.0, checkpoint_dir=ckpt, callbacks=[rec]).fit(
        images
    )
    assert rec.events[0] == ("begin", 40)


def test_a_callback_that_is_not_a_list_is_refused(images):
    with pytest.raises(ValueError, match="callbacks"):
        DISYREDetector(**TINY, callbacks=Recorder()).fit(images)


class StepClock(TrainingCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, detector, info):
        assert info.losses == []
        self.steps.append(info.step)


def test_step_end_is_called_after_every_step_and_changes_nothing(images):
    clock = StepClock()
    plain = DISYREDetector(**TINY, validation_fraction=0.0).fit(images)
    watched = DISYREDetector(**TINY, validation_fraction=0.0, callbacks=[clock]).fit(images)
    assert clock.steps == list(range(1, TINY["n_steps"] + 1))
    assert watched.history_["loss"] == plain.history_["loss"]


def test_step_end_on_any_object_with_the_method(images):
    class Plain:
        def __init__(self):
            self.n = 0

        def on_step_end(self, detector, info):
            self.n += 1

    plain = Plain()
    DISYREDetector(**{**TINY, "n_steps": 5}, validation_fraction=0.0, callbacks=[plain]).fit(images)
    assert plain.n == 5
