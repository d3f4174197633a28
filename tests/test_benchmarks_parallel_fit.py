"""``benchmarks/parallel_fit.py``: the recipe's networks one after the other or side by side."""

import json
import sys

from _benchmarks import load_benchmark

from disyre_sk.datasets import make_brain_cohort


def test_both_ways_are_timed_per_round_and_their_maps_compared(tmp_path, monkeypatch):
    bench = load_benchmark("parallel_fit")
    monkeypatch.setattr(
        bench,
        "cohort",
        lambda seed: make_brain_cohort(
            n_healthy=3, n_test=2, voxel_size=8.0, train_bases=("mni",), random_state=seed
        ),
    )
    out = tmp_path / "parallel.md"
    argv = ["parallel_fit.py", "--steps", "2", "--rounds", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    raw = json.loads(out.with_suffix(".json").read_text())["raw"]
    assert [len(v) for v in raw["seconds"].values()] == [2, 2]
    assert all(s > 0 for v in raw["seconds"].values() for s in v)
    assert raw["ratios"] == [a / b for a, b in zip(*(raw["seconds"][w] for w in bench.WAYS))]
    # The same draws either way: only the thread count's rounding differs.
    assert raw["max_map_difference"] < 1e-2
    text = out.read_text()
    assert "| round | one after the other (n_jobs=None), s | side by side (n_jobs=2), s |" in text
