"""``benchmarks/demo_recipes.py`` measures the demo's own recipe: the two stay in step."""

import importlib.util
import sys
from pathlib import Path

from disyre_sk._demo import QUICK, TEST_BASES, TRAIN_BASES

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))  # the script imports its shared _common module


def _load(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_measures_the_demo_recipe():
    bench = _load("demo_recipes")
    demo = dict(QUICK["detector"])
    batch, steps = demo.pop("batch_size"), demo.pop("n_steps")
    assert demo.pop("warmup_steps") == steps // 10
    assert demo == bench.SETTINGS
    # The demo takes the recipe the benchmark chose, stopped earlier to fit its time.
    assert bench.RECIPES["b16x1200"][0] == batch and steps <= bench.RECIPES["b16x1200"][1]
    # Equal patches per recipe: the comparison is updates, not data.
    assert len({b * s for b, s in bench.RECIPES.values()}) == 1
    cohort = dict(QUICK["cohort"], contrast="t2", train_bases=TRAIN_BASES, test_bases=TEST_BASES)
    assert cohort == bench.COHORT
