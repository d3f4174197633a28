"""``benchmarks/demo_recipes.py`` measures the demo's own recipe: the two stay in step."""

from _benchmarks import load_benchmark

from disyre_sk._demo import QUICK, TEST_BASES, TRAIN_BASES


def test_the_benchmark_measures_the_demo_recipe():
    bench = load_benchmark("demo_recipes")
    demo = dict(QUICK["detector"])
    batch, steps = demo.pop("batch_size"), demo.pop("n_steps")
    assert demo.pop("warmup_steps") == steps // 10
    assert demo == bench.SETTINGS
    # The demo takes the recipe the benchmark chose, stopped earlier to fit its time.
    chosen_batch, chosen_steps, overrides = bench.RECIPES["b16x1200"]
    assert chosen_batch == batch and steps <= chosen_steps and overrides == {}
    assert bench.MAP_RECIPES["b16x1000"] == (batch, steps, {})
    assert all(len(o) == 1 for _, _, o in bench.MAP_RECIPES.values() if o)
    # Equal pixels per recipe: the comparison is updates, corruption and context, not data.
    side = demo["patch_size"]
    pixels = {b * s * o.get("patch_size", side) ** 2 for b, s, o in bench.RECIPES.values()}
    assert len(pixels) == 1
    cohort = dict(QUICK["cohort"], contrast="t2", train_bases=TRAIN_BASES, test_bases=TEST_BASES)
    assert cohort == bench.COHORT
