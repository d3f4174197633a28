"""Checks of ``benchmarks/demo_test_size.py``'s bookkeeping on hand-built runs."""

import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def dts():
    return load_benchmark("demo_test_size")


def _meta():
    fam = {"tumour": 0.6, "stroke": 0.3, "foci": 0.01, "cavity": 0.5}
    return {
        "results": [
            dict(
                method="DISYRE (dag, ensemble)",
                pixel_ap=0.5,
                slice_auroc=0.7,
                volume_auroc=0.9,
                pixel_ap_per_family=fam,
            ),
            dict(
                method="intensity threshold (bright)",
                pixel_ap=0.05,
                slice_auroc=0.5,
                volume_auroc=0.5,
                pixel_ap_per_family={"tumour": 0.1},
            ),
        ]
    }


def test_demo_rows_keep_the_demos_figures_and_mark_missing_families(dts):
    rows = dts.demo_rows(_meta())
    assert rows[0]["method"] == "DISYRE" and rows[0]["pixel_ap"] == 0.5
    assert rows[0]["foci"] == 0.01
    assert rows[1]["method"] == "intensity threshold (bright)"
    assert rows[1]["tumour"] == 0.1 and rows[1]["stroke"] is None


def test_report_lists_disyre_per_seed_sorted_and_every_row(dts):
    def run(seed, ap):
        demo = dts.demo_rows(_meta())
        larger = [dict(demo[0], pixel_ap=ap), dict(demo[1])]
        return dict(
            seed=seed, families=["healthy"] * 12 + ["tumour"] * 24, demo=demo, larger=larger
        )

    text = dts.report([run(0, 0.3), run(1, 0.1), run(2, 0.2)], 36)
    assert "| new, 36 | 0.100 / 0.200 / 0.300 |" in text
    assert "| demo's, 12 | 0.500 / 0.500 / 0.500 |" in text
    assert "(12 healthy)" in text
    # Three seeds, two test sets, two methods each; the missing stroke AP is a dash.
    assert text.count("| intensity threshold (bright) |") == 6
    assert "| 0.100 | — | — | — |" in text
    # No run holds an infarct: no column for it.
    assert "infarct" not in text and "| cavity |" in text


def test_larger_rows_map_with_the_demos_whole_model(dts, tmp_path):
    from _benchmarks import TINY_DEMO_META, tiny_demo_folder

    tiny_demo_folder(tmp_path, window_size="slice")  # two networks, as the demo's model
    rows, families = dts.larger_rows(tmp_path, TINY_DEMO_META, 2)
    assert rows[0]["method"] == "DISYRE" and len(families) == 2
    assert 0 <= rows[0]["pixel_ap"] <= 1 and 0 <= rows[0]["slice_auroc"] <= 1
