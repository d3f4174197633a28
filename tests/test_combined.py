"""CombinedDetector: members fitted as clones, the weighted map sum, files, the specialist."""

import json
import os
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from toy import smooth_brains

from disyre_sk import CombinedDetector, DISYREDetector, load_model, small_anomaly_specialist
from disyre_sk._engine.persist import ModelFileError
from disyre_sk._stream import map_path, stream_detect
from disyre_sk.corruption import DAGCorruption
from disyre_sk.io import NiftiLoader, load_nifti, normalize_intensity

TINY = dict(
    patch_size=16,
    widths=(8, 16),
    n_steps=3,
    batch_size=2,
    severities=(0.5,),
    map_standardization="location",
    device="cpu",
    random_state=0,
)


def _children() -> list[str]:
    """Command lines of this process's live children, but the resource trackers that
    process pools leave for the session (Linux /proc; [] where it cannot be read)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline") as f:
                command = f.read().replace("\0", " ")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z" and "resource_tracker" not in command:
            found.append(command)
    return found


def _volumes(n, seed=0):
    # (n, 4, 16, 16) volumes of smooth brains: location standardisation needs one grid.
    return np.stack([smooth_brains(4, 16, seed=seed + 10 * i) for i in range(n)])


@pytest.fixture(scope="module")
def healthy():
    return _volumes(5)


@pytest.fixture(scope="module")
def fitted(healthy):
    main = DISYREDetector(**TINY)
    spec = small_anomaly_specialist(main)
    return CombinedDetector([("main", main), ("foci", spec)], weights=[1.0, 0.25]).fit(healthy)


def test_the_map_is_the_weighted_sum_of_the_members_maps(fitted, healthy):
    X = _volumes(2, seed=99)
    maps = fitted.decision_map(X)
    main, foci = (d.decision_map(X) for _, d in fitted.detectors_)
    assert maps.shape == X.shape and maps.dtype == np.float32
    np.testing.assert_allclose(maps, main + 0.25 * foci, rtol=1e-6, atol=1e-6)
    assert not np.allclose(main, foci)  # two different networks
    # 0 outside the foreground, where each member's map is 0.
    assert (maps[X == 0] == 0).all()


def test_scores_reduce_the_combined_map_as_the_first_member_does(fitted, healthy):
    X = _volumes(3, seed=50)
    maps = fitted.decision_map(X)
    top_k = fitted.detectors_[0][1].top_k
    expected = []
    for m, x in zip(maps, X):
        values = np.sort(m[x != 0])
        expected.append(-values[-max(1, int(np.ceil(top_k * values.size))) :].mean())
    scores = fitted.score_samples(X)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    np.testing.assert_allclose(fitted.decision_function(X), scores - fitted.offset_)
    np.testing.assert_array_equal(fitted.predict(X), np.where(scores - fitted.offset_ < 0, -1, 1))


def test_offset_flags_one_percent_of_the_healthy_training_scans(fitted, healthy):
    train = fitted.score_samples(healthy)
    assert fitted.offset_ == pytest.approx(np.percentile(train, 1.0))
    loose = CombinedDetector(fitted.detectors_, contamination=0.5)
    loose.fit(healthy)
    assert loose.offset_ == pytest.approx(np.percentile(loose.score_samples(healthy), 50.0))


def test_members_holding_out_reference_samples_set_offset_on_them():
    X = _volumes(6, seed=3)
    main = DISYREDetector(**TINY, reference_fraction=0.5)
    both = CombinedDetector([("main", main), ("foci", small_anomaly_specialist(main))]).fit(X)
    held = [d.history_["reference_samples"] for _, d in both.detectors_]
    # One random_state: the members hold out the same samples, and offset_ comes from them.
    assert held[0] == held[1] and len(held[0]) == 3
    scores = both.score_samples(X[held[0]])
    assert both.offset_ == pytest.approx(np.percentile(scores, 1.0))
    assert both.offset_ != pytest.approx(np.percentile(both.score_samples(X), 1.0))
    # Members with other seeds: the samples both held out, or all when none is common.
    other = DISYREDetector(**dict(TINY, random_state=1), reference_fraction=0.5)
    mixed = CombinedDetector([("a", main), ("b", other)]).fit(X)
    a, b = (set(d.history_["reference_samples"]) for _, d in mixed.detectors_)
    common = sorted(a & b) or list(range(6))
    assert mixed.offset_ == pytest.approx(np.percentile(mixed.score_samples(X[common]), 1.0))


def test_fit_clones_the_members_and_leaves_them_unfitted(healthy):
    main = DISYREDetector(**TINY)
    combo = CombinedDetector([("a", main)]).fit(healthy)
    assert not hasattr(main, "network_")
    assert combo.named_detectors_.a is combo.detectors_[0][1] is not main
    assert combo.weights_.tolist() == [1.0]
    assert combo.image_shape_ == (4, 16, 16) and combo.n_features_in_ == 4 * 16 * 16
    assert combo.device_ == torch.device("cpu")


def test_a_zero_weight_member_is_fitted_but_adds_nothing(healthy):
    main = DISYREDetector(**TINY)
    combo = CombinedDetector([("a", main), ("b", small_anomaly_specialist(main))], weights=[1, 0])
    combo.fit(healthy)
    np.testing.assert_array_equal(
        combo.decision_map(healthy), combo.named_detectors_.a.decision_map(healthy)
    )


@pytest.mark.parametrize(
    "members, weights, error, words",
    [
        ([], None, ValueError, "non-empty list"),
        ([("a", "not a detector")], None, TypeError, "not a DISYREDetector"),
        ([DISYREDetector(**TINY)], None, ValueError, "(name, DISYREDetector) pairs"),
        (
            [("a", DISYREDetector(**TINY)), ("a", DISYREDetector(**TINY))],
            None,
            ValueError,
            "distinct",
        ),
        ([("a__b", DISYREDetector(**TINY))], None, ValueError, "'__'"),
        (
            [("a", DISYREDetector(**{**TINY, "map_standardization": None}))],
            None,
            ValueError,
            "map_standardization='location'",
        ),
        (
            [("a", DISYREDetector(**TINY)), ("b", DISYREDetector(**TINY, background=None))],
            None,
            ValueError,
            "background",
        ),
        ([("a", DISYREDetector(**TINY))], [1, 2], ValueError, "2 values for 1"),
        ([("a", DISYREDetector(**TINY))], [-1], ValueError, "non-negative"),
        ([("a", DISYREDetector(**TINY))], [0], ValueError, "not all zero"),
        ([("a", DISYREDetector(**TINY))], [float("nan")], ValueError, "finite"),
    ],
)
def test_bad_members_and_weights_are_refused_before_any_training(
    members, weights, error, words, healthy
):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        CombinedDetector(members, weights=weights).fit(healthy)


def test_a_bad_second_member_is_refused_before_the_first_trains(healthy, monkeypatch):
    trained = []
    monkeypatch.setattr(DISYREDetector, "fit", lambda self, *a, **k: trained.append(self))
    good, bad = DISYREDetector(**TINY), DISYREDetector(**{**TINY, "patch_size": 15})
    with pytest.raises(ValueError, match="detector 'b': patch_size=15"):
        CombinedDetector([("a", good), ("b", bad)]).fit(healthy)
    assert trained == []


def test_members_sharing_a_checkpoint_folder_are_refused(healthy, tmp_path):
    main = DISYREDetector(**TINY, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        CombinedDetector([("a", main), ("b", small_anomaly_specialist(main))]).fit(healthy)
    assert not list(tmp_path.iterdir())  # refused before any training


def test_save_and_load_give_the_same_maps_scores_and_threshold(fitted, tmp_path):
    X = _volumes(2, seed=7)
    path = fitted.save(tmp_path / "model.disyre")
    for loaded in (CombinedDetector.load(path, device="cpu"), load_model(path, device="cpu")):
        assert isinstance(loaded, CombinedDetector)
        assert [n for n, _ in loaded.detectors_] == ["main", "foci"]
        assert loaded.weights_.tolist() == [1.0, 0.25] and loaded.offset_ == fitted.offset_
        np.testing.assert_array_equal(loaded.decision_map(X), fitted.decision_map(X))
        np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    single = fitted.named_detectors_.main.save(tmp_path / "single.disyre")
    assert isinstance(load_model(single), DISYREDetector)


def test_a_combined_file_is_not_opened_as_a_single_detector(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.disyre")
    with pytest.raises(ModelFileError, match=r"CombinedDetector\.load"):
        DISYREDetector.load(path)
    single = fitted.named_detectors_.main.save(tmp_path / "single.disyre")
    with pytest.raises(ModelFileError, match="not a CombinedDetector model file"):
        CombinedDetector.load(single)


def _rewrite(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_edited_weights_or_settings_fail_the_checksums(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.disyre")

    def bump_weight(payload):
        member = payload["members"]["foci"]
        key = next(iter(member["state_dict"]))
        member["state_dict"][key] = member["state_dict"][key] + 1

    _rewrite(path, bump_weight)
    with pytest.raises(ModelFileError, match=r"member 'foci'.*SHA-256"):
        CombinedDetector.load(path)

    path = fitted.save(tmp_path / "model2.disyre")

    def reweigh(payload):
        params = json.loads(payload["params"])
        params["weights"] = [1.0, 10.0]
        payload["params"] = json.dumps(params)

    _rewrite(path, reweigh)
    with pytest.raises(ModelFileError, match="SHA-256 check in params"):
        CombinedDetector.load(path)


def test_a_file_from_a_newer_format_asks_for_an_upgrade(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.disyre")
    _rewrite(path, lambda p: p.update(format_version=99))
    with pytest.raises(ModelFileError, match="Upgrade disyre_sk"):
        load_model(path)


def test_small_anomaly_specialist_keeps_the_pixels_of_its_anomalies():
    main = DISYREDetector(patch_size=32, widths=(8, 16), n_steps=1000, warmup_steps=100)
    same = small_anomaly_specialist(main)
    small = small_anomaly_specialist(main, patch_size=16, n_steps=500)
    assert main.corruption == "dag" and main.patch_size == 32  # untouched
    assert same.patch_size == 32 and same.n_steps == 1000
    assert small.patch_size == 16 and small.n_steps == 500 and small.warmup_steps == 50
    for spec in (same, small):
        c = spec.corruption
        assert isinstance(c, DAGCorruption) and c.p_bright == 1.0
        assert c.box_fraction * spec.patch_size == 16  # an 8-pixel half box at any patch
        assert c.size_range == (0.1, 0.35) and c.sigma_range == (0.0, 1.0)
    assert small.get_params()["widths"] == main.widths
    with pytest.raises(ValueError, match="16 pixels or more"):
        small_anomaly_specialist(main, patch_size=8)
    # Either sign: small dark lesions too; the rest of the recipe is the same.
    both = small_anomaly_specialist(main, patch_size=16, p_bright=0.5)
    assert both.corruption.p_bright == 0.5 and both.corruption.size_range == (0.1, 0.35)
    with pytest.raises(ValueError, match="p_bright"):
        small_anomaly_specialist(main, p_bright=1.5)


def test_disyre_detect_streams_a_combined_model_file(fitted, tmp_path):
    # A model on NIfTI volumes, streamed as `disyre detect` streams it.
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    folder = tmp_path / "scans"
    folder.mkdir()
    scans = []
    for i, vol in enumerate(_volumes(4, seed=300)):
        p = folder / f"sub-{i}.nii.gz"
        nib.save(nib.Nifti1Image((np.transpose(vol, (2, 1, 0)) * 1000).astype(np.int16), affine), p)
        scans.append(p)
    X = NiftiLoader().fit_transform(scans[:3])
    main = DISYREDetector(**TINY)
    combo = CombinedDetector([("main", main), ("foci", small_anomaly_specialist(main))])
    path = combo.fit(X).save(tmp_path / "model.disyre")
    out = tmp_path / "maps"
    summary = stream_detect(path, scans, out, devices=["cpu"])
    assert len(summary.written) == 4 and not summary.failed
    rows = json.loads((out / "scores.json").read_text())
    for scan, row in zip(scans, rows):
        volume = normalize_intensity(load_nifti(scan))
        np.testing.assert_allclose(
            load_nifti(map_path(out, scan)), combo.decision_map(volume[None])[0], atol=1e-6
        )
        assert row["anomaly_score"] == pytest.approx(float(-combo.score_samples(volume[None])[0]))


def test_members_of_lists_a_combinations_networks_or_the_detector_itself(fitted):
    from disyre_sk._combined import members_of

    assert members_of(fitted) == fitted.detectors_ and members_of(fitted) is not fitted.detectors_
    single = fitted.named_detectors_.main
    assert members_of(single) == [("detector", single)]


def test_calibrate_relearns_every_member_and_the_combined_threshold(healthy):
    combo = CombinedDetector(
        [("main", DISYREDetector(**TINY)), ("foci", DISYREDetector(**TINY, n_res_blocks=1))]
    ).fit(healthy)
    site = 0.6 * _volumes(5, seed=400)
    means = [d.location_mean_.copy() for _, d in combo.detectors_]
    offset = combo.offset_
    assert combo.calibrate(site) is combo
    for (_, det), before in zip(combo.detectors_, means):
        assert not np.allclose(det.location_mean_, before)
    assert combo.offset_ != offset
    assert combo.offset_ == pytest.approx(np.percentile(combo.score_samples(site), 1.0))
    # A refusal names the member and leaves every member as it was.
    means = [d.location_mean_.copy() for _, d in combo.detectors_]
    with pytest.raises(ValueError, match=r"detector 'main'.*at least two"):
        combo.calibrate(site[:1])
    for (_, det), before in zip(combo.detectors_, means):
        np.testing.assert_array_equal(det.location_mean_, before)


# ---------------------------------------------------------------- sum or maximum
def test_max_keeps_the_largest_weighted_map_at_each_voxel(fitted):
    X = _volumes(2, seed=77)
    main, foci = (d.decision_map(X) for _, d in fitted.detectors_)
    maxed = clone(fitted).set_params(combination="max")
    # Read when mapping: the fitted members serve both combinations without a refit.
    maxed.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(
        maxed.decision_map(X), np.maximum(main, 0.25 * foci), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(fitted.decision_map(X), main + 0.25 * foci, rtol=1e-6, atol=1e-6)


def test_changing_the_combination_after_fit_warns_of_a_stale_threshold(healthy):
    main = DISYREDetector(**TINY)
    both = CombinedDetector([("main", main), ("foci", small_anomaly_specialist(main))])
    both.fit(healthy)
    X = _volumes(2, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both.decision_function(X)
    both.set_params(combination="max")
    with pytest.warns(UserWarning, match="stale threshold"):
        both.predict(X)
    both.set_params(weights=[1.0, 0.5])
    with pytest.warns(UserWarning, match=r"weights=\[1.0, 0.5\]"):
        both.decision_function(X)
    both.calibrate(healthy)  # a new threshold for the new settings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both.decision_function(X)
    both.set_params(combination="mean")
    with pytest.raises(ValueError, match="combination must be 'sum' or 'max'"):
        both.decision_map(X)


def test_the_combination_is_validated_and_saved(healthy, tmp_path):
    main = DISYREDetector(**TINY)
    with pytest.raises(ValueError, match="combination"):
        CombinedDetector([("main", main)], combination="mean").fit(healthy)
    both = CombinedDetector(
        [("main", main), ("foci", small_anomaly_specialist(main))], combination="max"
    ).fit(healthy)
    again = load_model(both.save(tmp_path / "max.disyre"), device="cpu")
    assert again.combination == "max"
    X = _volumes(2, seed=3)
    np.testing.assert_allclose(again.decision_map(X), both.decision_map(X), atol=1e-6)
    # A threshold set with other settings stays stale through a save and a load.
    both.set_params(combination="sum")
    stale = load_model(both.save(tmp_path / "stale.disyre"), device="cpu")
    assert stale.combination == "sum"
    with pytest.warns(UserWarning, match="stale threshold"):
        stale.decision_function(X)


def test_a_file_without_a_combination_sums_the_maps(fitted, tmp_path):
    from disyre_sk._engine.combined_file import save_combined

    members = {name: det._payload() for name, det in fitted.detectors_}
    params = {"names": list(members), "weights": [1.0, 0.25], "contamination": "auto"}
    path = save_combined(tmp_path / "old.disyre", params, {"offset_": fitted.offset_}, members)
    old = load_model(path, device="cpu")
    X = _volumes(2, seed=8)
    assert old.combination == "sum"
    np.testing.assert_allclose(old.decision_map(X), fitted.decision_map(X), atol=1e-6)


def test_n_jobs_trains_the_members_in_processes_with_the_same_draws(fitted, healthy, monkeypatch):
    from disyre_sk import _combined

    pools = []
    side_by_side = _combined._fit_side_by_side
    monkeypatch.setattr(
        _combined,
        "_fit_side_by_side",
        lambda dets, X, X_val, n_jobs: pools.append(n_jobs) or side_by_side(dets, X, X_val, n_jobs),
    )
    threads = torch.get_num_threads()
    main = DISYREDetector(**TINY)
    both = CombinedDetector(
        [("main", main), ("foci", small_anomaly_specialist(main))], weights=[1.0, 0.25], n_jobs=2
    ).fit(healthy)
    assert pools == [2]  # both members went to a pool of two processes
    CombinedDetector([("main", main)], n_jobs=2).fit(healthy)
    assert pools == [2]  # one member: no pool
    assert torch.get_num_threads() == threads  # the workers took their share, not this process
    # The pool closed with the fits: no idle worker is left to slow the next fit.
    assert _children() == []
    X = _volumes(2, seed=99)
    # Same seeds, same draws: the maps agree up to the thread count's rounding.
    np.testing.assert_allclose(both.decision_map(X), fitted.decision_map(X), rtol=1e-4, atol=1e-4)
    for (_, det), (_, seq) in zip(both.detectors_, fitted.detectors_):
        np.testing.assert_allclose(det.history_["loss"], seq.history_["loss"], rtol=1e-4)
    assert both.offset_ == pytest.approx(fitted.offset_, rel=1e-3, abs=1e-4)


def test_n_jobs_zero_and_n_jobs_under_torchrun_are_refused_before_training(healthy, monkeypatch):
    main = DISYREDetector(**TINY)
    pair = [("main", main), ("foci", small_anomaly_specialist(main))]
    with pytest.raises(ValueError, match="n_jobs=0 trains nothing"):
        CombinedDetector(pair, n_jobs=0).fit(healthy)
    with pytest.raises(ValueError, match="n_jobs"):
        CombinedDetector(pair, n_jobs=1.5).fit(healthy)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="under torchrun"):
        CombinedDetector(pair, n_jobs=2).fit(healthy)


@pytest.mark.parametrize("combination", ["sum", "max"])
def test_offset_joins_the_members_own_maps_of_the_reference_scans(
    healthy, monkeypatch, combination
):
    main = DISYREDetector(**TINY)
    combo = CombinedDetector(
        [("main", main), ("foci", small_anomaly_specialist(main))],
        weights=[1.0, 0.5],
        combination=combination,
    )
    mapped = []
    original = CombinedDetector.score_samples
    monkeypatch.setattr(
        CombinedDetector,
        "score_samples",
        lambda self, X: mapped.append(len(X)) or original(self, X),
    )
    combo.fit(healthy)
    monkeypatch.undo()
    # Each member mapped the scans for its own references; fit maps them no second time.
    assert mapped == []
    assert combo.offset_ == pytest.approx(np.percentile(combo.score_samples(healthy), 1.0))
    for _, det in combo.detectors_:  # the members carry nothing of it afterwards
        assert "_reference_maps" not in det.__dict__
        assert "_keep_reference_maps" not in det.__dict__
    # Alone, a detector keeps no such maps.
    alone = DISYREDetector(**TINY).fit(healthy)
    assert "_reference_maps" not in alone.__dict__
