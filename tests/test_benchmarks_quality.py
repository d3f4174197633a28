"""Smoke tests of ``benchmarks/quality.py``: data handling, metric plumbing, the report.

The script is loaded from its file (``benchmarks/`` is not a package). Its numbers are
not checked here, only that they are computed from the right voxels and slices and
reported as the numbers say.
"""

import numpy as np

# pyod is a declared test dependency: a missing or broken install fails, never skips.
import pyod  # noqa: F401
import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


@pytest.fixture(scope="module")
def cohort():
    from disyre_sk.datasets import make_brain_cohort

    return make_brain_cohort(2, 6, voxel_size=8.0, contrast="t2", random_state=0)


def test_perfect_and_random_maps(quality, cohort):
    ev = quality.Evaluation(cohort)
    assert ev.lesioned.sum() == 4 and (~ev.lesioned).sum() == 2
    # Slices come from every test volume, in (volume, slice) order, labelled by lesion.
    assert set(ev.volume_index.tolist()) == set(range(6))
    labels = (cohort.masks_test & cohort.brain_masks_test)[ev.volume_index, ev.slice_index]
    np.testing.assert_array_equal(ev.slice_labels, labels.any(axis=(1, 2)))

    perfect = (cohort.masks_test & cohort.brain_masks_test).astype(np.float32)
    m = ev.map_metrics(perfect)
    for key in ("pixel_ap", "best_dice", "dice_at_fpr", "slice_auroc", "volume_auroc"):
        assert m[key] == pytest.approx(1.0), key
    assert all(v == pytest.approx(1.0) for v in m["per_family_ap"].values() if v is not None)

    # A map that ignores the lesions: AP near the lesion prevalence in the brain.
    rng = np.random.default_rng(0)
    noise = rng.random(cohort.X_test.shape).astype(np.float32) * cohort.brain_masks_test
    m = ev.map_metrics(noise)
    les = ev.lesioned
    prevalence = cohort.masks_test[les].sum() / cohort.brain_masks_test[les].sum()
    assert m["pixel_ap"] < 5 * prevalence
    assert 0.0 <= m["dice_at_fpr"] <= m["best_dice"] <= 1.0


def test_volume_score_is_max_of_slices(quality, cohort):
    ev = quality.Evaluation(cohort)
    scores = np.arange(len(ev.slice_labels), dtype=float)
    vol = ev.volume_scores(scores)
    for v in range(len(cohort.X_test)):
        assert vol[v] == scores[ev.volume_index == v].max()


def _fake_seed(quality, ap_dag, ap_intensity, ap_gauss):
    def row(ap):
        return {
            "pixel_ap": ap,
            "best_dice": 0.1,
            "dice_at_fpr": 0.05,
            "slice_auroc": 0.5,
            "volume_auroc": 0.5,
            "per_family_ap": {f: ap for f in quality.FAMILIES},
        }

    results = {
        quality.DISYRE_ENS: row(ap_dag),
        quality.GAUSSIAN: row(ap_gauss),
        quality.INTENSITY: row(ap_intensity),
        "PyOD KNN": {"slice_auroc": 0.6, "volume_auroc": 0.7},
    }
    timing = {k: {"fit_s": 1.0, "map_s_per_volume": None, "n_params": None} for k in results}
    voxels = {f: 10 for f in quality.FAMILIES}
    return {"results": results, "timing": timing, "lesion_voxels": voxels, "seconds": 1.0}


def test_tables_and_notes_follow_the_numbers(quality):
    seeds = [_fake_seed(quality, 0.5, 0.3, 0.7), _fake_seed(quality, 0.6, 0.3, 0.7)]
    table = quality.main_table(seeds)
    assert "| DISYRE (dag, ensemble) | 0.550 ± 0.071 |" in table
    assert "| PyOD KNN | — | — | — | 0.600 ± 0.000 | 0.700 ± 0.000 |" in table
    assert "PyOD KNN" not in quality.family_table(seeds)
    setting = quality.SETTINGS["smoke"]
    beat_intensity, beat_gauss = quality.comparison_notes(seeds, setting)
    assert "beats intensity threshold" in beat_intensity
    assert "0.550 vs 0.300" in beat_intensity and "higher in 2 of 2 seeds" in beat_intensity
    assert "does not beat Gaussian ablation" in beat_gauss and "Why:" in beat_gauss
    # A loss to intensity on bright families is explained with the voxel share.
    seeds = [_fake_seed(quality, 0.2, 0.3, 0.1)]
    note = quality.comparison_notes(seeds, setting)[0]
    assert "does not beat intensity threshold" in note and "75 %" in note
    assert quality.fmt([None]) is None and quality.fmt([0.25]) == "0.250"


def test_smoke_run_writes_the_report(quality, tmp_path):
    out = tmp_path / "quality_smoke.md"
    methods = [quality.DISYRE_ENS, quality.DISYRE_MS, quality.GAUSSIAN, quality.AUTOENCODER]
    methods += [quality.INTENSITY, quality.MEAN_IMAGE, "IForest", "ECOD"]
    run = quality.main(
        [
            "--setting",
            "smoke",
            "--seeds",
            "0",
            "--threads",
            "1",
            "--out",
            str(out),
            "--methods",
            *methods,
        ]
    )
    text = out.read_text()
    for field in ("**command**", "**git commit**", "**date (UTC)**", "**CPU**", "**torch**"):
        assert field in text
    assert "--setting smoke" in text and "Status: complete: 1 seed;" in text
    results = run["seeds"][0]["results"]
    assert set(results) == {*methods[:6], "PyOD IForest", "PyOD ECOD"}
    for name in methods[:6]:
        for key in ("pixel_ap", "best_dice", "dice_at_fpr", "slice_auroc", "volume_auroc"):
            assert np.isfinite(results[name][key])
    # The intensity row, recomputed independently: the same cohort, the scan itself as
    # the map, scikit-learn's AP over the brain voxels of the lesioned volumes.
    from sklearn.metrics import average_precision_score

    from disyre_sk.datasets import make_brain_cohort

    cohort = make_brain_cohort(**quality.SETTINGS["smoke"]["cohort"], contrast="t2", random_state=0)
    lesioned = np.asarray(cohort.families_test) != "healthy"
    brain = cohort.brain_masks_test[lesioned]
    scan = cohort.X_test[lesioned].astype(np.float32)  # the maps are float32
    expected = average_precision_score(cohort.masks_test[lesioned][brain], scan[brain])
    assert results[quality.INTENSITY]["pixel_ap"] == pytest.approx(expected, abs=1e-9)
    assert "pixel_ap" not in results["PyOD IForest"]
    assert "| PyOD IForest | — | — | — |" in text
    assert "**DISYRE (dag, ensemble) " in text  # the computed comparison note
    # The demo's model was not asked for: the targets say so rather than judge another row.
    assert "## Targets" in text and "Not judged" in text
    import json

    raw = json.loads(out.with_suffix(".json").read_text())["raw"]
    assert raw["seed_ids"] == [0] and raw["held_out"] is None
    assert raw["seeds"][0]["results"][quality.INTENSITY]["pixel_ap"] == pytest.approx(expected)


def test_the_small_anomaly_row_adds_the_specialists_map_to_the_dag_networks(quality, monkeypatch):
    setting = dict(quality.SETTINGS["smoke"])
    setting["detector"] = dict(setting["detector"], map_standardization="location")
    methods = {quality.DISYRE_ENS, quality.DISYRE_COMBO}
    monkeypatch.setattr(quality, "SUM_FOCI_WEIGHT", 0.0)
    out = quality.run_seed(0, setting, "cpu", methods)
    ens, combo = out["results"][quality.DISYRE_ENS], out["results"][quality.DISYRE_COMBO]
    # At weight 0 the sum is the dag network's map: the same metrics.
    for key in ("pixel_ap", "best_dice", "slice_auroc", "volume_auroc"):
        assert combo[key] == ens[key]
    timing = out["timing"]
    assert timing[quality.DISYRE_COMBO]["fit_s"] > timing[quality.DISYRE_ENS]["fit_s"]
    assert timing[quality.DISYRE_COMBO]["n_params"] > timing[quality.DISYRE_ENS]["n_params"]
    # Without location z-scores the maps do not add: the row is skipped, the others kept.
    plain = quality.run_seed(0, quality.SETTINGS["smoke"], "cpu", methods)
    assert set(plain["results"]) == {quality.DISYRE_ENS}


def test_the_demos_model_row_trains_one_network_per_sign_and_reuses_the_small_one(
    quality, monkeypatch
):
    setting = dict(quality.SETTINGS["smoke"])
    setting["detector"] = dict(setting["detector"], map_standardization="location")
    methods = {quality.DISYRE_COMBO, quality.DISYRE_SIGNED, quality.DISYRE_SIGNED_MAX}
    calls = []
    real = quality.small_anomaly_specialist

    def spy(det, **kw):
        calls.append(kw)
        return real(det, **kw)

    monkeypatch.setattr(quality, "small_anomaly_specialist", spy)
    out = quality.run_seed(0, setting, "cpu", methods)
    assert set(out["results"]) == methods
    assert len(calls) == 1  # one small-anomaly network for both rows
    timing = out["timing"]
    # Three networks against two: the dag network's size is the bright one's and the dark one's.
    combo, signed = timing[quality.DISYRE_COMBO], timing[quality.DISYRE_SIGNED]
    assert signed["n_params"] > combo["n_params"] and signed["fit_s"] > 0
    assert 0 <= out["results"][quality.DISYRE_SIGNED]["pixel_ap"] <= 1
    # The maximum joins the same fitted networks' maps: same cost, other figures.
    maxed = timing[quality.DISYRE_SIGNED_MAX]
    assert maxed["fit_s"] == signed["fit_s"] and maxed["n_params"] == signed["n_params"]
    assert out["results"][quality.DISYRE_SIGNED_MAX] != out["results"][quality.DISYRE_SIGNED]


def test_the_multistep_row_maps_a_calibrated_copy_with_several_steps(quality, cohort):
    from disyre_sk import DISYREDetector

    det = DISYREDetector(
        **quality.SETTINGS["smoke"]["detector"],
        map_standardization="location",
        random_state=0,
        device="cpu",
    ).fit(cohort.X_train)
    before = (det.inference, det.severities, det.offset_, det.location_mean_.copy())
    ms = quality.multistep(det, cohort)
    # One severity in the setting: the sampler's own steps, strongest first.
    assert ms.inference == "multistep" and ms.severities == quality.MULTISTEP_SEVERITIES
    assert len(ms.severities) > 1 and ms.network_ is not det.network_
    # Its references are its own maps', learned on the training scans.
    assert not np.allclose(ms.location_mean_, before[3])
    x = cohort.X_test[:2]
    assert not np.allclose(ms.decision_map(x), det.decision_map(x))
    # The ensemble's detector is left as fitted.
    assert (det.inference, det.severities, det.offset_) == before[:3]
    np.testing.assert_array_equal(det.location_mean_, before[3])
    several = det.set_params(severities=(0.5, 0.25))
    assert quality.multistep(several, cohort).severities == (0.5, 0.25)
    det.set_params(severities=before[1])


def _target_seed(quality, ours, intensity, two_sided, slice_auroc, pyod_auroc=0.6):
    def row(ap, auroc=0.5):
        return {
            "pixel_ap": ap,
            "slice_auroc": auroc,
            "per_family_ap": {f: ap for f in quality.FAMILIES},
        }

    results = {
        quality.DISYRE_SIGNED_MAX: row(ours, slice_auroc),
        quality.INTENSITY: row(intensity),
        quality.INTENSITY2: row(two_sided),
        quality.GAUSSIAN: row(0.05),
        "PyOD KNN": {"slice_auroc": pyod_auroc},
    }
    return {"results": results}


def test_targets_judge_the_demos_model_in_every_seed(quality):
    good = [
        _target_seed(quality, 0.60, 0.05, 0.10, 0.90),
        _target_seed(quality, 0.55, 0.04, 0.08, 0.88),
    ]
    rows = quality.target_rows(good, [0, 1], held_out=False)
    assert [r[2] for r in rows] == ["yes"] * 5
    # The ratio is taken against the stronger threshold of each seed (0.10, then 0.08).
    assert rows[0][1] == "0: 6.0, 1: 6.9 (×)"
    assert rows[2][1] == "DISYRE 0.550-0.600, threshold 0.080-0.100"
    assert "Gaussian ablation" in rows[3][1] and rows[4][1] == "0: +0.300, 1: +0.280 (margin)"

    # One seed short of the ratio and of the slice AUROC, a family lost to the
    # two-sided threshold, PyOD ahead: each target says which seeds hold.
    bad = _target_seed(quality, 0.30, 0.05, 0.10, 0.70, pyod_auroc=0.75)
    bad["results"][quality.DISYRE_SIGNED_MAX]["per_family_ap"]["foci"] = 0.05
    rows = quality.target_rows([good[0], bad], [0, 7], held_out=False)
    assert [r[2] for r in rows] == ["**no** (1 of 2 seeds)"] * 2 + ["yes"] + [
        "**no** (1 of 2 seeds)"
    ] * 2
    assert "seed 7 foci to two-sided intensity" in rows[3][1]
    assert "seed 7 foci to intensity threshold" in rows[3][1]

    # Overlapping seed ranges: the best threshold seed reaches DISYRE's worst.
    close = _target_seed(quality, 0.12, 0.01, 0.02, 0.9)
    high = _target_seed(quality, 0.60, 0.20, 0.02, 0.9)
    assert quality.target_rows([close, high], [0, 1], False)[2][2] == "**no**"


def test_targets_of_a_held_out_protocol_and_missing_rows(quality):
    seeds = [_target_seed(quality, 0.30, 0.05, 0.10, 0.82)]
    rows = quality.target_rows(seeds, [3], held_out=True)
    assert [r[0] for r in rows] == [
        "pooled AP ≥ 2 × the stronger intensity threshold",
        "slice AUROC ≥ 0.80",
    ]
    assert [r[2] for r in rows] == ["yes", "yes"]
    text = "\n".join(quality.targets_section(seeds, [3], held_out=True))
    assert "held-out anatomy" in text and "| slice AUROC ≥ 0.80 | 3: 0.820 | yes |" in text
    del seeds[0]["results"][quality.INTENSITY2]
    assert quality.target_rows(seeds, [3], held_out=True) is None
    assert "Not judged" in "\n".join(quality.targets_section(seeds, [3], held_out=True))
