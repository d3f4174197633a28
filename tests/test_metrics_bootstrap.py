"""bootstrap_interval: stratified resampling of whole units, percentile ends, checks."""

import numpy as np
import pytest

from disyre_sk.metrics import bootstrap_interval, sample_auroc


def test_every_resample_keeps_each_groups_size():
    groups = np.array([0] * 3 + [1] * 7)
    seen = []

    def statistic(index):
        seen.append(index.copy())
        return 0.0

    bootstrap_interval(statistic, groups, n_resamples=50, random_state=0)
    assert len(seen) == 50
    for index in seen:
        assert index.size == 10
        assert np.sum(groups[index] == 0) == 3 and np.sum(groups[index] == 1) == 7
    # With replacement: some draw repeats a unit.
    assert any(np.unique(i).size < i.size for i in seen)


def test_ends_are_the_percentiles_of_the_resampled_statistic():
    x = np.arange(20.0)
    groups = np.zeros(20)
    rng = np.random.RandomState(3)
    expected = [x[rng.randint(0, 20, 20)].mean() for _ in range(400)]
    low, high = bootstrap_interval(
        lambda i: x[i].mean(), groups, n_resamples=400, confidence=0.9, random_state=3
    )
    assert low == pytest.approx(np.quantile(expected, 0.05))
    assert high == pytest.approx(np.quantile(expected, 0.95))


def test_interval_of_the_mean_covers_the_true_mean_about_as_often_as_it_says():
    rng = np.random.default_rng(0)
    covered = 0
    for rep in range(100):
        x = rng.normal(1.0, 2.0, 60)
        low, high = bootstrap_interval(
            lambda i, x=x: x[i].mean(), np.zeros(60), n_resamples=500, random_state=rep
        )
        covered += low <= 1.0 <= high
    assert 85 <= covered <= 100


def test_fewer_units_give_a_wider_auroc_interval():
    def width(n, seed):
        rng = np.random.default_rng(seed)
        labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
        scores = rng.normal(size=2 * n) + labels
        low, high = bootstrap_interval(
            lambda i: sample_auroc(scores[i], labels[i]),
            labels,
            n_resamples=300,
            random_state=seed,
        )
        assert 0 <= low <= sample_auroc(scores, labels) <= high <= 1
        return high - low

    assert np.mean([width(5, s) for s in range(3)]) > 2 * np.mean([width(80, s) for s in range(3)])


def test_perfect_separation_gives_a_point_interval():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert bootstrap_interval(
        lambda i: sample_auroc(scores[i], labels[i]), labels, random_state=0
    ) == (1.0, 1.0)


def test_same_seed_same_interval_and_global_generator_untouched():
    x = np.random.default_rng(1).normal(size=30)
    np.random.seed(123)  # noqa: NPY002 - the global generator must stay as it is
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    a = bootstrap_interval(lambda i: x[i].mean(), np.zeros(30), random_state=7)
    b = bootstrap_interval(lambda i: x[i].mean(), np.zeros(30), random_state=7)
    assert a == b
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert a != bootstrap_interval(lambda i: x[i].mean(), np.zeros(30), random_state=8)


def test_undefined_resamples_are_left_out_until_they_are_most():
    x = np.arange(10.0)
    calls = iter(range(10_000))

    def sometimes_undefined(i):
        return np.nan if next(calls) % 4 == 0 else x[i].mean()

    low, high = bootstrap_interval(sometimes_undefined, np.zeros(10), random_state=0)
    assert np.isfinite(low) and np.isfinite(high) and low < high
    with pytest.raises(ValueError, match=r"undefined \(not finite\) on 1000 of 1000 resamples"):
        bootstrap_interval(lambda i: np.nan, np.zeros(10))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": np.zeros((2, 3))}, "1-D"),
        ({"groups": []}, "non-empty"),
        ({"n_resamples": 0}, "n_resamples"),
        ({"n_resamples": 10.0}, "n_resamples"),
        ({"n_resamples": True}, "n_resamples"),
        ({"confidence": 0.0}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 95}, "confidence"),
    ],
)
def test_bad_arguments_are_refused_with_what_was_wrong(kwargs, match):
    args = {"groups": np.zeros(5), **kwargs}
    with pytest.raises(ValueError, match=match):
        bootstrap_interval(lambda i: 0.0, **args)


def test_a_statistic_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="callable"):
        bootstrap_interval(0.5, np.zeros(5))
