"""``benchmarks/demo_recipes.py`` measures the demo's own recipe: the two stay in step."""

import numpy as np
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
    # The small-anomaly network that quality.py adds is the demo's.
    assert bench.SPECIALIST == QUICK["specialist"]
    assert bench.DARK == QUICK["dark"]


def test_training_recipes_change_one_setting_of_the_demo():
    bench = load_benchmark("demo_recipes")
    base = bench.MAP_RECIPES["b16x1000"]
    for batch, steps, overrides in bench.TRAINING_RECIPES.values():
        assert (batch, steps) == base[:2] and len(overrides) == 1
    small = bench.CORRUPTIONS["dag_small"]()
    assert small.size_range[0] < type(small)().size_range[0]
    noise = bench.CORRUPTIONS["dag_noise"]()
    names = [type(c).__name__ for c in noise.corruptions]
    assert names == ["DAGCorruption", "GaussianCorruption"] and noise.weights == (3.0, 1.0)
    bright = bench.CORRUPTIONS["dag_smallbright"]()
    default, small = bright.corruptions
    assert repr(default) == repr(type(default)()) and bright.weights == (3.0, 1.0)
    assert small.p_bright == 1.0 and small.size_range[0] < default.size_range[0]
    assert small.size_range[1] < default.size_range[1]
    assert small.sigma_range[1] < default.sigma_range[1]
    sharp = bench.CORRUPTIONS["dag_smallsharp"]()
    assert sharp.corruptions[1].p_bright == 0.5 and sharp.weights == bright.weights
    assert repr(sharp.corruptions[1]) == repr(small).replace("p_bright=1.0", "p_bright=0.5")
    eighth = bench.CORRUPTIONS["dag_smallbright8"]()
    assert eighth.weights == (7.0, 1.0) and repr(eighth.corruptions[1]) == repr(small)
    # DAG itself, its bias darkening only.
    dark = bench.CORRUPTIONS["dag_dark"]()
    assert repr(dark) == repr(type(default)()).replace("p_bright=0.5", "p_bright=0.0")


def test_more_training_subjects_keep_the_first_ones_and_the_test_set():
    from disyre_sk.datasets import make_brain_cohort

    bench = load_benchmark("demo_recipes")
    settings = dict(n_healthy=2, n_test=2, voxel_size=8.0)
    cohort = make_brain_cohort(**settings, random_state=0)
    assert bench.training_subjects(cohort, settings, 0, None) is cohort.X_train
    larger = bench.training_subjects(cohort, settings, 0, 4)
    assert len(larger) == 4
    np.testing.assert_array_equal(larger[:2], cohort.X_train)
    assert not np.array_equal(larger[2], larger[0])


def test_conditioning_recipes_rebuild_the_published_network_and_severities():
    bench = load_benchmark("demo_recipes")
    base = bench.MAP_RECIPES["b16x1000"]
    add = bench.CONDITIONING_RECIPES["add_s25_50_b16x1000"]
    film = bench.CONDITIONING_RECIPES["film_s25_50_b16x1000"]
    assert add[:2] == film[:2] == base[:2]
    assert add[2] == {"network": "add", "severities": (0.25, 0.5)}
    assert film[2] == {"severities": (0.25, 0.5)}
    net = bench.NETWORKS["add"](widths=(8, 16), attention_levels=())
    assert net.config["conditioning"] == "add"


def test_new_test_subjects_get_rows_of_their_own(monkeypatch):
    bench = load_benchmark("demo_recipes")
    tiny = dict(n_healthy=2, n_test=2, voxel_size=8.0, train_bases=("mni",), test_bases=("colin",))
    monkeypatch.setitem(
        bench.ALL_RECIPES,
        "tiny",
        (2, 2, {"network": "add", "widths": (4, 8), "patch_size": 8, "map_median": 0}),
    )
    rows = bench.run("tiny", 0, tiny, new_test=2)
    names = [r["method"] for r in rows]
    assert names[:2] == ["DISYRE tiny, location z", "DISYRE tiny, plain"]
    assert "DISYRE tiny, location z, new 2" in names
    assert sum(n.endswith(", new 2") for n in names) == len(names) // 2


def test_the_benchmarks_build_the_demos_model_as_the_demo_builds_it():
    from disyre_sk._demo import build_model

    bench = load_benchmark("demo_recipes")
    for n_steps in (1000, 400, 7):
        params = dict(bench.SETTINGS, batch_size=16, n_steps=n_steps, warmup_steps=n_steps // 10)
        ours = bench.demo_model_of(params)
        demo, _ = build_model(
            params, QUICK["dark"], QUICK["specialist"], combination=QUICK["combination"]
        )
        assert [n for n, _ in ours.detectors] == [n for n, _ in demo.detectors]
        assert ours.weights == demo.weights and ours.combination == demo.combination
        for (_, a), (_, b) in zip(ours.detectors, demo.detectors):
            assert repr(sorted(a.get_params().items())) == repr(sorted(b.get_params().items()))
    alone = bench.demo_model_of(params, specialist=False)
    assert [n for n, _ in alone.detectors] == ["bright", "dark"]
