"""The training monitor (synthetic validation during fit): held-out anomaly families, history,
best weights, early stopping."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from toy import textured

import disyre_sk._engine.training as training
from disyre_sk import DISYREDetector
from disyre_sk._engine import anomaly_families, monitor
from disyre_sk._engine.anomaly_families import (
    FAMILIES,
    MIN_CHANGE,
    insert_anomaly,
    make_validation_set,
    usable_slices,
)
from disyre_sk.corruption import Corrupted, Corruption

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import import_layers

TINY = dict(
    patch_size=16,
    widths=(8, 16),
    batch_size=4,
    stride=8,
    severities=(0.5,),
    random_state=0,
    device="cpu",
)


@pytest.fixture(autouse=True)
def few_images(monkeypatch):
    # A handful of validation images per family keeps every fit here well under a second.
    monkeypatch.setattr(anomaly_families, "IMAGES_PER_FAMILY", 3)


@pytest.fixture(scope="module")
def data():
    return textured(12, 16, seed=0)


@pytest.fixture(scope="module")
def slices():
    return textured(4, 48, seed=3)


def _records(det):
    """Training-monitor records without their timings (which vary run to run)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in det.history_["validation"]]


def _weights(det):
    return {k: v.detach().clone() for k, v in det.network_.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ anomaly families


@pytest.mark.parametrize("family", FAMILIES)
def test_family_mask_is_exact_background_untouched_values_in_range(slices, family):
    image, fg = slices[0], slices[0] > 0
    made = 0
    for seed in range(8):
        out = insert_anomaly(
            image, fg, family, np.random.default_rng(seed), slices[1], slices[1] > 0
        )
        if out is None:
            continue
        made += 1
        anomalous, mask = out
        assert anomalous.dtype == np.float32 and mask.dtype == bool
        np.testing.assert_array_equal(mask, anomalous != image)
        assert np.all(np.abs(anomalous.astype(np.float64) - image)[mask] >= MIN_CHANGE)
        np.testing.assert_array_equal(anomalous[~fg], image[~fg])
        assert not mask[~fg].any()
        assert anomalous.min() >= 0 and anomalous.max() <= 1
        assert mask.sum() >= 4
    assert made >= 4, f"{family}: only {made} of 8 draws placed an anomaly"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_deterministic_given_its_generator(slices, family):
    def draw(seed):
        return insert_anomaly(slices[2], slices[2] > 0, family, np.random.default_rng(seed))

    # Some draws find too little contrast to change (a deformation of flat tissue).
    placed = [seed for seed in range(20) if draw(seed) is not None]
    assert len(placed) >= 2
    a, b, c = draw(placed[0]), draw(placed[0]), draw(placed[1])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_poisson_blends_gradients_not_intensities():
    # A ramp has no curvature: blending its gradients into a flat image changes nothing,
    # where pasting its intensities (as a foreign patch would) makes a visible ramp.
    flat = np.zeros((40, 40), np.float32)
    flat[2:-2, 2:-2] = 0.5
    fg = flat > 0
    ramp = np.where(fg, np.linspace(0.1, 0.9, 40)[None, :], 0).astype(np.float32)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        assert insert_anomaly(flat, fg, "poisson", rng, ramp, fg) is None
    # A curved donor (a bright bump) does change the flat image, inside the blob only.
    yy, xx = np.mgrid[:40, :40]
    bump = np.where(fg, 0.3 + 0.6 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 30), 0)
    made = [
        insert_anomaly(flat, fg, "poisson", np.random.default_rng(s), bump, fg) for s in range(6)
    ]
    assert any(m is not None for m in made)


def test_no_room_means_no_anomaly():
    image = np.zeros((16, 16), np.float32)
    image[7:10, 7:10] = 0.5
    fg = image > 0
    assert not usable_slices(fg[None]).any()
    for family in FAMILIES:
        assert insert_anomaly(image, fg, family, np.random.default_rng(0)) is None
    assert make_validation_set(image[None], fg[None], np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="family must be one of"):
        insert_anomaly(image, fg, "fpi", np.random.default_rng(0))


def test_validation_set_is_deterministic_and_complete(slices):
    fg = slices > 0
    a = make_validation_set(slices, fg, np.random.default_rng(1), per_family=4)
    b = make_validation_set(slices, fg, np.random.default_rng(1), per_family=4)
    assert a is not None and len(a) == 12
    assert sorted(set(a.families)) == sorted(FAMILIES)
    for name in ("images", "clean", "masks", "foreground", "families"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.masks, a.images != a.clean)
    ex = a.examples(1)
    assert list(ex["families"]) == list(dict.fromkeys(a.families))


def test_validation_code_shares_nothing_with_the_training_corruption():
    # Every import of every package module, at module level or inside functions.
    graph = import_layers.graph()
    seen, todo = set(), ["disyre_sk._engine.monitor", "disyre_sk._engine.anomaly_families"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        top, deferred = graph[name]
        todo.extend(top | deferred)
    assert "disyre_sk.metrics._pixel" in seen  # the walk does follow imports
    assert not [m for m in seen if m.startswith("disyre_sk.corruption")], seen
    cohort = ("disyre_sk.datasets._lesions", "disyre_sk.datasets._cohort")
    assert not [m for m in seen if m in cohort], seen


# ------------------------------------------------------------------ in the detector


def test_history_records_each_validation(data):
    det = DISYREDetector(**TINY, n_steps=15, validation_every=5, validation_fraction=0.25).fit(data)
    h = det.history_
    assert [r["step"] for r in h["validation"]] == [5, 10, 15]
    for r in h["validation"]:
        assert set(r["average_precision"]) == set(FAMILIES) == set(r["best_dice"])
        values = [*r["average_precision"].values(), *r["best_dice"].values()]
        assert all(0 <= v <= 1 for v in values)
        assert r["mean_average_precision"] == pytest.approx(
            np.mean(list(r["average_precision"].values()))
        )
        assert r["seconds"] > 0
    means = [r["mean_average_precision"] for r in h["validation"]]
    # The kept step: the latest within validation_tol of the best score.
    within = [r["step"] for r, m in zip(h["validation"], means) if m >= max(means) - 0.01]
    assert h["best_step"] == within[-1]
    assert h["stopped_early"] is False
    assert len(h["validation_samples"]) == 3 and "3 of 12 samples" in h["validation_note"]
    # Held-out samples are never trained on: 9 training images of one slice each.
    assert h["n_slices"] == 9 and len(h["loss"]) == 15


def test_held_out_samples_are_whole_volumes(data):
    volumes = np.stack([data[i : i + 3] for i in range(0, 12, 3)]).repeat(3, axis=0)[:10]
    det = DISYREDetector(**TINY, n_steps=4, validation_every=2, validation_fraction=0.2).fit(
        volumes
    )
    held = det.history_["validation_samples"]
    assert len(held) == 2
    # Every slice of the 8 training volumes, none of the 2 held out.
    assert det.history_["n_slices"] == 8 * 3


def test_same_seed_same_validation(data):
    a = DISYREDetector(**TINY, n_steps=6, validation_every=3).fit(data)
    b = DISYREDetector(**TINY, n_steps=6, validation_every=3).fit(data)
    assert a.history_["validation_samples"] == b.history_["validation_samples"]
    assert _records(a) == _records(b)


def test_validation_does_not_change_the_training_stream(data, monkeypatch):
    X_val = textured(3, 16, seed=50)
    plain = DISYREDetector(**TINY, n_steps=12, validation_fraction=0).fit(data)
    snapshots = {}
    _snapshot(monkeypatch, snapshots)
    checked = DISYREDetector(**TINY, n_steps=12, validation_every=4).fit(data, X_val=X_val)
    assert plain.history_["validation"] == [] and plain.history_["best_step"] is None
    assert "off" in plain.history_["validation_note"]
    assert [r["step"] for r in checked.history_["validation"]] == [4, 8, 12]
    assert checked.history_["validation_samples"] is None
    assert "X_val (3 samples)" in checked.history_["validation_note"]
    # Same batches, same losses, and at the last step the very same weights.
    assert checked.history_["loss"] == plain.history_["loss"]
    assert _same(snapshots[12], _weights(plain))


class Unchanged(Corruption):
    """A training corruption that corrupts nothing: the training corruption switched off."""

    def sample_params(self, x, generator, foreground=None, severity=None):
        return {"severity": torch.zeros(x.shape[0], device=x.device)}

    def apply(self, x, params, foreground=None):
        return Corrupted(x, torch.zeros_like(x), params["severity"])


@pytest.mark.parametrize("corruption", ["dag", "fpi", "gaussian", Unchanged()])
def test_validation_works_with_any_training_corruption(data, corruption):
    params = {**TINY, "corruption": corruption}
    det = DISYREDetector(**params, n_steps=4, validation_every=2).fit(data)
    assert [r["step"] for r in det.history_["validation"]] == [2, 4]
    assert det.history_["best_step"] in (2, 4)
    assert set(det.history_["validation"][0]["average_precision"]) == set(FAMILIES)


def _snapshot(monkeypatch, snapshots, *, decreasing=False):
    """Snapshot the weights at each monitor check; optionally make each score the worst yet."""
    real = monitor.score_maps

    def fake(maps, vset):
        out = real(maps, vset)
        out["mean_average_precision"] = 1.0 / (1 + len(snapshots))
        return out

    original_call = monitor.Validator.__call__

    def call(self, trainer):
        snapshots[trainer.step] = {
            k: v.detach().clone() for k, v in self.restorer.network.state_dict().items()
        }
        original_call(self, trainer)

    if decreasing:
        monkeypatch.setattr(monitor, "score_maps", fake)
    monkeypatch.setattr(monitor.Validator, "__call__", call)


def test_best_weights_are_restored(data, monkeypatch):
    snapshots = {}
    _snapshot(monkeypatch, snapshots, decreasing=True)
    det = DISYREDetector(**TINY, n_steps=9, validation_every=3).fit(data)
    assert det.history_["best_step"] == 3 and sorted(snapshots) == [3, 6, 9]
    assert _same(_weights(det), snapshots[3])
    assert not _same(_weights(det), snapshots[9])
    # Its maps are those of the step-3 network.
    twin = DISYREDetector(**TINY, n_steps=9, validation_fraction=0).fit(data)
    twin.network_.load_state_dict(snapshots[3])
    twin.intensity_range_ = det.intensity_range_  # learned without the held-out samples
    np.testing.assert_array_equal(det.decision_map(data), twin.decision_map(data))


def test_early_stopping_stops(data, monkeypatch):
    snapshots = {}
    _snapshot(monkeypatch, snapshots, decreasing=True)
    det = DISYREDetector(
        **TINY, n_steps=60, validation_every=2, early_stopping=True, n_iter_no_change=2
    ).fit(data)
    h = det.history_
    assert h["stopped_early"] is True and h["best_step"] == 2
    assert [r["step"] for r in h["validation"]] == [2, 4, 6]
    assert len(h["loss"]) == 6
    assert _same(_weights(det), snapshots[2])


def test_early_stopping_needs_validation(data):
    with pytest.raises(ValueError, match="early_stopping=True needs validation"):
        DISYREDetector(**TINY, n_steps=3, early_stopping=True).fit(data)
    # 'auto' stops early only where validation runs.
    det = DISYREDetector(**TINY, n_steps=3, early_stopping="auto").fit(data)
    assert det.history_["stopped_early"] is False and "skipped" in det.history_["validation_note"]


def test_tiny_inputs_skip_validation_with_a_note(data):
    det = DISYREDetector(**TINY, n_steps=3).fit(data)  # default validation_every=1000
    h = det.history_
    assert h["validation"] == [] and h["best_step"] is None
    assert "n_steps=3 < validation_every=1000" in h["validation_note"]
    assert h["n_slices"] == 12  # nothing held out
    det = DISYREDetector(**TINY, n_steps=4, validation_every=2).fit(data[:5])
    assert "leaves 0 for validation" in det.history_["validation_note"]
    assert det.history_["n_slices"] == 5
    table = np.random.default_rng(0).uniform(size=(30, 6))
    det = DISYREDetector(**TINY, n_steps=4, validation_every=2).fit(table)
    assert "no slice with room" in det.history_["validation_note"]


def test_bad_validation_data(data):
    with pytest.raises(ValueError, match="X_val has no slice with room"):
        DISYREDetector(**TINY, n_steps=2).fit(
            data, X_val=np.pad(np.ones((2, 2, 2)), ((0, 0), (7, 7), (7, 7)))
        )
    with pytest.raises(ValueError, match="shape"):
        DISYREDetector(**TINY, n_steps=2).fit(data, X_val=np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="no foreground"):
        DISYREDetector(**TINY, n_steps=2).fit(data, X_val=np.zeros((2, 16, 16)))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(validation_fraction=-0.1), "validation_fraction"),
        (dict(validation_every=0), "validation_every"),
        (dict(early_stopping="yes"), "early_stopping"),
        (dict(n_iter_no_change=0), "n_iter_no_change"),
        (dict(validation_tol=-0.01), "validation_tol"),
    ],
)
def test_bad_parameters(data, params, match):
    with pytest.raises(ValueError, match=match):
        DISYREDetector(**TINY, n_steps=2, **params).fit(data)


def test_resume_keeps_validation_history_and_best_weights(data, tmp_path, monkeypatch):
    params = dict(**TINY, n_steps=20, validation_every=5, checkpoint_every=5)
    reference = DISYREDetector(**params).fit(data)
    original = training.Trainer.train_step

    def interrupted(self, *batch):
        if self.step == 12:
            raise KeyboardInterrupt
        return original(self, *batch)

    monkeypatch.setattr(training.Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        DISYREDetector(**params, checkpoint_dir=tmp_path).fit(data)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]
    assert saved["step"] == 10 and [r["step"] for r in saved["monitor"]["records"]] == [5, 10]
    monkeypatch.setattr(training.Trainer, "train_step", original)
    resumed = DISYREDetector(**params, checkpoint_dir=tmp_path).fit(data)
    assert _records(resumed) == _records(reference)
    assert resumed.history_["best_step"] == reference.history_["best_step"]
    assert _same(_weights(resumed), _weights(reference))


def test_save_load_round_trips_the_history(data, tmp_path):
    det = DISYREDetector(**TINY, n_steps=4, validation_every=2).fit(data)
    loaded = DISYREDetector.load(det.save(tmp_path / "m.disyre"))
    for key in (
        "validation",
        "best_step",
        "stopped_early",
        "validation_note",
        "validation_samples",
    ):
        assert loaded.history_[key] == det.history_[key], key


class _Step:
    def __init__(self, step):
        self.step = step


class _Scripted(monitor.Validator):
    """A training monitor whose scores are given in advance (no network, no maps)."""

    def __init__(self, scores, **kw):
        net = torch.nn.Linear(1, 1)
        restorer = type("R", (), {"network": net})()
        super().__init__(None, restorer, every=1, n_iter_no_change=2, **kw)
        self.scores = iter(scores)

    def evaluate(self):
        return {"mean_average_precision": next(self.scores)}


@pytest.mark.parametrize(
    "scores, tol, kept, stops_at",
    [
        # A flat, noisy curve: the latest step within the margin of the best is kept.
        ([0.051, 0.045, 0.035, 0.046, 0.042], 0.01, 5, None),
        # Without a margin the noisy early maximum wins, and patience runs out.
        ([0.051, 0.045, 0.035, 0.046, 0.042], 0.0, 1, 3),
        # A real drop beyond the margin keeps the earlier step.
        ([0.09, 0.08, 0.079], 0.005, 1, 3),
        # Gains within the margin do not reset the patience.
        ([0.05, 0.055, 0.058, 0.10], 0.01, 3, 3),
    ],
)
def test_kept_step_and_patience_respect_the_noise_margin(scores, tol, kept, stops_at):
    v = _Scripted(scores, early_stopping=stops_at is not None, tol=tol)
    stopped = None
    for step in range(1, len(scores) + 1):
        v(_Step(step))
        if v.stop:
            stopped = step
            break
    assert v.best_step == kept
    assert stopped == stops_at
    assert v.best_score == max(scores[: stopped or len(scores)])
