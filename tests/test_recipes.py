"""make_recipe and signed_network: the CPU recipe's model from Python, as the CLI builds it."""

import numpy as np
import pytest
from toy import smooth_brains

from disyre_sk import CombinedDetector, DISYREDetector, make_recipe, signed_network
from disyre_sk._demo import QUICK
from disyre_sk._recipes import CPU_RECIPE
from disyre_sk.cli import _fit_model, build_parser
from disyre_sk.corruption import DAGCorruption


def _shared(det):
    """The parameters a recipe's networks share (not their corruption, steps or patch)."""
    own = {"corruption", "n_steps", "warmup_steps", "patch_size", "checkpoint_dir"}
    return {k: v for k, v in det.get_params(deep=False).items() if k not in own}


def test_the_cpu_recipe_is_the_demos_three_networks():
    model = make_recipe()
    assert isinstance(model, CombinedDetector)
    assert [n for n, _ in model.detectors] == ["bright", "dark", "foci"]
    assert model.weights == [1.0, CPU_RECIPE["dark"]["weight"], CPU_RECIPE["specialist"]["weight"]]
    assert model.combination == CPU_RECIPE["combination"]
    bright, dark, foci = (d for _, d in model.detectors)
    for name, value in CPU_RECIPE["detector"].items():
        if name != "corruption":
            assert bright.get_params()[name] == value, name
    assert bright.corruption.p_bright == 1.0 and dark.corruption.p_bright == 0.0
    assert foci.corruption.p_bright == 1.0 and foci.corruption.box_fraction == 1.0
    assert (bright.n_steps, dark.n_steps, foci.n_steps) == (1000, 500, 500)
    assert (bright.patch_size, dark.patch_size, foci.patch_size) == (32, 32, 16)
    assert _shared(dark) == _shared(bright) == _shared(foci)
    # The demo trains the same recipe.
    assert {k: QUICK[k] for k in CPU_RECIPE} == CPU_RECIPE


def test_overrides_reach_every_network_and_steps_keep_their_ratio():
    model = make_recipe(n_steps=300, random_state=7, device="cpu", learning_rate=5e-4)
    steps = [(n, d.n_steps, d.warmup_steps) for n, d in model.detectors]
    # Warm-up kept under a tenth of each network's steps.
    assert steps == [("bright", 300, 30), ("dark", 150, 15), ("foci", 150, 15)]
    for _, det in model.detectors:
        assert (det.random_state, det.device, det.learning_rate) == (7, "cpu", 5e-4)
    # An explicit warm-up is the first network's as given.
    assert make_recipe(n_steps=300, warmup_steps=5).detectors[0][1].warmup_steps == 5


def test_networks_can_be_left_out():
    both = make_recipe(dark_network=False)
    assert [n for n, _ in both.detectors] == ["shapes", "foci"]
    assert both.detectors[0][1].corruption == "dag"  # one network learns either sign
    single = make_recipe(dark_network=False, small_anomaly_network=False)
    assert type(single) is DISYREDetector and single.patch_size == 32
    # One network may drop the location standardisation the sum needs.
    alone = make_recipe(dark_network=False, small_anomaly_network=False, map_standardization=None)
    assert alone.map_standardization is None


def test_the_t1_advice_gives_one_darkening_network():
    det = make_recipe(
        dark_network=False, small_anomaly_network=False, corruption=DAGCorruption(p_bright=0)
    )
    assert type(det) is DISYREDetector and det.corruption.p_bright == 0.0


def test_each_network_checkpoints_in_its_own_folder(tmp_path):
    model = make_recipe(checkpoint_dir=tmp_path / "ckpt")
    dirs = {n: d.checkpoint_dir for n, d in model.detectors}
    assert dirs == {n: str(tmp_path / "ckpt" / n) for n in ("bright", "dark", "foci")}


def test_the_cli_recipe_builds_the_same_model(tmp_path):
    parser = build_parser()
    args = parser.parse_args(
        ["fit", str(tmp_path), "-o", str(tmp_path / "m.disyre"), "--recipe", "cpu"]
    )
    cli_model, _ = _fit_model(args, verbose=False)
    ours = make_recipe(
        random_state=args.seed,
        device=args.device,
        verbose=False,
        checkpoint_every=args.checkpoint_every,
        validation_fraction=args.validation_fraction,
        validation_every=args.validation_every,
        early_stopping=args.early_stopping,
        n_iter_no_change=args.n_iter_no_change,
        validation_tol=args.validation_tol,
    )
    assert [n for n, _ in cli_model.detectors] == [n for n, _ in ours.detectors]
    assert cli_model.weights == ours.weights
    for (_, a), (_, b) in zip(cli_model.detectors, ours.detectors):
        assert repr(a.get_params(deep=False)) == repr(b.get_params(deep=False))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(name="gpu"), ValueError, "unknown recipe 'gpu'"),
        (dict(n_step=10), TypeError, r"\['n_step'\].*not DISYREDetector parameters"),
        (dict(map_standardization=None), ValueError, "map_standardization='location'"),
        (dict(corruption="fpi"), ValueError, "has no sign"),
    ],
)
def test_refusals_say_what_to_change(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_recipe(**kwargs)


def test_signed_network_keeps_the_corruptions_other_settings():
    det = DISYREDetector(corruption=DAGCorruption(box_fraction=0.5, p_bright=0.3), n_steps=800)
    dark = signed_network(det, p_bright=0.0, n_steps=200)
    assert dark.corruption.p_bright == 0.0 and dark.corruption.box_fraction == 0.5
    assert (dark.n_steps, dark.warmup_steps) == (200, 20)
    assert det.corruption.p_bright == 0.3  # the original is untouched
    bright = signed_network(DISYREDetector(), p_bright=1.0)
    assert bright.corruption.p_bright == 1.0 and bright.n_steps == DISYREDetector().n_steps
    with pytest.raises(ValueError, match="has no sign"):
        signed_network(DISYREDetector(corruption="gaussian"), p_bright=1.0)


def test_a_small_recipe_model_fits_and_maps():
    X = np.stack([smooth_brains(4, 32, seed=10 * i) for i in range(4)])
    model = make_recipe(
        n_steps=4,
        batch_size=2,
        widths=(8, 16),
        patch_size=16,
        map_symmetry=0.0,
        device="cpu",
        random_state=0,
        verbose=False,
    ).fit(X)
    maps = model.decision_map(X[:2])
    assert maps.shape == X[:2].shape and np.isfinite(maps).all()
    assert [len(d.history_["loss"]) for _, d in model.detectors_] == [4, 2, 2]


def test_the_combination_reaches_the_model(tmp_path):
    # The recipe's maximum at equal weights; the sum at the weights it was tested with.
    assert make_recipe().combination == CPU_RECIPE["combination"] == "max"
    assert make_recipe().weights == [1.0, 1.0, 1.0]
    summed = make_recipe(combination="sum")
    assert summed.combination == "sum" and summed.weights == [1.0, 1.0, 0.5]
    assert make_recipe(combination="sum", dark_network=False).weights == [1.0, 0.5]
    assert make_recipe(combination="max", small_anomaly_network=False).weights == [1.0, 1.0]
    with pytest.raises(ValueError, match="combination must be 'sum' or 'max'"):
        make_recipe(combination="mean")
    parser = build_parser()
    base = ["fit", str(tmp_path), "-o", str(tmp_path / "m.disyre")]
    model = _fit_model(parser.parse_args([*base, "--recipe", "cpu"]), verbose=False)[0]
    assert model.combination == "max" and model.weights == [1.0, 1.0, 1.0]
    args = parser.parse_args([*base, "--recipe", "cpu", "--combination", "sum"])
    model = _fit_model(args, verbose=False)[0]
    assert model.combination == "sum" and model.weights == [1.0, 1.0, 0.5]
    args = parser.parse_args(
        [*base, "--small-anomaly-network", "--map-standardization", "location"]
    )
    model = _fit_model(args, verbose=False)[0]
    assert model.combination == "max" and model.weights == [1.0, 1.0]
    args = parser.parse_args(
        [*base, "--recipe", "cpu", "--combination", "sum", "--small-weight", "2"]
    )
    assert _fit_model(args, verbose=False)[0].weights == [1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="--combination joins several networks' maps"):
        _fit_model(parser.parse_args([*base, "--combination", "max"]), verbose=False)
