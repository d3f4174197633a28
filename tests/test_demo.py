"""``disyre demo``: both networks trained, one model file that ``disyre detect`` opens."""

import io
import json

import numpy as np
import pytest

from disyre_sk import CombinedDetector, load_model
from disyre_sk._demo import (
    BOOTSTRAP,
    QUICK,
    TEST_BASES,
    TRAIN_BASES,
    _print_table,
    _volume_scores,
    auroc_intervals,
    intensity_baselines,
    run_demo,
)
from disyre_sk.datasets import make_brain_cohort
from disyre_sk.metrics import slice_scores


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # A few steps: the settings, files and report are what is tested, not the figures.
    return out, run_demo(out, device="cpu", n_steps=10, verbose=False)


def test_the_demo_trains_one_network_per_sign_and_the_small_anomaly_network(demo):
    out, result = demo
    assert result["settings"]["n_steps"] == 10
    for key, part in (("dark", QUICK["dark"]), ("specialist", QUICK["specialist"])):
        recorded = result[key]
        # Their steps scale with the first network's (10 here).
        expected_steps = round(part["n_steps"] * 10 / QUICK["detector"]["n_steps"])
        assert recorded["n_steps"] == max(1, expected_steps)
        assert recorded["weight"] == part["weight"]
    assert result["specialist"]["patch_size"] == QUICK["specialist"]["patch_size"]
    assert "p_bright=1.0" in result["specialist"]["corruption"]
    assert "p_bright=0.0" in result["dark"]["corruption"]
    assert result["dark"]["patch_size"] == QUICK["detector"]["patch_size"]
    # The first network's corruption as it trained: brightening only.
    assert "p_bright=1.0" in result["settings"]["corruption"]
    assert (
        result["results"][0]["method"] == "DISYRE (bright + dark dag + small-anomaly network, max)"
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["specialist"] == result["specialist"] and saved["dark"] == result["dark"]


def test_the_demo_model_is_the_combination_it_reports(demo):
    out, result = demo
    model = load_model(out / "model.disyre", device="cpu")
    assert isinstance(model, CombinedDetector)
    assert [name for name, _ in model.detectors_] == ["bright", "dark", "foci"]
    weights = [1.0, QUICK["dark"]["weight"], QUICK["specialist"]["weight"]]
    assert model.weights_.tolist() == weights
    assert model.combination == QUICK["combination"] == result["combination"]
    bright, dark, foci = (model.named_detectors_[n] for n in ("bright", "dark", "foci"))
    assert bright.corruption.p_bright == 1.0 and dark.corruption.p_bright == 0.0
    assert len(dark.history_["loss"]) == result["dark"]["n_steps"]
    assert foci.patch_size == QUICK["specialist"]["patch_size"]
    assert len(foci.history_["loss"]) == result["specialist"]["n_steps"]
    assert (out / "demo_overlay.png").stat().st_size > 0
    assert len(list((out / "maps").glob("*_disyre_map.nii.gz"))) == len(
        result["cohort"]["families"]
    )


def test_each_row_carries_its_bootstrap_intervals(demo):
    out, result = demo
    assert result["bootstrap"]["n_resamples"] == BOOTSTRAP["n_resamples"] >= 1000
    assert result["bootstrap"]["confidence"] == BOOTSTRAP["confidence"]
    for row in result["results"]:
        for key in ("slice_auroc", "volume_auroc"):
            low, high = row["auroc_intervals"][key]
            assert 0.0 <= low <= high <= 1.0
    # The baselines' maps follow from the cohort alone: their recorded intervals are
    # the stated procedure's, with the demo's seed.
    cohort = make_brain_cohort(
        **QUICK["cohort"],
        contrast="t2",
        train_bases=TRAIN_BASES,
        test_bases=TEST_BASES,
        random_state=0,
    )
    baselines = intensity_baselines(cohort)
    for row in result["results"][1:]:
        assert row["auroc_intervals"] == auroc_intervals(baselines[row["method"]], cohort, 0)
    assert json.loads((out / "metrics.json").read_text())["results"] == result["results"]


def test_the_printed_table_gives_the_intervals_and_the_counts_behind_them():
    rows = [
        {
            "method": name,
            "pixel_ap": 0.5,
            "best_dice": 0.4,
            "dice_at_1pct_fpr": 0.3,
            "slice_auroc": 0.8,
            "volume_auroc": 0.9,
            "auroc_intervals": {"slice_auroc": [0.71, 0.88], "volume_auroc": [0.25, 1.0]},
        }
        for name in ("DISYRE", "intensity threshold |x - median|")
    ]
    text = io.StringIO()
    _print_table(rows, ["healthy", "tumour", "healthy", "foci", "stroke"], text)
    lines = text.getvalue().splitlines()
    assert "95% intervals over the test volumes (bootstrap, 1000 resamples;" in lines
    assert "2 healthy and 3 lesioned volumes, resampled apart):" in lines
    interval_lines = [line for line in lines if "slice AUROC 0.710-0.880" in line]
    assert len(interval_lines) == 2
    assert all(line.endswith("vol. AUROC 0.250-1.000") for line in interval_lines)
    assert interval_lines[1].startswith("intensity threshold |x - median|  ")


def test_a_volume_score_takes_the_top_one_percent_rounded_up_as_the_package_does():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 4, 10, 10)).astype(np.float32)  # 400 voxels each
    fg = np.ones(maps.shape, dtype=bool)
    fg[1, :, :, 5:] = False  # 200 voxels
    fg[2, 0, :2, :5] = False  # 390 voxels: 1 % is 3.9, so the top 4 count
    want = [np.sort(m[f])[-k:].mean() for m, f, k in zip(maps, fg, (4, 2, 4))]
    np.testing.assert_allclose(_volume_scores(maps, fg), want, rtol=1e-6)
    np.testing.assert_allclose(
        _volume_scores(maps, fg),
        slice_scores(maps, axis=0, reduction="topk", k=0.01, foreground=fg),
    )
