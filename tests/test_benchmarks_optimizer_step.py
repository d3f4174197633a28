"""``benchmarks/optimizer_step.py``: per-tensor, foreach and fused AdamW updates."""

from _benchmarks import load_benchmark


def test_each_update_is_timed_and_the_fused_one_trains_the_same_network():
    bench = load_benchmark("optimizer_step")
    res = bench.time_network(16, 2, steps=2, rounds=1)
    assert set(res["raw"]) == set(bench.UPDATES)
    assert all(res[name] > 0 and len(res["raw"][name]) == 2 for name in bench.UPDATES)
    # Float rounding only: the same optimiser, one kernel instead of a loop.
    assert bench.same_training(16, 2, n=5) < 1e-4
