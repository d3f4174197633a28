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


def test_the_demo_trains_its_network_and_the_small_anomaly_network(demo):
    out, result = demo
    spec = QUICK["specialist"]
    assert result["settings"]["n_steps"] == 10
    recorded = result["specialist"]
    expected_steps = round(spec["n_steps"] * 10 / QUICK["detector"]["n_steps"])
    assert recorded["n_steps"] == max(1, expected_steps)
    assert recorded["weight"] == spec["weight"] and recorded["patch_size"] == spec["patch_size"]
    assert "p_bright=1.0" in recorded["corruption"]
    assert result["results"][0]["method"] == "DISYRE (dag + small-anomaly network)"
    assert json.loads((out / "metrics.json").read_text())["specialist"] == recorded


def test_the_demo_model_is_the_combination_it_reports(demo):
    out, result = demo
    model = load_model(out / "model.disyre", device="cpu")
    assert isinstance(model, CombinedDetector)
    assert [name for name, _ in model.detectors_] == ["shapes", "foci"]
    assert model.weights_.tolist() == [1.0, QUICK["specialist"]["weight"]]
    foci = model.named_detectors_.foci
    assert foci.patch_size == QUICK["specialist"]["patch_size"]
    assert len(foci.history_["loss"]) == result["specialist"]["n_steps"]
    assert (out / "demo_overlay.png").stat().st_size > 0
    assert len(list((out / "maps").glob("*_disyre_map.nii.gz"))) == len(
        result["cohort"]["families"]
    )
