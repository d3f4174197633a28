"""Checks of ``benchmarks/_demo_models.py``: the folders a run reads, and the runner that
writes every folder's rows with the run's provenance."""

import json
from pathlib import Path

import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def dm():
    return load_benchmark("_demo_models")


def test_demo_folders_reuses_given_folders_and_runs_a_demo_per_seed_otherwise(
    dm, tmp_path, monkeypatch
):
    assert dm.demo_folders(["a", "b/c"], [0, 1], tmp_path) == [Path("a"), Path("b/c")]
    ran = []
    monkeypatch.setattr(dm, "run_demo", lambda seed, out: ran.append((seed, out)) or out)
    assert dm.demo_folders(None, [3, 4], tmp_path) == [tmp_path / "demo3", tmp_path / "demo4"]
    assert ran == [(3, tmp_path / "demo3"), (4, tmp_path / "demo4")]


def test_run_on_demo_models_writes_every_folders_rows_with_provenance(dm, tmp_path):
    out = tmp_path / "res.md"
    args = dm.demo_model_parser("Title line.\n\nMore.", str(out)).parse_args(
        ["--demo-dirs", "a", "b", "--n-test", "5"]
    )
    assert args.n_test == 5 and args.seeds == [0, 1, 2]
    rc = dm.run_on_demo_models(
        args,
        "A title",
        lambda folder: [{"folder": str(folder)}, {"folder": str(folder) + "!"}],
        lambda rows: f"{len(rows)} rows",
    )
    assert rc == 0
    text = out.read_text()
    assert text.startswith("# A title") and "- **commit**:" in text and "4 rows" in text
    raw = json.loads(out.with_suffix(".json").read_text())["raw"]
    assert [r["folder"] for r in raw] == ["a", "a!", "b", "b!"]


def test_load_demo_reads_the_seed_and_a_quiet_model(dm, tmp_path):
    import numpy as np

    from disyre_sk import DISYREDetector

    x = np.zeros((4, 16, 16), dtype=np.float32)
    x[:, 2:14, 2:14] = np.random.default_rng(0).random((4, 12, 12))
    det = DISYREDetector(
        patch_size=16, widths=(8, 16), n_steps=2, batch_size=4, random_state=0, verbose=True
    ).fit(x)
    det.save(tmp_path / "model.disyre")
    (tmp_path / "metrics.json").write_text(json.dumps({"settings": {"random_state": 7}}))
    meta, seed, loaded = dm.load_demo(tmp_path)
    assert seed == 7 and meta["settings"]["random_state"] == 7
    assert loaded.verbose is False
    np.testing.assert_array_equal(loaded.decision_map(x[:1]), det.decision_map(x[:1]))


def test_load_demo_of_a_combined_model_gives_its_first_network_or_the_whole(dm, tmp_path):
    import numpy as np

    from disyre_sk import CombinedDetector, DISYREDetector, small_anomaly_specialist

    x = np.zeros((4, 2, 16, 16), dtype=np.float32)
    x[:, :, 2:14, 2:14] = np.random.default_rng(0).random((4, 2, 12, 12))
    det = DISYREDetector(
        patch_size=16,
        widths=(8, 16),
        n_steps=2,
        batch_size=4,
        map_standardization="location",
        random_state=0,
        verbose=True,
    )
    combo = CombinedDetector([("shapes", det), ("foci", small_anomaly_specialist(det))])
    combo.fit(x).save(tmp_path / "model.disyre")
    (tmp_path / "metrics.json").write_text(json.dumps({"settings": {"random_state": 3}}))
    _, seed, first = dm.load_demo(tmp_path)
    assert seed == 3 and isinstance(first, DISYREDetector) and first.verbose is False
    np.testing.assert_array_equal(
        first.decision_map(x[:1]), combo.named_detectors_.shapes.decision_map(x[:1])
    )
    _, _, whole = dm.load_demo(tmp_path, whole=True)
    assert isinstance(whole, CombinedDetector)
    assert all(d.verbose is False for _, d in whole.detectors_)
    assert dm.first_network(whole) is whole.detectors_[0][1]
    assert dm.first_network(first) is first
    np.testing.assert_array_equal(whole.decision_map(x[:1]), combo.decision_map(x[:1]))
