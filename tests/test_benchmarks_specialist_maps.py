"""``benchmarks/specialist_maps.py``: a small-anomaly network's map added to the demo's."""

import numpy as np
import pytest
from _benchmarks import load_benchmark


def test_combined_maps_are_sums_at_each_weight_and_the_maximum():
    bench = load_benchmark("specialist_maps")
    demo = np.array([[0.0, 2.0], [1.0, -1.0]])
    special = np.array([[4.0, 0.0], [1.0, 3.0]])
    maps = bench.combined(demo, special, (0.25, 1.0))
    assert list(maps) == [
        "specialist",
        "demo + 0.25 x specialist",
        "demo + 1 x specialist",
        "max(demo, specialist)",
    ]
    np.testing.assert_array_equal(maps["demo + 0.25 x specialist"], [[1.0, 2.0], [1.25, -0.25]])
    np.testing.assert_array_equal(maps["demo + 1 x specialist"], demo + special)
    np.testing.assert_array_equal(maps["max(demo, specialist)"], [[4.0, 2.0], [1.0, 3.0]])
    assert maps["specialist"] is special
    named = bench.combined(demo, special, (0.5,), "specialist p16")
    assert list(named) == [
        "specialist p16",
        "demo + 0.5 x specialist p16",
        "max(demo, specialist p16)",
    ]


def test_the_specialist_trains_on_small_sharp_bright_anomalies_with_the_demo_recipe():
    from disyre_sk.corruption import DAGCorruption

    bench = load_benchmark("specialist_maps")
    recipes = load_benchmark("demo_recipes")
    c, default = bench.specialist_corruption(), DAGCorruption()
    assert c.p_bright == 1.0
    assert c.size_range[1] < default.size_range[1] and c.sigma_range[1] < default.sigma_range[1]
    # The same anomalies as demo_recipes.py's smallbright recipe, there a quarter of them.
    mixture = recipes.CORRUPTIONS["dag_smallbright"]()
    assert repr(mixture.corruptions[1]) == repr(c)
    assert (bench.BATCH, bench.STEPS, {}) == recipes.MAP_RECIPES["b16x1000"]


def test_run_gives_a_row_per_map_and_test_set(monkeypatch):
    bench = load_benchmark("specialist_maps")
    monkeypatch.setattr(bench, "BATCH", 2)
    monkeypatch.setattr(bench, "STEPS", 2)
    tiny = dict(n_healthy=2, n_test=2, voxel_size=8.0, train_bases=("mni",), test_bases=("colin",))
    settings = dict(bench.SETTINGS, widths=(4, 8), patch_size=8, map_median=0)
    rows = bench.run(0, weights=(0.5,), new_test=2, cohort_settings=tiny, settings=settings)
    names = [r["method"] for r in rows]
    maps = ["demo", "specialist", "demo + 0.5 x specialist", "max(demo, specialist)"]
    assert names[:4] == maps
    assert [n for n in names if n.endswith(", new 2")][:4] == [m + ", new 2" for m in maps]
    by_name = {r["method"]: r for r in rows}
    both = by_name["demo + 0.5 x specialist"]["fit_s"]
    assert both == by_name["demo"]["fit_s"] + by_name["specialist"]["fit_s"] > 0
    assert all(0 <= r["pixel_ap"] <= 1 for r in rows)


def test_specialist_recipes_differ_only_in_steps_and_patch():
    bench = load_benchmark("specialist_maps")
    base, steps = bench.specialist_settings("b16x1000", bench.SETTINGS)
    assert steps == bench.STEPS and repr(base["corruption"]) == repr(bench.specialist_corruption())
    small, steps = bench.specialist_settings("p16_b16x500", bench.SETTINGS)
    assert steps == 500 and small["patch_size"] == 16
    assert {k for k in small if small[k] != base[k] and k != "corruption"} == {"patch_size"}
    # The same anomalies in pixels: a box twice the fraction of a patch half the side.
    c = small["corruption"]
    assert c.box_fraction * 16 == base["corruption"].box_fraction * 32
    assert c.size_range == base["corruption"].size_range and c.p_bright == 1.0
    # A fresh corruption per call.
    assert bench.specialist_settings("p16_b16x500", {})[0]["corruption"] is not c


def test_run_names_each_specialist_when_several_are_fitted(monkeypatch):
    bench = load_benchmark("specialist_maps")
    monkeypatch.setattr(bench, "BATCH", 2)
    monkeypatch.setattr(bench, "STEPS", 2)
    monkeypatch.setitem(bench.SPECIALISTS, "b16x500", (2, {}))
    tiny = dict(n_healthy=2, n_test=2, voxel_size=8.0, train_bases=("mni",), test_bases=("colin",))
    settings = dict(bench.SETTINGS, widths=(4, 8), patch_size=8, map_median=0)
    rows = bench.run(
        0,
        weights=(0.5,),
        cohort_settings=tiny,
        settings=settings,
        specialists=("b16x1000", "b16x500"),
    )
    names = [r["method"] for r in rows]
    assert names[:4] == [
        "demo",
        "specialist b16x1000",
        "demo + 0.5 x specialist b16x1000",
        "max(demo, specialist b16x1000)",
    ]
    assert "demo + 0.5 x specialist b16x500" in names and names.count("demo") == 1
    by_name = {r["method"]: r for r in rows}
    every = by_name["demo + 0.5 x every specialist"]
    assert every["fit_s"] == pytest.approx(
        by_name["demo"]["fit_s"]
        + by_name["specialist b16x1000"]["fit_s"]
        + by_name["specialist b16x500"]["fit_s"]
    )


def test_the_either_sign_specialist_doubles_the_batch_and_darkens_half_its_anomalies():
    bench = load_benchmark("specialist_maps")
    small, _ = bench.specialist_settings("p16_b16x500", bench.SETTINGS)
    both, steps = bench.specialist_settings("both_p16_b32x500", bench.SETTINGS)
    assert steps == 500 and both["batch_size"] == 32 and both["patch_size"] == 16
    assert both["corruption"].p_bright == 0.5
    assert repr(both["corruption"]) == repr(small["corruption"]).replace(
        "p_bright=1.0", "p_bright=0.5"
    )
