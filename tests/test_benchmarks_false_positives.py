"""Checks of ``benchmarks/false_positives.py``'s attribution and ``bit_identity.py``'s
canonical form on hand-built cases, where the right answer is known exactly."""

import json

import numpy as np
import pytest
from _benchmarks import load_benchmark
from scipy import ndimage as ndi


@pytest.fixture(scope="module")
def fp():
    return load_benchmark("false_positives")


def _cube(shape=(10, 12, 12)):
    fg = np.zeros(shape, dtype=bool)
    fg[1:9, 2:10, 2:10] = True
    return fg


def test_rim_distance_is_scipy_city_block_in_plane(fp):
    fg = _cube()
    got = fp.rim_distance(fg)
    for z in range(fg.shape[0]):
        want = ndi.distance_transform_cdt(np.pad(fg[z], 1), metric="taxicab")[1:-1, 1:-1]
        np.testing.assert_array_equal(got[z], want)
    # The outermost ring of the 8 x 8 square is 1 from the background, its centre 4.
    assert got[4, 2, 5] == 1 and got[4, 5, 5] == 4


def test_uniform_hot_voxels_give_enrichment_one(fp):
    fg = _cube()
    rng = np.random.default_rng(0)
    scan = np.where(fg, rng.uniform(0.05, 1.0, fg.shape), 0.0)
    maps = np.where(fg, 1.0, 0.0)  # every voxel hot: each category's share is its share
    out = fp.enrichment(maps[None], scan[None], fg[None], 0.5, (0.0, 1.0))
    for name, v in out.items():
        if not name.startswith("_") and v["fg_share"] > 0:
            assert v["enrichment"] == pytest.approx(1.0)
    assert out["_hot_fraction"]["hot_share"] == 1.0


def test_hot_voxels_in_one_place_are_attributed_there(fp):
    fg = _cube()
    scan = np.where(fg, 0.4, 0.0)
    scan[1:3][fg[1:3]] = 1.0  # the two lowest slices saturate
    maps = np.zeros(fg.shape)
    maps[1:3] = fg[1:3] * 5.0
    out = fp.enrichment(maps[None], scan[None], fg[None], 1.0, (0.0, 1.0))
    share_fg = fg[1:3].sum() / fg.sum()
    sat = out["scaled intensity: >= 0.95"]
    assert sat["hot_share"] == 1.0 and sat["fg_share"] == pytest.approx(share_fg)
    assert sat["enrichment"] == pytest.approx(1 / share_fg)
    assert out["scaled intensity: 0.25-0.50"]["hot_share"] == 0.0
    # Eight slices of brain: the inferior fifth holds the first two of them.
    assert out["axial: inferior fifth"]["hot_share"] == 1.0


def test_slice_analysis_counts_lesion_slices_by_area(fp):
    fg = np.stack([_cube(), _cube()])
    masks = np.zeros(fg.shape, dtype=bool)
    masks[1, 4, 4:6, 4:6] = True  # 4 px: the small bin
    masks[1, 5, 3:9, 3:9] = True  # 36 px: the middle bin
    maps = np.where(fg, 1.0, 0.0)
    maps[1][masks[1]] = 10.0
    out = fp.slice_analysis(maps, masks, fg, np.array([True, False]))
    small, mid, large = out["by_lesion_area"].values()
    assert (small["n_slices"], mid["n_slices"], large["n_slices"]) == (1, 1, 0)
    assert small["slice_auroc"] == 1.0 and mid["slice_auroc"] == 1.0
    assert large["slice_auroc"] is None
    assert out["slice_auroc"] == 1.0


def test_exact_writes_floats_without_rounding():
    bi = load_benchmark("bit_identity")
    value = {"loss": [0.1, np.float32(1 / 3)], "n": np.int64(3), "a": np.arange(2.0)}
    text = json.dumps(bi.exact(value), sort_keys=True)
    back = json.loads(text)
    assert float.fromhex(back["loss"][0]) == 0.1
    assert float.fromhex(back["loss"][1]) == float(np.float32(1 / 3))
    assert back["n"] == 3 and [float.fromhex(v) for v in back["a"]] == [0.0, 1.0]
