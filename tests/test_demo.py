"""``disyre demo``: both networks trained, one model file that ``disyre detect`` opens."""

import json

import pytest

from disyre_sk import CombinedDetector, load_model
from disyre_sk._demo import QUICK, run_demo


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
