"""Checks of ``benchmarks/demo_intervals.py``: its intervals are the demo's, its rows
cover both test sets."""

import numpy as np
import pytest
from _benchmarks import load_benchmark, tiny_demo_folder
from sklearn.utils import Bunch

from disyre_sk._demo import auroc_intervals
from disyre_sk.metrics import bootstrap_interval, sample_auroc


@pytest.fixture(scope="module")
def di():
    return load_benchmark("demo_intervals")


def _cohort(seed=0):
    rng = np.random.default_rng(seed)
    families = ["healthy", "tumour", "healthy", "foci", "stroke", "healthy"]
    shape = (len(families), 6, 10, 10)
    fg = np.zeros(shape, dtype=bool)
    fg[:, :, 2:8, 2:8] = True
    masks = np.zeros(shape, dtype=bool)
    for i, f in enumerate(families):
        if f != "healthy":
            masks[i, 2 : 2 + i % 3 + 1, 3:6, 3:6] = True
    maps = (rng.random(shape) + 2.0 * masks) * fg
    return maps, Bunch(brain_masks_test=fg, masks_test=masks, families_test=families)


def test_figures_and_intervals_are_the_demos(di):
    maps, cohort = _cohort()
    got = di.auroc_with_intervals(maps, cohort, seed=3)
    want = auroc_intervals(maps, cohort, random_state=3)
    for key in ("slice_auroc", "volume_auroc"):
        assert got[key + "_interval"] == pytest.approx(want[key])
        low, high = got[key + "_interval"]
        assert low <= high
    lesioned = np.array([f != "healthy" for f in cohort.families_test])
    volume = np.sort(maps.reshape(len(maps), -1), axis=1)[:, -3:].mean(axis=1)
    assert got["volume_auroc"] == sample_auroc(volume, lesioned)
    # The seed is the demo's: another seed draws other resamples.
    assert di.auroc_with_intervals(maps, cohort, seed=4) != got
    assert got["volume_auroc_interval"] == pytest.approx(
        bootstrap_interval(lambda i: sample_auroc(volume[i], lesioned[i]), lesioned, random_state=3)
    )


def test_one_run_scores_both_test_sets_and_the_report_shows_each(di, tmp_path):
    tiny_demo_folder(tmp_path, window_size="slice")
    run = di.one_run(tmp_path, n_test=3)
    assert list(run["sets"]) == ["demo's, 3", "new, 3"]
    for part in run["sets"].values():
        assert part["healthy"] + part["lesioned"] == 3
        methods = [r["method"] for r in part["rows"]]
        assert methods == [
            "DISYRE",
            "intensity threshold (bright)",
            "intensity threshold |x - median|",
        ]
    text = di.report([run])
    assert text.count("| 1 | demo's, 3 |") == 3 and text.count("| 1 | new, 3 |") == 3
    assert "### DISYRE's volume scores of the lesioned volumes (demo's, 3)" in text
    for v in run["sets"]["demo's, 3"]["volumes"]:
        assert f"| 1 | {v['volume']} | {v['family']} | {v['lesion_voxels']} |" in text
    r = run["sets"]["new, 3"]["rows"][0]
    low, high = r["slice_auroc_interval"]
    assert f"{r['slice_auroc']:.3f} ({low:.3f}-{high:.3f})" in text


def test_volume_rows_count_the_healthy_volumes_that_outscore_each_lesioned_one(di):
    maps, cohort = _cohort()
    scores = np.sort(maps.reshape(len(maps), -1), axis=1)[:, -3:].mean(axis=1)
    rows = di.volume_rows(maps, cohort)
    assert [r["family"] for r in rows] == ["tumour", "foci", "stroke"]
    healthy = scores[[0, 2, 5]]
    for r in rows:
        i = r["volume"]
        assert r["score"] == pytest.approx(scores[i])
        assert r["healthy_at_or_above"] == int((healthy >= scores[i]).sum())
        assert r["lesion_voxels"] == int(cohort.masks_test[i].sum())
        assert r["top_1pct_voxels"] == 3  # 1 % of the 6 x 6 x 6 = 216 brain voxels, rounded up
    # A lesioned volume pushed below every healthy one is counted against all three.
    maps[1] = 0.0
    assert di.volume_rows(maps, cohort)[0]["healthy_at_or_above"] == 3
