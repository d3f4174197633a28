"""Tested recipes: the models ``disyre fit --recipe`` and :func:`make_recipe` build.

The ``"cpu"`` recipe is the model ``disyre demo`` trains: one DAG network for
brightening anomalies, a copy for darkening ones and a small-anomaly network, their
location-standardised maps joined by their voxelwise maximum. Each setting was chosen
on test subjects rendered from a brain no training subject came from
(``benchmarks/results/``; the user guide's method page has the table).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

from sklearn.base import clone

from ._combined import CombinedDetector, small_anomaly_specialist
from ._detector import DISYREDetector
from .corruption import DAGCorruption

# Small enough for about five minutes on two CPU cores at the demo's 3 mm grid.
# Many small patches (one synthetic anomaly each) learn faster per second of CPU than
# few large ones, and the same patches in many small batches better than in few large
# ones (benchmarks/demo_recipes.py: 1,200 steps of 16 against 300 of 64; with the map
# settings below, 1,200 steps were no better than 1,000, so the recipe stops at 1,000);
# whole slices are mapped, each residual is divided by the healthy residual of its
# intensity, lightly smoothed, the brain's 2-pixel rim is
# set to 0 (benchmarks/held_out.py), the slices' maps are averaged across neighbouring
# slices (benchmarks/demo_recipes.py, 'across0' against the demo), each voxel is
# compared with the healthy training maps at the same place (the subjects share one grid),
# and the finished map is median-filtered over 3 voxels (benchmarks/map_median.py: pixel
# AP and slice AUROC rose for every seed on two test sets; 5 voxels cost foci). One
# restoration at severity 1: with scale/shift conditioning the network restores more at
# higher severities (benchmarks/restoration_probe.py); against the demo before it
# (additive conditioning, severities 0.25 and 0.5: benchmarks/demo_recipes.py,
# 'add_s25_50_b16x1000') see benchmarks/results/demo_recipes_conditioning_cpu.md.
CPU_RECIPE = dict(
    detector=dict(
        patch_size=32,
        widths=(16, 32, 64),
        attention_levels=(),
        corruption="dag",
        n_steps=1000,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=100,
        window_size="slice",
        severities=(1.0,),
        map_smoothing=1.0,
        map_smoothing_across=2.0,
        map_normalization="intensity",
        map_standardization="location",
        map_erosion=2,
        map_median=3,
        # Maps halved at most where the scan mirrors itself left to right: a new brain's
        # anatomy differs from the training brains' on both sides alike, most lesions on
        # one side (benchmarks/results/map_symmetry_cpu.md).
        map_symmetry=0.5,
        inference_batch_size=64,
    ),
    # One network per sign: the first one learns to undo brightening anomalies only, a
    # copy of it darkening ones only (half its steps), at equal weight. A network that
    # must undo both signs learns each less well per step; split, each restores its own
    # sign and the pair raised pooled pixel AP on every seed of two test sets
    # (benchmarks/signed_networks.py).
    dark=dict(n_steps=500, weight=1.0),
    # A third network for lesions of a voxel or two, which DAG's shapes leave unseen:
    # the same recipe on small, sharp, bright anomalies only (small_anomaly_specialist),
    # with 16-px patches and 500 steps, a quarter of the first network's training time
    # (benchmarks/specialist_maps.py; recipe chosen on 36 independent test subjects per
    # seed: benchmarks/results/specialist_recipes_cpu.md).
    specialist=dict(patch_size=16, n_steps=500, weight=1.0),
    # The networks' maps joined by their voxelwise maximum, every weight 1: against the
    # weighted sum (small-anomaly map at half weight) it found small lesions better on
    # all six test sets and ranked slices better on five, pooled pixel AP within 0.02
    # either way, strokes lower on four (benchmarks/results/map_combination_cpu.md); a
    # sum dilutes one network's confident find with the others' quiet maps there. On
    # FLAIR it lowered pooled AP on five of six (benchmarks/results/signed_networks_cpu.md).
    combination="max",
)
RECIPES = {"cpu": CPU_RECIPE}
# The small-anomaly network's weight when the recipe's maps are summed instead: chosen
# for the sum on 36 independent subjects per seed, pooled AP fell at weight 1
# (benchmarks/results/specialist_recipes_cpu.md).
SUM_SPECIALIST_WEIGHT = 0.5


def specialist_weight(combination: str) -> float:
    """The small-anomaly network's weight that goes with ``combination``: the recipe's
    with its own combination, :data:`SUM_SPECIALIST_WEIGHT` with the sum."""
    if combination == "sum":
        return SUM_SPECIALIST_WEIGHT
    return float(CPU_RECIPE["specialist"]["weight"])


def specialist_steps(specialist: dict, n_steps: int) -> int:
    """The steps of an added network (``dark`` or ``specialist`` of :data:`CPU_RECIPE`)
    when the first network takes ``n_steps``: the recipe's ratio (500 to the first
    network's 1,000)."""
    return max(1, round(specialist["n_steps"] * n_steps / CPU_RECIPE["detector"]["n_steps"]))


def signed_network(
    detector: DISYREDetector, *, p_bright: float, n_steps: int | None = None
) -> DISYREDetector:
    """A copy of ``detector`` that learns DAG anomalies of one sign.

    DAG's intensity bias brightens or darkens each synthetic anomaly; a network that must
    undo both learns each sign less well per step. Two copies, one trained on
    brightening anomalies only (``p_bright=1``) and one on darkening ones only
    (``p_bright=0``), combined in a :class:`~disyre_sk.CombinedDetector`, each restore
    their own sign; on the demo's T2 and FLAIR cohorts the pair raised pooled pixel AP on
    every seed (the user guide's method page). On T1, where most lesions darken, one
    darkening network alone did better than the pair.

    Parameters
    ----------
    detector : DISYREDetector
        The detector to copy (unfitted or fitted: its parameters only are used). Its
        DAG corruption's other settings are kept; ``corruption="dag"`` means the
        default :class:`~disyre_sk.corruption.DAGCorruption`.
    p_bright : float in [0, 1]
        Probability that an anomaly brightens: 1 for the brightening network, 0 for the
        darkening one.
    n_steps : int, optional
        Training steps of the copy (its warm-up is kept under a tenth of them). ``None``
        keeps ``detector``'s.

    Returns
    -------
    network : DISYREDetector
        An unfitted detector.

    Examples
    --------
    >>> from disyre_sk import CombinedDetector, DISYREDetector, signed_network
    >>> det = DISYREDetector(patch_size=32, widths=(16, 32), n_steps=1000,
    ...                      map_standardization="location")
    >>> bright = signed_network(det, p_bright=1.0)
    >>> dark = signed_network(det, p_bright=0.0, n_steps=500)
    >>> bright.corruption.p_bright, dark.corruption.p_bright, dark.n_steps
    (1.0, 0.0, 500)
    >>> model = CombinedDetector([("bright", bright), ("dark", dark)])
    """
    corruption = detector.corruption
    if isinstance(corruption, str) and corruption == "dag":
        corruption = DAGCorruption()
    if not isinstance(corruption, DAGCorruption):
        raise ValueError(
            f"a signed network learns DAG anomalies of one sign; corruption={corruption!r} "
            "has no sign: use corruption='dag' or a DAGCorruption."
        )
    # The constructor's arguments are the corruption's whole state (as its repr shows).
    names = [n for n in inspect.signature(DAGCorruption.__init__).parameters if n != "self"]
    params = {**{n: getattr(corruption, n) for n in names}, "p_bright": p_bright}
    net = clone(detector).set_params(corruption=DAGCorruption(**params))
    if n_steps is not None:
        net.set_params(n_steps=int(n_steps), warmup_steps=min(net.warmup_steps, int(n_steps) // 10))
    return net


def build_model(
    params: dict,
    dark: dict | None = None,
    specialist: dict | None = None,
    *,
    scale_steps: bool = True,
    combination: str = "sum",
):
    """A recipe's model, unfitted, and its training steps in words.

    The DISYRE detector of ``params`` alone; with ``dark`` (``CPU_RECIPE["dark"]``) it
    learns brightening DAG anomalies only (unless its corruption is already a
    :class:`~disyre_sk.corruption.DAGCorruption` of its own sign) and a copy of it
    darkening ones only; with ``specialist`` (``CPU_RECIPE["specialist"]``, optionally with
    ``p_bright``) a small-anomaly network is added. Added networks' ``n_steps`` scale with
    the first one's (:func:`specialist_steps`), or are taken as they are with
    ``scale_steps=False``; several networks make a :class:`~disyre_sk.CombinedDetector`
    that joins their weighted maps by ``combination`` (``CPU_RECIPE["combination"]``).
    """
    steps_of = (
        (lambda part: specialist_steps(part, det.n_steps))
        if scale_steps
        else (lambda part: int(part["n_steps"]))
    )
    det = DISYREDetector(**params)
    members, weights = [("shapes", det)], [1.0]
    words = [f"{det.n_steps} steps"]
    if dark:
        if not (det.corruption == "dag" or isinstance(det.corruption, DAGCorruption)):
            raise ValueError(
                f"the dark network is a DAG network that darkens only; corruption="
                f"{det.corruption!r} has no sign: use corruption='dag' or no dark network."
            )
        if det.corruption == "dag":
            det.set_params(corruption=DAGCorruption(p_bright=1.0))
        steps = steps_of(dark)
        members = [("bright", det), ("dark", signed_network(det, p_bright=0.0, n_steps=steps))]
        weights.append(float(dark["weight"]))
        words.append(f"{steps} for the dark network")
    if specialist:
        steps = steps_of(specialist)
        # The sign only when given: small_anomaly_specialist keeps its own default.
        sign = {"p_bright": specialist["p_bright"]} if "p_bright" in specialist else {}
        foci = small_anomaly_specialist(
            det, patch_size=specialist["patch_size"], n_steps=steps, **sign
        )
        members.append(("foci", foci))
        weights.append(float(specialist["weight"]))
        words.append(f"{steps} for the small-anomaly network")
    if len(members) == 1:
        return det, words[0]
    return (
        CombinedDetector(members, weights=weights, combination=combination),
        " + ".join(words),
    )


def make_recipe(
    name: str = "cpu",
    *,
    dark_network: bool = True,
    small_anomaly_network: bool = True,
    combination: str | None = None,
    **params,
) -> DISYREDetector | CombinedDetector:
    """A tested recipe's model, unfitted: what ``disyre fit --recipe`` trains.

    ``"cpu"`` is the model ``disyre demo`` trains in about five minutes on two CPU cores
    (its figures: ``benchmarks/results/demo_cpu.md``): 32-pixel patches, batches of 16,
    1,000 steps, whole-slice maps with the map settings that won on unseen anatomy, and
    three networks whose location-standardised maps are joined by their voxelwise
    maximum, one that learns brightening DAG anomalies (``bright``, 1,000 steps), one
    darkening ones (``dark``, 500 steps) and a small-anomaly network (``foci``, 16-pixel
    patches, 500 steps; :func:`~disyre_sk.small_anomaly_specialist`). The map settings
    compare each voxel with healthy maps at the same place: the scans must share one
    grid (registered to a template).

    Parameters
    ----------
    name : {'cpu'}, default='cpu'
        The recipe.
    dark_network : bool, default=True
        Train the darkening network beside the brightening one. ``False`` leaves one
        DAG network that learns both signs (for T1, where most lesions darken, the user
        guide advises ``dark_network=False, small_anomaly_network=False,
        corruption=DAGCorruption(p_bright=0)``).
    small_anomaly_network : bool, default=True
        Train the small-anomaly network too.
    combination : {'max', 'sum'}, optional
        How the networks' maps make one (:class:`~disyre_sk.CombinedDetector`): the
        largest map at each voxel (the recipe's, ``None``), or their sum (the small-anomaly
        network's map then at half weight, as the sum was tested; weights can be reset with
        ``set_params(weights=...)``).
    **params
        :class:`~disyre_sk.DISYREDetector` parameters that replace the recipe's for the
        first network and, through it, the others (``n_steps``, ``random_state``,
        ``device``, ``checkpoint_dir``, ...). The added networks' steps keep the
        recipe's ratio to ``n_steps`` (half); a ``checkpoint_dir`` gets one subfolder per
        network (``bright``, ``dark``, ``foci``).

    Returns
    -------
    model : DISYREDetector or CombinedDetector
        A :class:`~disyre_sk.CombinedDetector` when it holds several networks.

    Examples
    --------
    >>> from disyre_sk import make_recipe
    >>> model = make_recipe("cpu", n_steps=2000, random_state=0)
    >>> [(n, d.n_steps) for n, d in model.detectors]
    [('bright', 2000), ('dark', 1000), ('foci', 1000)]
    >>> model.combination, model.weights
    ('max', [1.0, 1.0, 1.0])
    >>> make_recipe("cpu", combination="sum").weights
    [1.0, 1.0, 0.5]
    >>> make_recipe(dark_network=False, small_anomaly_network=False).patch_size
    32
    """
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; the recipes are {sorted(RECIPES)}.")
    recipe = copy.deepcopy(RECIPES[name])
    accepted = DISYREDetector().get_params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(
            f"make_recipe got {unknown}, which are not DISYREDetector parameters; "
            f"the parameters are {sorted(accepted)}."
        )
    settings = dict(recipe["detector"])
    if "n_steps" in params and "warmup_steps" not in params:
        settings["warmup_steps"] = min(settings["warmup_steps"], int(params["n_steps"]) // 10)
    settings.update(params)
    dark = recipe["dark"] if dark_network else None
    specialist = recipe["specialist"] if small_anomaly_network else None
    if (dark or specialist) and settings.get("map_standardization") != "location":
        raise ValueError(
            f"map_standardization={settings.get('map_standardization')!r}: the recipe's "
            "networks add their maps as z-scores against the healthy training maps, which "
            "needs map_standardization='location'; keep it, or pass dark_network=False "
            "and small_anomaly_network=False for one network."
        )
    if combination is None:
        combination = recipe["combination"]
    if combination not in ("sum", "max"):
        raise ValueError(f"combination must be 'sum' or 'max', got {combination!r}.")
    if specialist is not None:
        specialist["weight"] = specialist_weight(combination)
    model, _ = build_model(settings, dark, specialist, combination=combination)
    if isinstance(model, CombinedDetector) and settings.get("checkpoint_dir") is not None:
        # One folder each: a member resumes its own training, never another's.
        for member_name, member in model.detectors:
            member.set_params(checkpoint_dir=str(Path(settings["checkpoint_dir"]) / member_name))
    return model
