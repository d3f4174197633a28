"""Tests of disyre_sk.metrics: hand-computed cases, equality with scikit-learn, streaming."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.ensemble import IsolationForest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)
from sklearn.model_selection import cross_val_score

from disyre_sk.metrics import (
    PixelMetricAccumulator,
    _core,
    best_dice,
    best_dice_scorer,
    dice_at_fpr,
    dice_at_threshold,
    per_volume_scores,
    pixel_ap_scorer,
    pixel_auroc,
    pixel_average_precision,
    pixel_metrics,
    sample_ap_scorer,
    sample_auroc,
    sample_auroc_scorer,
    sample_average_precision,
    slice_labels,
    slice_scores,
    threshold_at_fpr,
)

TINY_MAPS = np.array([[0.9, 0.8, 0.3, 0.1]])
TINY_MASKS = np.array([[True, False, True, False]])


def _sk_best_dice(y, s):
    """Best Dice from sklearn's precision-recall curve: max of 2PR / (P + R)."""
    p, r, _ = precision_recall_curve(y, s)
    p, r = p[:-1], r[:-1]  # the last point (P=1, R=0) has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return d.max()


def _random_case(seed, shape=(3, 12, 10), dtype=np.float64, levels=None, lesion=0.15):
    rng = np.random.default_rng(seed)
    masks = rng.random(shape) < lesion
    if levels is None:
        maps = rng.random(shape) + 0.7 * masks
    else:  # quantised scores: many ties, also across classes
        maps = rng.integers(0, levels, size=shape) + 2 * masks * (rng.random(shape) < 0.5)
    foreground = rng.random(shape) < 0.8
    return maps.astype(dtype), masks, foreground


# -- hand-computed ---------------------------------------------------------------------
def test_tiny_case_by_hand():
    # descending: 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-)
    # AP = 1/2 * 1/1 + 1/2 * 2/3; best Dice at >= 0.3: 2*2 / (2*2 + 1); AUROC 3 of 4 pairs
    assert pixel_average_precision(TINY_MAPS, TINY_MASKS) == pytest.approx(5 / 6)
    assert best_dice(TINY_MAPS, TINY_MASKS) == (pytest.approx(0.8), 0.3)
    assert pixel_auroc(TINY_MAPS, TINY_MASKS) == pytest.approx(0.75)
    assert dice_at_threshold(TINY_MAPS, TINY_MASKS, 0.85) == pytest.approx(2 / 3)
    assert dice_at_threshold(TINY_MAPS, TINY_MASKS, 0.9) == pytest.approx(2 / 3)  # >=
    assert dice_at_threshold(TINY_MAPS, TINY_MASKS, 0.95) == 0.0


def test_ties_by_hand():
    # two voxels tie at 0.5, one positive one negative: they enter together
    maps = np.array([[0.5, 0.5, 0.2]])
    masks = np.array([[True, False, False]])
    assert pixel_average_precision(maps, masks) == pytest.approx(0.5)
    assert pixel_auroc(maps, masks) == pytest.approx(0.75)  # the tied pair counts 1/2
    assert best_dice(maps, masks) == (pytest.approx(2 / 3), 0.5)


def test_perfect_and_inverted_rankings():
    maps = np.array([[4.0, 3.0, 2.0, 1.0]])
    assert pixel_average_precision(maps, [[1, 1, 0, 0]]) == 1.0
    assert best_dice(maps, [[1, 1, 0, 0]]) == (1.0, 3.0)
    assert pixel_auroc(maps, [[1, 1, 0, 0]]) == 1.0
    assert pixel_auroc(maps, [[0, 0, 1, 1]]) == 0.0


# -- equality with scikit-learn --------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("levels", [None, 4])
def test_equals_sklearn(seed, dtype, levels):
    maps, masks, fg = _random_case(seed, dtype=dtype, levels=levels)
    y, s = masks[fg], maps[fg]
    assert pixel_average_precision(maps, masks, fg) == pytest.approx(
        average_precision_score(y, s), rel=1e-12, abs=1e-12
    )
    assert pixel_auroc(maps, masks, fg) == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    dice, threshold = best_dice(maps, masks, fg)
    assert dice == pytest.approx(_sk_best_dice(y, s), rel=1e-12)
    # the returned threshold reproduces the Dice, and it is one of the map values
    assert dice_at_threshold(maps, masks, threshold, fg) == pytest.approx(dice, rel=1e-12)
    assert threshold in set(s.tolist())


@settings(max_examples=60, deadline=None)
@given(
    scores=hnp.arrays(np.int8, st.integers(2, 40), elements=st.integers(0, 5)),
    data=st.data(),
)
def test_property_equals_sklearn_with_ties(scores, data):
    labels = data.draw(hnp.arrays(bool, scores.shape))
    if labels.all() or not labels.any():
        labels = labels.copy()
        labels[0], labels[-1] = True, False
    maps, masks = scores[None].astype(np.float64), labels[None]
    assert pixel_average_precision(maps, masks) == pytest.approx(
        average_precision_score(labels, scores), rel=1e-12
    )
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(labels, scores), rel=1e-12)
    assert best_dice(maps, masks)[0] == pytest.approx(_sk_best_dice(labels, scores), rel=1e-12)


def test_pooled_blocks_equal_single_pass(monkeypatch):
    # pooled metrics are fed in blocks of the first axis; force many tiny blocks
    maps, masks, fg = _random_case(7, shape=(9, 6, 5))
    expected = pixel_metrics(maps, masks, fg)
    monkeypatch.setattr(_core, "_POOLED_BLOCK", 7)
    got = pixel_metrics(maps, masks, fg)
    for key in ("average_precision", "best_dice", "best_dice_threshold", "auroc"):
        assert got[key] == pytest.approx(expected[key], rel=1e-12)
    assert dice_at_threshold(maps, masks, 0.9, fg) == pytest.approx(
        _metrics_dice(maps[fg], masks[fg], 0.9)
    )


def _metrics_dice(v, m, t):
    pred = v >= t
    return 2 * np.sum(pred & m) / (pred.sum() + m.sum())


def test_integer_and_float16_maps():
    maps, masks, _ = _random_case(3, levels=6)
    ref = pixel_average_precision(maps.astype(np.float64), masks)
    assert pixel_average_precision(maps.astype(np.int16), masks) == pytest.approx(ref)
    assert pixel_average_precision(maps.astype(np.float16), masks) == pytest.approx(ref)
    assert pixel_average_precision(maps, masks.astype(np.uint8)) == pytest.approx(ref)


def test_float32_and_float64_maps_are_read_in_place():
    # maps are whole volumes: only float16 is widened, wider floats are never copied
    for dtype in (np.float32, np.float64):
        maps = np.zeros((2, 3), dtype=dtype)
        assert _core.check_maps(maps) is maps
    assert _core.check_maps(np.zeros((2, 3), dtype=np.float16)).dtype == np.float32


# -- foreground ------------------------------------------------------------------------
def test_foreground_excludes_voxels():
    maps = np.array([[0.9, 0.99, 0.5, 0.1]])
    masks = np.array([[True, False, False, False]])
    fg = np.array([[True, False, True, True]])
    assert pixel_average_precision(maps, masks) == pytest.approx(0.5)
    assert pixel_average_precision(maps, masks, fg) == 1.0
    # values outside the foreground are never read, even non-finite ones
    maps_nan = maps.copy()
    maps_nan[0, 1] = np.nan
    assert pixel_average_precision(maps_nan, masks, fg) == 1.0
    assert best_dice(maps_nan, masks, fg) == (1.0, 0.9)
    assert pixel_auroc(maps_nan, masks, fg) == 1.0
    assert threshold_at_fpr(maps_nan, 0.0, fg) > 0.9
    # a lesion voxel outside the foreground does not count
    masks2 = np.array([[True, True, False, False]])
    assert pixel_average_precision(maps, masks2, fg) == 1.0


# -- aggregation -----------------------------------------------------------------------
def test_per_volume_differs_from_pooled():
    # each volume ranks its own lesion first, but volume 1's healthy voxel outscores
    # volume 0's lesion, and volume 2 has no lesion at all
    maps = np.array([[0.5, 0.1], [5.0, 1.0], [0.3, 0.2]])
    masks = np.array([[1, 0], [1, 0], [0, 0]], dtype=bool)
    assert pixel_average_precision(maps, masks) == pytest.approx(5 / 6)
    assert pixel_average_precision(maps, masks, aggregation="per_volume") == 1.0
    assert best_dice(maps, masks, aggregation="per_volume")[0] == 1.0
    assert np.isnan(best_dice(maps, masks, aggregation="per_volume")[1])
    assert best_dice(maps, masks)[0] == pytest.approx(0.8)
    assert pixel_auroc(maps, masks, aggregation="per_volume") == 1.0
    assert pixel_auroc(maps, masks) == pytest.approx(7 / 8)
    # at 0.4: volume 0 is segmented perfectly, volume 1 with one false positive
    assert dice_at_threshold(maps, masks, 0.4, aggregation="per_volume") == pytest.approx(5 / 6)
    assert dice_at_threshold(maps, masks, 0.4) == pytest.approx(0.8)
    np.testing.assert_array_equal(per_volume_scores(maps, masks), [1.0, 1.0, np.nan])
    np.testing.assert_array_equal(
        per_volume_scores(maps, masks, metric="best_dice_threshold"), [0.5, 5.0, np.nan]
    )
    np.testing.assert_array_equal(
        per_volume_scores(maps, masks, metric="dice_at_threshold", threshold=0.4),
        [1.0, 2 / 3, np.nan],
    )
    pooled = pixel_metrics(maps, masks)
    per_volume = pixel_metrics(maps, masks, aggregation="per_volume")
    assert pooled["aggregation"] == "pooled" and pooled["n_volumes"] == 3
    assert per_volume["aggregation"] == "per_volume" and per_volume["n_volumes"] == 2


def test_per_volume_dice_at_threshold_scores_every_volume():
    # 4 volumes of 3 x 2 voxels: the first axis, not the second, counts the volumes
    rng = np.random.default_rng(4)
    maps = rng.random((4, 3, 2))
    masks = rng.random((4, 3, 2)) < 0.5
    masks[:, 0, 0] = True  # every volume has a lesion, so every Dice is defined
    got = per_volume_scores(maps, masks, metric="dice_at_threshold", threshold=0.5)
    # Dice is the F1 score of the binarised map
    expected = [
        f1_score(masks[i].ravel(), maps[i].ravel() >= 0.5, zero_division=0.0) for i in range(4)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_per_volume_is_mean_of_sklearn_per_volume(seed):
    maps, masks, fg = _random_case(seed, shape=(4, 9, 9))
    masks[2] = False  # a lesion-free volume is left out of the mean
    expected = np.mean(
        [average_precision_score(masks[i][fg[i]], maps[i][fg[i]]) for i in (0, 1, 3)]
    )
    got = pixel_average_precision(maps, masks, fg, aggregation="per_volume")
    assert got == pytest.approx(expected, rel=1e-12)


# -- label-free threshold --------------------------------------------------------------
@pytest.mark.parametrize("fpr", [0.0, 0.001, 0.01, 0.05, 0.2])
def test_threshold_at_fpr_gives_stated_fpr(fpr):
    rng = np.random.default_rng(0)
    healthy = rng.random((3, 20, 25)).astype(np.float32)  # 1500 voxels, no ties
    t = threshold_at_fpr(healthy, fpr)
    n_over = np.count_nonzero(healthy >= t)
    assert n_over == int(np.floor(fpr * healthy.size + 1e-9))
    if n_over < healthy.size:  # the lowest such threshold: one value lower breaks it
        below = healthy[healthy < t].max()
        assert np.count_nonzero(healthy >= below) > fpr * healthy.size


def test_threshold_at_fpr_with_ties_and_foreground():
    healthy = np.repeat(np.arange(10.0), 10).reshape(1, 100)  # each value 10 times
    t = threshold_at_fpr(healthy, fpr=0.15)  # 9 would give 10 %, 8 gives 20 %
    assert t == 9.0
    assert threshold_at_fpr(healthy, fpr=0.05) > 9.0  # no tie-free split: nothing above
    fg = healthy < 5
    assert threshold_at_fpr(healthy, 0.2, fg) == 4.0


def test_threshold_at_fpr_tolerance_absorbs_rounding_only():
    healthy = np.arange(1000.0).reshape(1, 1000)  # one voxel is 0.1 % of the voxels
    # a rate a relative 1.5e-9 below one voxel's share allows no false positive at all
    fpr = (1 - 1.5e-9) / 1000
    exact = PixelMetricAccumulator().update(healthy)
    for t in (threshold_at_fpr(healthy, fpr), exact.threshold_at_fpr(fpr)):
        assert np.count_nonzero(healthy >= t) == 0
    # 0.001 * 1000 is one voxel: the top score alone reaches the threshold
    assert threshold_at_fpr(healthy, 0.001) == 999.0


def test_dice_at_fpr_matches_threshold_then_dice():
    maps, masks, fg = _random_case(1)
    healthy = np.random.default_rng(5).random((2, 12, 10))
    dice, t = dice_at_fpr(maps, masks, healthy, fpr=0.02, foreground=fg)
    assert t == threshold_at_fpr(healthy, 0.02)
    assert dice == pytest.approx(_metrics_dice(maps[fg], masks[fg], t))
    m = pixel_metrics(maps, masks, fg, healthy_maps=healthy, fpr=0.02)
    assert (m["dice_at_fpr"], m["fpr_threshold"], m["fpr"]) == (dice, t, 0.02)


def test_threshold_is_compared_exactly_in_float32():
    # a float64 threshold just above a float32 value must exclude it
    v = np.float32(0.1)
    maps = np.array([[v, 0.0]], dtype=np.float32)
    masks = np.array([[True, False]])
    assert dice_at_threshold(maps, masks, float(v)) == 1.0
    assert dice_at_threshold(maps, masks, float(v) + 1e-12) == 0.0
    acc = PixelMetricAccumulator().update(maps, masks)
    assert acc.dice_at_threshold(float(v) + 1e-12) == 0.0


# -- streaming accumulator -------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_accumulator_exact_equals_functions(seed):
    maps, masks, fg = _random_case(seed, dtype=np.float32)
    acc = PixelMetricAccumulator()
    for i in range(len(maps)):
        acc.update(maps[i], masks[i], fg[i])
    acc.update(np.random.default_rng(9).random((12, 10)))  # a healthy volume
    healthy_all = np.concatenate([maps, np.random.default_rng(9).random((1, 12, 10))])
    masks_all = np.concatenate([masks, np.zeros((1, 12, 10), dtype=bool)])
    fg_all = np.concatenate([fg, np.ones((1, 12, 10), dtype=bool)])
    pooled = pixel_metrics(healthy_all, masks_all, fg_all)
    res = acc.result()
    for key in ("average_precision", "best_dice", "best_dice_threshold", "auroc"):
        assert res[key] == pytest.approx(pooled[key], rel=1e-12)
    per = pixel_metrics(healthy_all, masks_all, fg_all, aggregation="per_volume")
    res = acc.result("per_volume")
    assert res["aggregation"] == "per_volume" and res["n_volumes"] == 3
    for key in ("average_precision", "best_dice", "auroc"):
        assert res[key] == pytest.approx(per[key], rel=1e-12)
    scores = acc.per_volume_scores()
    np.testing.assert_allclose(
        scores["average_precision"], per_volume_scores(healthy_all, masks_all, fg_all)
    )
    assert np.isnan(scores["average_precision"][-1])
    assert acc.n_volumes == 4 and acc.n_voxels == fg_all.sum()
    assert acc.n_positive == (masks_all & fg_all).sum()
    assert acc.dice_at_threshold(1.0) == pytest.approx(
        dice_at_threshold(healthy_all, masks_all, 1.0, fg_all)
    )
    assert acc.dice_at_threshold(1.0, "per_volume") == pytest.approx(
        dice_at_threshold(healthy_all, masks_all, 1.0, fg_all, "per_volume")
    )


def test_accumulator_threshold_at_fpr_on_healthy_volumes():
    rng = np.random.default_rng(2)
    healthy = rng.random((4, 10, 10))
    acc = PixelMetricAccumulator()
    for h in healthy:
        acc.update(h)
    assert acc.threshold_at_fpr(0.03) == threshold_at_fpr(healthy, 0.03)
    with pytest.raises(ValueError, match="positive"):
        acc.result()


@pytest.mark.parametrize("seed", range(3))
def test_histogram_exact_on_quantised_scores(seed):
    n_bins = 64
    rng = np.random.default_rng(seed)
    edges = np.arange(n_bins + 1) / n_bins
    shape = (3, 10, 12)
    masks = rng.random(shape) < 0.2
    bins = np.clip(rng.integers(0, 40, shape) + 20 * masks, 0, n_bins - 1)
    maps = edges[bins]  # every score on a bin edge
    fg = rng.random(shape) < 0.9
    hist = PixelMetricAccumulator("histogram", n_bins=n_bins, value_range=(0.0, 1.0))
    exact = PixelMetricAccumulator()
    for i in range(3):
        hist.update(maps[i], masks[i], fg[i])
        exact.update(maps[i], masks[i], fg[i])
    for agg in ("pooled", "per_volume"):
        rh, re = hist.result(agg), exact.result(agg)
        for key in ("average_precision", "best_dice", "auroc"):
            assert rh[key] == pytest.approx(re[key], rel=1e-12)
    assert hist.result()["best_dice_threshold"] == exact.result()["best_dice_threshold"]
    for fpr in (0.0, 0.01, 0.1, 0.3):
        assert hist.threshold_at_fpr(fpr) == exact.threshold_at_fpr(fpr)
    t = edges[30]
    assert hist.dice_at_threshold(t) == pytest.approx(exact.dice_at_threshold(t))
    assert hist.dice_at_threshold(t, "per_volume") == pytest.approx(
        exact.dice_at_threshold(t, "per_volume")
    )
    assert hist.n_out_of_range == 0


def test_histogram_close_on_continuous_scores():
    rng = np.random.default_rng(0)
    hist = PixelMetricAccumulator("histogram", n_bins=2**16, value_range=(0.0, 2.0))
    exact = PixelMetricAccumulator()
    for _ in range(4):
        masks = rng.random((32, 32)) < 0.1
        maps = (rng.random((32, 32)) + 0.5 * masks * rng.random((32, 32))).astype(np.float32)
        hist.update(maps, masks)
        exact.update(maps, masks)
    rh, re = hist.result(), exact.result()
    for key in ("average_precision", "best_dice", "auroc"):
        assert abs(rh[key] - re[key]) < 1e-3
    assert abs(rh["best_dice_threshold"] - re["best_dice_threshold"]) < 2 / 2**16 + 1e-12


def test_histogram_out_of_range_is_clipped_and_counted():
    acc = PixelMetricAccumulator("histogram", n_bins=4, value_range=(0.0, 1.0))
    acc.update(np.array([-1.0, 0.3, 1.0, 2.0]), np.array([False, False, True, True]))
    assert acc.n_out_of_range == 2
    assert acc.result()["average_precision"] == 1.0


@pytest.mark.parametrize("value_range", [(1.0, 3.0), (-2.0, 2.0)])
def test_histogram_exact_on_edges_of_a_range_away_from_zero(value_range):
    low, high = value_range
    n_bins = 8
    rng = np.random.default_rng(1)
    masks = rng.random((2, 6, 5)) < 0.3
    bins = np.clip(rng.integers(0, 6, masks.shape) + 2 * masks, 0, n_bins - 1)
    maps = low + (high - low) / n_bins * bins  # bin edges, exact in binary
    hist = PixelMetricAccumulator("histogram", n_bins=n_bins, value_range=value_range)
    exact = PixelMetricAccumulator()
    for i in range(2):
        hist.update(maps[i], masks[i])
        exact.update(maps[i], masks[i])
    res = hist.result()
    y, s = masks.ravel(), maps.ravel()
    assert res["average_precision"] == pytest.approx(average_precision_score(y, s), rel=1e-12)
    assert res["auroc"] == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    assert res["best_dice"] == pytest.approx(_sk_best_dice(y, s), rel=1e-12)
    assert res["best_dice_threshold"] == exact.result()["best_dice_threshold"]
    for fpr in (0.05, 0.3):
        assert hist.threshold_at_fpr(fpr) == exact.threshold_at_fpr(fpr)
    assert hist.n_out_of_range == 0


def test_histogram_score_on_the_top_inner_edge_falls_in_the_top_bin():
    # bins of (0.3, 0.9): [0.3, 0.5), [0.5, 0.7), [0.7, 0.9]. For x = 0.7 the float
    # formula (x - 0.3) * 3 / 0.6 gives 1.9999999999999996, one bin low; the score still
    # belongs to the top bin, apart from the negatives at 0.5
    acc = PixelMetricAccumulator("histogram", n_bins=3, value_range=(0.3, 0.9))
    acc.update(np.array([0.3, 0.5, 0.5, 0.7, 0.7]), np.array([0, 0, 0, 1, 1]))
    res = acc.result()
    assert (res["average_precision"], res["best_dice"], res["auroc"]) == (1.0, 1.0, 1.0)
    assert res["best_dice_threshold"] == 0.7


def test_single_bin_histogram_counts_scores_on_both_sides_of_the_range():
    acc = PixelMetricAccumulator("histogram", n_bins=1, value_range=(0.0, 1.0))
    acc.update(np.array([-0.5, 0.2, 0.6, 1.5]), np.array([True, False, False, True]))
    assert acc.n_out_of_range == 2 and acc.n_voxels == 4
    # one bin: every score ties, as if all four were equal
    y, tied = np.array([1, 0, 0, 1]), np.zeros(4)
    res = acc.result()
    assert res["average_precision"] == pytest.approx(average_precision_score(y, tied))
    assert res["auroc"] == pytest.approx(roc_auc_score(y, tied))
    assert res["best_dice"] == pytest.approx(_sk_best_dice(y, tied))


# -- errors ----------------------------------------------------------------------------
def test_errors():
    with pytest.raises(ValueError, match="shape"):
        pixel_average_precision(np.zeros((2, 3)), np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        best_dice(TINY_MAPS, TINY_MASKS, np.ones((1, 3), dtype=bool))
    with pytest.raises(ValueError, match="positive"):
        pixel_average_precision(TINY_MAPS, np.zeros_like(TINY_MASKS))
    with pytest.raises(ValueError, match="positive"):
        best_dice(TINY_MAPS, TINY_MASKS, np.array([[False, True, False, True]]))
    with pytest.raises(ValueError, match="lesion"):
        dice_at_threshold(TINY_MAPS, np.zeros_like(TINY_MASKS), 0.5)
    with pytest.raises(ValueError, match="lesion"):
        pixel_average_precision(TINY_MAPS, np.zeros_like(TINY_MASKS), aggregation="per_volume")
    with pytest.raises(ValueError, match="non-lesion"):
        pixel_auroc(TINY_MAPS, np.ones_like(TINY_MASKS))
    nan_maps = TINY_MAPS.copy()
    nan_maps[0, 2] = np.inf
    for func in (pixel_average_precision, best_dice, pixel_auroc):
        with pytest.raises(ValueError, match="non-finite"):
            func(nan_maps, TINY_MASKS)
    with pytest.raises(ValueError, match="non-finite"):
        threshold_at_fpr(nan_maps)
    with pytest.raises(ValueError, match="empty"):
        pixel_average_precision(TINY_MAPS, TINY_MASKS, np.zeros_like(TINY_MASKS))
    with pytest.raises(ValueError, match="empty"):
        threshold_at_fpr(TINY_MAPS, 0.1, np.zeros_like(TINY_MASKS))
    with pytest.raises(ValueError, match="non-empty"):
        pixel_average_precision(np.zeros((0, 3)), np.zeros((0, 3), dtype=bool))
    with pytest.raises(ValueError, match="0 and 1"):
        pixel_average_precision(TINY_MAPS, TINY_MAPS)
    with pytest.raises(ValueError, match="aggregation"):
        pixel_average_precision(TINY_MAPS, TINY_MASKS, aggregation="mean")
    with pytest.raises(ValueError, match="fpr"):
        threshold_at_fpr(TINY_MAPS, fpr=1.0)
    with pytest.raises(ValueError, match="threshold"):
        dice_at_threshold(TINY_MAPS, TINY_MASKS, np.nan)
    with pytest.raises(ValueError, match="numeric"):
        pixel_average_precision(np.array([["a"]]), np.array([[True]]))
    with pytest.raises(ValueError, match="metric"):
        per_volume_scores(TINY_MAPS, TINY_MASKS, metric="f1")
    with pytest.raises(ValueError, match="needs a threshold"):
        per_volume_scores(TINY_MAPS, TINY_MASKS, metric="dice_at_threshold")


def test_accumulator_errors():
    with pytest.raises(ValueError, match="method"):
        PixelMetricAccumulator("approx")
    with pytest.raises(ValueError, match="value_range"):
        PixelMetricAccumulator("histogram")
    with pytest.raises(ValueError, match="value_range"):
        PixelMetricAccumulator("histogram", value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="n_bins"):
        PixelMetricAccumulator("histogram", n_bins=0, value_range=(0, 1))
    with pytest.raises(ValueError, match="empty"):
        PixelMetricAccumulator().result()
    acc = PixelMetricAccumulator().update(TINY_MAPS, TINY_MASKS)
    with pytest.raises(ValueError, match="aggregation"):
        acc.result("both")
    with pytest.raises(ValueError, match="negative"):
        PixelMetricAccumulator().update(TINY_MAPS, np.ones_like(TINY_MASKS)).threshold_at_fpr()
    with pytest.raises(ValueError, match="shape"):
        acc.update(TINY_MAPS, TINY_MASKS[:, :2])


# -- sample level ----------------------------------------------------------------------
def test_sample_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.random(50) < 0.3
    scores = rng.random(50) + labels
    assert sample_auroc(scores, labels) == roc_auc_score(labels, scores)
    assert sample_average_precision(scores, labels.astype(int)) == average_precision_score(
        labels, scores
    )
    # 2-D (volume, slice) arrays are pooled over all slices
    assert sample_auroc(scores.reshape(5, 10), labels.reshape(5, 10)) == roc_auc_score(
        labels, scores
    )


def test_sample_metric_errors():
    with pytest.raises(ValueError, match="1 = anomalous"):
        sample_auroc([0.1, 0.2], [-1, 1])
    with pytest.raises(ValueError, match="both"):
        sample_auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        sample_average_precision([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ValueError, match="finite"):
        sample_auroc([np.nan, 0.2], [1, 0])


def test_slice_labels_and_scores():
    masks = np.zeros((2, 3, 4, 5), dtype=bool)
    masks[0, 1, :2, :2] = True
    masks[1, 2, 0, 0] = True
    np.testing.assert_array_equal(slice_labels(masks), [True, True])
    np.testing.assert_array_equal(
        slice_labels(masks, axis=1), [[False, True, False], [False, False, True]]
    )
    np.testing.assert_array_equal(
        slice_labels(masks, axis=1, min_voxels=2), [[False, True, False], [False, False, False]]
    )
    assert slice_labels(masks, axis=-1).shape == (2, 5)
    fg = np.ones_like(masks)
    fg[1, 2] = False
    np.testing.assert_array_equal(slice_labels(masks, foreground=fg), [True, False])

    rng = np.random.default_rng(0)
    maps = rng.random((2, 3, 4, 5))
    np.testing.assert_allclose(slice_scores(maps, axis=1), maps.max(axis=(2, 3)))
    np.testing.assert_allclose(slice_scores(maps, axis=3, reduction="mean"), maps.mean(axis=(1, 2)))
    top3 = np.sort(maps.reshape(2, -1), axis=1)[:, -3:].mean(axis=1)
    np.testing.assert_allclose(slice_scores(maps, reduction="topk", k=3), top3)
    top_frac = np.sort(maps.reshape(2, -1), axis=1)[:, -6:].mean(axis=1)  # ceil(0.1 * 60)
    np.testing.assert_allclose(slice_scores(maps, reduction="topk", k=0.1), top_frac)
    # foreground: outside values are ignored, slices without foreground score 0
    fg = np.zeros_like(maps, dtype=bool)
    fg[0, 0, 0, 0] = fg[0, 0, 1, 1] = True
    got = slice_scores(maps, axis=1, reduction="topk", k=5, foreground=fg)
    assert got[0, 0] == pytest.approx((maps[0, 0, 0, 0] + maps[0, 0, 1, 1]) / 2)
    assert got[0, 1] == 0.0 and got[1].tolist() == [0.0, 0.0, 0.0]
    mean = slice_scores(maps, reduction="mean", foreground=fg)
    assert mean[0] == pytest.approx((maps[0, 0, 0, 0] + maps[0, 0, 1, 1]) / 2)
    assert slice_scores(maps, foreground=fg)[1] == 0.0
    # labels and scores line up for sample metrics
    from sklearn.metrics import roc_auc_score

    scores, labels = slice_scores(maps, axis=1).ravel(), slice_labels(masks, axis=1).ravel()
    assert sample_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_topk_of_one_voxel_is_the_max():
    maps = np.random.default_rng(6).random((3, 4, 5))
    np.testing.assert_array_equal(
        slice_scores(maps, reduction="topk", k=1), maps.reshape(3, -1).max(axis=1)
    )
    # a fraction of 5 voxels per row rounds up to one voxel
    np.testing.assert_array_equal(
        slice_scores(maps, axis=1, reduction="topk", k=0.01), maps.max(axis=2)
    )


def test_slice_helper_errors():
    with pytest.raises(ValueError, match="axis"):
        slice_labels(np.zeros((2, 3), dtype=bool), axis=2)
    with pytest.raises(ValueError, match="min_voxels"):
        slice_labels(np.zeros((2, 3), dtype=bool), min_voxels=0)
    with pytest.raises(ValueError, match="reduction"):
        slice_scores(np.zeros((2, 3)), reduction="median")
    with pytest.raises(ValueError, match="k must be"):
        slice_scores(np.zeros((2, 3)), reduction="topk", k=1.5)


# -- scorers ---------------------------------------------------------------------------
class _MapEstimator:
    """Stand-in for a fitted DISYREDetector: the map is the image, in a flat layout."""

    def __init__(self, image_shape=(4, 4)):
        self.image_shape = image_shape

    def fit(self, X, y=None):
        return self

    def get_params(self, deep=True):
        return {"image_shape": self.image_shape}

    def set_params(self, **params):
        return self

    def decision_map(self, X):
        return np.asarray(X, dtype=np.float32).reshape(-1, *self.image_shape)

    def score_samples(self, X):
        return -self.decision_map(X).max(axis=(1, 2))


def test_scorers():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 4, 4)) < 0.2
    X = (rng.random((6, 4, 4)) + masks).reshape(6, 16)
    est = _MapEstimator()
    maps = est.decision_map(X)
    assert pixel_ap_scorer(est, X, masks) == pytest.approx(pixel_average_precision(maps, masks))
    assert pixel_ap_scorer(est, X, masks.reshape(6, 16)) == pixel_ap_scorer(est, X, masks)
    assert best_dice_scorer(est, X, masks) == best_dice(maps, masks)[0]
    labels = masks.any(axis=(1, 2))
    labels[:2] = [True, False]
    assert sample_auroc_scorer(est, X, labels) == roc_auc_score(labels, maps.max(axis=(1, 2)))
    assert sample_ap_scorer(est, X, labels) == average_precision_score(
        labels, maps.max(axis=(1, 2))
    )
    with pytest.raises(ValueError, match="one mask value per voxel"):
        pixel_ap_scorer(est, X, masks[:, :2])


def test_sample_scorer_in_cross_validation():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(40, 2)), rng.normal(6, 1, size=(4, 2))]
    y = np.r_[np.zeros(40), np.ones(4)]
    order = rng.permutation(len(y))
    scores = cross_val_score(
        IsolationForest(random_state=0), X[order], y[order], scoring=sample_auroc_scorer, cv=2
    )
    assert np.all(scores > 0.9)


def test_top_k_count_reads_ints_as_counts_and_floats_as_fractions():
    from disyre_sk.metrics._core import top_k_count

    assert top_k_count(1, 250) == 1  # the max
    assert top_k_count(1.0, 250) == 250  # the whole
    assert top_k_count(0.01, 250) == 3  # ceil(2.5)
    assert top_k_count(0.001, 250) == 1  # at least one
    assert top_k_count(5, 3) == 3  # at most n
    np.testing.assert_array_equal(top_k_count(0.5, np.array([3, 10])), [2, 5])
    for bad in (0, -1, 0.0, 1.5, True, float("nan"), "1"):
        with pytest.raises(ValueError, match="int >= 1"):
            top_k_count(bad, 10)


def test_sample_metric_and_slice_label_edge_cases():
    with pytest.raises(ValueError, match="empty"):
        sample_auroc(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="non-empty"):
        slice_labels(np.zeros((0, 3), dtype=bool))
    flat = np.array([True, False, True])
    np.testing.assert_array_equal(slice_labels(flat), flat)  # 1-D: one label per item
    assert not slice_labels(flat, min_voxels=2).any()
