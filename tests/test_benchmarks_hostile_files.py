"""``benchmarks/_hostile_files.py``: the benchmark re-signs edited model files from the
user guide's description of the format alone, and that description matches the files
the package writes."""

import json

import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark

from disyre_sk import DISYREDetector


@pytest.fixture(scope="module")
def hostile():
    return load_benchmark("_hostile_files")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(0)
    healthy = rng.uniform(0.2, 0.8, size=(6, 16, 16)).astype(np.float32)
    paths = {}
    for name, extra in (("plain", {}), ("reference", {"map_standardization": "location"})):
        det = DISYREDetector(
            patch_size=16,
            widths=(8, 16),
            n_steps=2,
            batch_size=2,
            validation_fraction=0,
            random_state=0,
            **extra,
        ).fit(healthy)
        paths[name] = det.save(tmp_path_factory.mktemp(name) / "m.disyre")
    return paths


@pytest.mark.parametrize("kind", ["plain", "reference"])
def test_documented_digests_match_the_files_the_package_writes(hostile, saved, kind):
    payload = torch.load(saved[kind], weights_only=True)
    assert hostile.resign(payload) == json.loads(payload["checksums"])
    assert ("reference_maps" in payload) == (kind == "reference")


def test_a_resigned_edit_passes_the_digests_and_is_refused_by_the_next_check(
    hostile, saved, tmp_path
):
    payload = torch.load(saved["plain"], weights_only=True)
    params = json.loads(payload["params"])
    edited = dict(payload, params=json.dumps({**params, "inference_batch_size": 0}))
    with pytest.raises(ValueError, match="SHA-256"):
        DISYREDetector.load(hostile._resave(edited, tmp_path / "unsigned.disyre", False))
    with pytest.raises(ValueError, match="invalid parameters"):
        DISYREDetector.load(hostile._resave(edited, tmp_path / "signed.disyre"))
