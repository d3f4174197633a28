"""Tests of the batched synthetic-anomaly corruptions (disyre_sk.corruption)."""

from __future__ import annotations

import ast
import inspect
import itertools
import math
import pickle

import pytest
import torch

from disyre_sk.corruption import (
    Compose,
    Corrupted,
    Corruption,
    DAGCorruption,
    FPICorruption,
    GaussianCorruption,
    IntensityBiasCorruption,
    RandomShape,
    get_corruption,
)
from disyre_sk.corruption.base import _check_generator
from disyre_sk.corruption.fpi import _foreign_patch
from disyre_sk.corruption.shapes import sample_foreground_pixel

NAMES = ("dag", "fpi", "gaussian")


def make_batch(b: int = 8, size: int = 64, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """Brain-like test images: textured ellipses of varied size on a zero background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    ry = 0.6 + 0.3 * torch.rand(b, 1, 1, generator=g)
    rx = 0.5 + 0.3 * torch.rand(b, 1, 1, generator=g)
    inside = (yy / ry) ** 2 + (xx / rx) ** 2 < 1
    coarse = torch.rand(b, 1, 8, 8, generator=g)
    tex = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    fine = 0.1 * torch.rand(b, 1, size, size, generator=g)
    img = (0.15 + 0.75 * tex + fine).clamp(0.05, 1.0)
    return torch.where(inside.unsqueeze(1), img, 0.0).to(device)


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_output_contract(name, size):
    x = make_batch(6, size)
    fg = x > 0
    out = get_corruption(name)(x, gen(0))
    assert isinstance(out, Corrupted)
    for t in (out.image, out.mask):
        assert t.shape == x.shape and t.dtype == x.dtype and t.device == x.device
    assert out.severity.shape == (6,) and out.severity.is_floating_point()
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    assert out.severity.min() >= 0 and out.severity.max() <= 1
    assert torch.equal(out.image[~fg], x[~fg])  # background bitwise untouched
    assert (out.mask[~fg] == 0).all()
    # Pixels outside the mask are untouched too.
    assert torch.equal(out.image[out.mask == 0], x[out.mask == 0])
    assert not torch.equal(out.image, x)


@pytest.mark.parametrize("name", NAMES)
def test_forced_zero_severity_is_identity(name):
    x = make_batch(8)
    out = get_corruption(name)(x, gen(1), severity=0.0)
    assert torch.equal(out.image, x)
    assert (out.severity == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_different_seed_differs(name):
    c, x = get_corruption(name), make_batch(8)
    a, b, other = c(x, gen(7)), c(x, gen(7)), c(x, gen(8))
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)
    assert not torch.equal(a.image, other.image)
    assert not torch.equal(a.severity, other.severity)


@pytest.mark.parametrize("name", NAMES)
def test_sample_params_then_apply_equals_call(name):
    c, x = get_corruption(name), make_batch(8)
    params = c.sample_params(x, gen(3))
    assert isinstance(params, dict)
    assert all(isinstance(v, torch.Tensor) for v in params.values())
    via_params, via_call = c.apply(x, params), c(x, gen(3))
    for ta, tb in zip(via_params, via_call):
        assert torch.equal(ta, tb)
    # apply is deterministic
    assert torch.equal(c.apply(x, params).image, via_params.image)


@pytest.mark.parametrize("name", NAMES)
def test_no_global_rng_use(name):
    state = torch.get_rng_state()
    get_corruption(name)(make_batch(4), gen(0))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", NAMES)
def test_change_grows_with_forced_severity(name):
    c, x = get_corruption(name), make_batch(16)
    levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    change = []
    for s in levels:
        out = c(x, gen(5), severity=s)  # same seed: same shapes, growing amplitude
        assert torch.allclose(out.severity, torch.full((16,), s))
        change.append(float(((out.image - x).abs() * out.mask).sum() / out.mask.sum()))
    assert change[0] == 0
    assert all(b > a for a, b in itertools.pairwise(change)), change


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_forced_severity(name):
    x = make_batch(4)
    s = torch.tensor([0.0, 0.25, 0.5, 1.0])
    out = get_corruption(name)(x, gen(0), severity=s)
    assert torch.allclose(out.severity, s)
    assert torch.equal(out.image[0], x[0])


@pytest.mark.parametrize("name", NAMES)
def test_no_foreground_samples(name):
    x = make_batch(4)
    x[1] = 0.0
    out = get_corruption(name)(x, gen(2))
    assert out.severity[1] == 0
    assert (out.image[1] == 0).all() and (out.mask[1] == 0).all()
    assert (out.severity[[0, 2, 3]] > 0).all()
    empty = torch.zeros(3, 1, 32, 32)
    out = get_corruption(name)(empty, gen(2))
    assert torch.equal(out.image, empty) and (out.severity == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_explicit_foreground_is_respected(name):
    x = make_batch(6)
    fg = torch.zeros_like(x, dtype=torch.bool)
    fg[..., 16:48, 16:48] = True
    fg &= x > 0
    out = get_corruption(name)(x, gen(4), foreground=fg)
    assert torch.equal(out.image[~fg], x[~fg])
    assert (out.mask[~fg] == 0).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes(name, dtype):
    x = make_batch(4).to(dtype)
    out = get_corruption(name)(x, gen(0))
    assert out.image.dtype == dtype and out.mask.dtype == dtype
    assert torch.equal(out.image[x == 0], x[x == 0])
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert torch.equal(get_corruption(name)(x, gen(0), severity=0.0).image, x)


@pytest.mark.parametrize("name", ["dag", "fpi"])
def test_batch_of_one_uses_itself(name):
    x = make_batch(1)
    out = get_corruption(name)(x, gen(0), severity=1.0)
    assert out.severity.item() == 1.0
    assert not torch.equal(out.image, x)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_and_repr(name):
    c = get_corruption(name)
    clone = pickle.loads(pickle.dumps(c))
    assert repr(clone) == repr(c)
    assert repr(c).startswith(type(c).__name__ + "(")
    x = make_batch(4)
    assert torch.equal(clone(x, gen(0)).image, c(x, gen(0)).image)


@pytest.mark.parametrize("name", ["dag", "fpi"])
def test_unaffected_by_callers_autocast(name):
    c, x = get_corruption(name), make_batch(4)
    ref = c(x, gen(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = c(x, gen(0))
    for t, r in zip(out, ref):
        assert torch.equal(t, r)


# --------------------------------------------------------------------------- validation


def test_generator_device_mismatch_raises():
    with pytest.raises(ValueError, match="generator is on"):
        _check_generator(torch.Generator(), torch.device("cuda"))
    with pytest.raises(TypeError):
        FPICorruption()(make_batch(2), 0)


@pytest.mark.parametrize(
    "bad",
    [torch.rand(2, 16, 16), torch.rand(2, 3, 16, 16), torch.ones(2, 1, 8, 8, dtype=torch.long)],
)
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        DAGCorruption()(bad, gen(0))


def test_bad_foreground_and_severity_raise():
    x = make_batch(2)
    with pytest.raises(ValueError, match="foreground"):
        DAGCorruption()(x, gen(0), foreground=torch.ones(2, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="severity"):
        DAGCorruption()(x, gen(0), severity=1.5)
    with pytest.raises(ValueError, match="severity"):
        DAGCorruption()(x, gen(0), severity=torch.zeros(3))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"box_fraction": 0},
        {"box_fraction": 1.5},
        {"sigma_range": (2.0, 1.0)},
        {"size_range": (0.0, 1.0)},
        {"shapes": ("star",)},
        {"shapes": ()},
        {"blob_roughness": -1},
    ],
)
def test_bad_shape_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        DAGCorruption(**kwargs)
    with pytest.raises(ValueError):
        RandomShape(**kwargs)


def test_bad_other_parameters_raise():
    with pytest.raises(ValueError):
        DAGCorruption(n_classes=(4, 2))
    with pytest.raises(ValueError):
        GaussianCorruption(sigma_max=-0.1)
    with pytest.raises(TypeError):
        Compose([])
    with pytest.raises(TypeError):
        Compose(["dag"])


def test_get_corruption():
    assert isinstance(get_corruption("dag"), DAGCorruption)
    assert isinstance(get_corruption("fpi"), FPICorruption)
    assert isinstance(get_corruption("gaussian"), GaussianCorruption)
    assert isinstance(get_corruption("DAG"), DAGCorruption)
    c = GaussianCorruption(sigma_max=0.2)
    assert get_corruption(c) is c
    for bad in ("noise", None, 3):
        with pytest.raises(ValueError, match="'dag', 'fpi', 'gaussian'"):
            get_corruption(bad)


@pytest.mark.parametrize(
    "cls",
    [RandomShape, FPICorruption, IntensityBiasCorruption, DAGCorruption, GaussianCorruption],
)
def test_defaults_are_the_documented_ones(cls):
    # the Parameters section is the specification of every default
    documented = {}
    # Imported here: the GPU check runs this module where numpydoc (docs only) is absent.
    from numpydoc.docscrape import NumpyDocString

    for param in NumpyDocString(inspect.getdoc(cls))["Parameters"]:
        if "default=" in param.type:
            documented[param.name] = ast.literal_eval(param.type.split("default=", 1)[1])
    signature = inspect.signature(cls).parameters
    assert set(documented) == set(signature)
    for name, value in documented.items():
        assert signature[name].default == value, name


# --------------------------------------------------------------------------- semantics


def test_fpi_min_max_matching():
    x = make_batch(16)
    c = FPICorruption()
    out = c(x, gen(9))
    support = out.mask > 0
    lo = torch.where(support, x, math.inf).flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = torch.where(support, x, -math.inf).flatten(1).amax(1).view(-1, 1, 1, 1)
    ok = (out.image >= lo - 1e-6) & (out.image <= hi + 1e-6)
    assert ok[support].all()


def test_fpi_severity_is_a_tex():
    x = make_batch(8)
    c = FPICorruption()
    params = c.sample_params(x, gen(0))
    out = c.apply(x, params)
    assert torch.allclose(out.severity, params["a_tex"])
    assert (params["source"] != torch.arange(8)).all()  # foreign, never itself


def test_fpi_foreign_offset_is_uniform_over_the_other_samples():
    # sample b takes its patch from (b + k) % B, k uniform in [1, B - 1]
    x = torch.rand(4, 1, 8, 8, generator=gen(1))
    g, c = gen(0), FPICorruption()
    offsets = torch.cat(
        [(c.sample_params(x, g)["source"] - torch.arange(4)) % 4 for _ in range(100)]
    )
    counts = torch.bincount(offsets, minlength=4)
    assert counts[0] == 0  # never the sample itself
    assert ((counts[1:] > 100) & (counts[1:] < 170)).all(), counts  # 400 draws, 133 each


@pytest.mark.parametrize("shift", [(0, 0), (1, -1), (-2, 3), (4, 5), (-4, -5)])
def test_fpi_foreign_patch_is_the_source_shifted_with_zero_fill(shift):
    h, w = 5, 6
    x = 1 + torch.rand(2, 1, h, w, generator=gen(0))  # no zero inside the images
    center = torch.tensor([[2, 3], [1, 4]])
    params = {
        "source": torch.tensor([1, 0]),
        "center": center,
        "source_center": center + torch.tensor(shift),
    }
    fp = _foreign_patch(x, params)
    dy, dx = shift
    for b in range(2):
        src = x[params["source"][b], 0]
        expected = torch.zeros(h, w)  # where the shifted source has no pixel
        for i, j in itertools.product(range(h), range(w)):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                expected[i, j] = src[i + dy, j + dx]
        assert torch.equal(fp[b, 0], expected)


def test_dag_severity_is_max_of_texture_and_bias_change():
    x = make_batch(16)
    c = DAGCorruption()
    params = c.sample_params(x, gen(11))
    out = c.apply(x, params)
    textured = FPICorruption().apply(x, params)  # the same shape and texture, no bias
    bias_change = (out.image - textured.image).abs().flatten(1).amax(1)
    expected = torch.maximum(params["a_tex"], bias_change)
    assert torch.allclose(out.severity, expected, atol=1e-6)
    assert (bias_change > params["a_tex"]).any()  # the bias sometimes sets the severity


def test_dag_makes_hypo_and_hyper_intense_changes():
    x = make_batch(32)
    c = DAGCorruption()
    means = []
    for seed in range(4):
        out = c(x, gen(seed))
        diff = ((out.image - x) * out.mask).flatten(1).sum(1) / out.mask.flatten(1).sum(1)
        means.append(diff)
    means = torch.cat(means)
    assert (means < -0.05).sum() >= 5
    assert (means > 0.05).sum() >= 5


def test_intensity_bias_severity_is_actual_change():
    x = make_batch(16)
    out = IntensityBiasCorruption()(x, gen(0))
    actual = (out.image - x).abs().flatten(1).amax(1)
    assert torch.allclose(out.severity, actual)
    assert (out.severity > 0).any()


def test_bias_change_ignores_out_of_range_input_outside_mask():
    x = make_batch(8)
    c = IntensityBiasCorruption()
    params = c.sample_params(x, gen(0))
    ref = c.apply(x, params)
    x_bad = torch.where((ref.mask == 0) & (x > 0), 1.5, x)  # out of range, off the mask
    out = c.apply(x_bad, params)
    # (the tissue classes may move with the changed histogram; the measure must not)
    actual = ((out.image - x_bad).abs() * (out.mask > 0)).flatten(1).amax(1)
    assert torch.allclose(out.severity, actual)
    assert torch.equal(out.image[ref.mask == 0], x_bad[ref.mask == 0])


def test_intensity_bias_per_sample_forced_severity():
    x = make_batch(4)
    s = torch.tensor([0.0, 0.25, 0.5, 1.0])
    c = IntensityBiasCorruption()
    params = c.sample_params(x, gen(0), severity=s)
    assert torch.equal(params["a_bias"], s)
    out = c.apply(x, params)
    assert (out.severity <= s + 1e-6).all()  # clipping can only lower the change
    assert torch.equal(out.image[0], x[0])
    assert c.sample_params(x, gen(0), severity=0.5)["a_bias"].shape == (4,)


def test_intensity_class_count_is_uniform_over_the_inclusive_range():
    x = torch.rand(300, 1, 8, 8, generator=gen(1))
    params = IntensityBiasCorruption().sample_params(x, gen(0))
    counts = torch.bincount(params["n_classes"], minlength=7)
    assert counts[:3].sum() == 0 and counts[6:].sum() == 0  # the default (3, 5), inclusive
    assert ((counts[3:6] > 70) & (counts[3:6] < 130)).all(), counts  # 100 expected each
    params = IntensityBiasCorruption(n_classes=(2, 3)).sample_params(x, gen(0))
    assert set(params["n_classes"].tolist()) == {2, 3}


def test_gaussian_mask_is_foreground():
    x = make_batch(4)
    out = GaussianCorruption(sigma_max=0.3)(x, gen(0))
    assert torch.equal(out.mask, (x > 0).to(x.dtype))


def test_gaussian_adds_scaled_noise_on_the_foreground():
    x = torch.zeros(2, 1, 4, 4)
    x[:, :, 1:3, 1:3] = 0.5
    noise = torch.linspace(-2, 2, 32).view(2, 1, 4, 4)
    params = {"severity": torch.tensor([0.5, 1.0]), "noise": noise}
    out = GaussianCorruption(sigma_max=0.2).apply(x, params)
    # x + s * sigma_max * eps: levels 0.1 and 0.2 keep 0.5 +- 0.4 inside [0, 1]
    level = torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)
    expected = torch.where(x > 0, x + level * noise, x)
    assert torch.allclose(out.image, expected, atol=1e-6)


def test_compose():
    x = make_batch(8)
    c = Compose([FPICorruption(), IntensityBiasCorruption()])
    params = c.sample_params(x, gen(0))
    assert all(k.split(".", 1)[0] in ("0", "1") for k in params)
    out = c.apply(x, params)
    first = FPICorruption().apply(x, {k[2:]: v for k, v in params.items() if k[:2] == "0."})
    assert torch.allclose(out.severity, torch.maximum(first.severity, out.severity))
    assert (out.mask >= first.mask).all()
    assert torch.equal(out.image[x == 0], x[x == 0])
    assert torch.equal(c(x, gen(0), severity=0.0).image, x)
    assert isinstance(c, Corruption) and repr(c).startswith("Compose([FPICorruption(")


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("kind", ["ellipse", "rectangle", "blob"])
def test_each_shape_renders_in_box_on_foreground(kind):
    x = make_batch(16)
    fg = x > 0
    shape = RandomShape(shapes=(kind,), sigma_range=(0.0, 0.0))
    params = shape.sample_params(fg, gen(0))
    mask = shape.render(params, fg)
    assert mask.shape == x.shape
    assert set(mask.unique().tolist()) <= {0.0, 1.0}  # sigma 0: hard edges
    assert (mask[~fg] == 0).all()
    assert (mask.flatten(1).amax(1) == 1).all()
    half = 0.5 * 0.5 * 64
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    cy = params["center"][:, 0].view(-1, 1, 1, 1)
    cx = params["center"][:, 1].view(-1, 1, 1, 1)
    outside_box = ((ys - cy).abs() > half) | ((xs - cx).abs() > half)
    assert (mask[outside_box] == 0).all()
    assert fg.flatten()[  # centres are foreground pixels
        (torch.arange(16) * 64 * 64 + params["center"][:, 0] * 64 + params["center"][:, 1])
    ].all()


def test_shape_sizes_and_sigmas_are_drawn_in_their_ranges():
    fg = torch.ones(200, 1, 32, 32, dtype=torch.bool)
    shape = RandomShape(box_fraction=0.5, size_range=(0.25, 0.5), sigma_range=(1.0, 2.0))
    params = shape.sample_params(fg, gen(0))
    hb = 8  # half the box side: 0.5 * 0.5 * 32
    axes, sigma = params["axes"] / hb, params["sigma"]
    # uniform draws over 200 samples reach close to both ends of each range
    assert 0.25 <= axes.min() < 0.27 and 0.48 < axes.max() <= 0.5
    assert 1.0 <= sigma.min() < 1.05 and 1.95 < sigma.max() <= 2.0


def test_blur_softens_edges():
    x = make_batch(8)
    fg = x > 0
    shape = RandomShape(sigma_range=(3.0, 5.0))
    mask = shape.render(shape.sample_params(fg, gen(0)), fg)
    soft = ((mask > 0.05) & (mask < 0.95)).flatten(1).sum(1)
    assert (soft > 0).all()


def test_blur_conserves_mass_and_sigma_zero_is_exact():
    fg = torch.ones(6, 1, 96, 96, dtype=torch.bool)
    shape = RandomShape(sigma_range=(0.0, 5.0))
    params = shape.sample_params(fg, gen(0))
    params["center"] = torch.full((6, 2), 48)  # far from the border: no mass lost there
    params["sigma"] = torch.zeros(6)
    hard = shape.render(params, fg)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    params["sigma"] = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    soft = shape.render(params, fg)
    assert torch.allclose(soft.flatten(1).sum(1), hard.flatten(1).sum(1), rtol=1e-4)
    assert ((soft > 0) & (soft < 1)).flatten(1).any(1).all()


def test_sample_foreground_pixel():
    fg = torch.rand(5, 1, 16, 16, generator=gen(0)) > 0.7
    fg[3] = False
    u = torch.rand(5, generator=gen(1))
    pix = sample_foreground_pixel(fg, u)
    assert pix.shape == (5, 2) and pix.dtype == torch.long
    for b in (0, 1, 2, 4):
        assert fg[b, 0, pix[b, 0], pix[b, 1]]
    assert pix[3].tolist() == [0, 0]
    # u -> 1 picks the last foreground pixel
    last = sample_foreground_pixel(fg[:1], torch.tensor([0.999999]))
    idx = fg[0, 0].flatten().nonzero().max()
    assert last[0].tolist() == [int(idx) // 16, int(idx) % 16]


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu_contract(name):
    c = get_corruption(name)
    x_cpu = make_batch(8)
    x = x_cpu.to("cuda")
    out = c(x, gen(0, "cuda"))
    ref = c(x_cpu, gen(0))
    for t, r in zip(out, ref):
        assert t.device.type == "cuda" and t.shape == r.shape and t.dtype == r.dtype
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert out.severity.min() >= 0 and out.severity.max() <= 1
    assert torch.equal(out.image[x == 0], x[x == 0])
    assert torch.equal(c(x, gen(0, "cuda"), severity=0.0).image, x)
    assert torch.equal(c(x, gen(3, "cuda")).image, c(x, gen(3, "cuda")).image)
    with pytest.raises(ValueError, match="generator is on"):
        c(x, gen(0))


# ---------------------------------------------------------------- mixture


def test_mixture_keeps_the_chosen_members_output():
    from disyre_sk.corruption import DAGCorruption, FPICorruption, Mixture

    x = torch.zeros(16, 1, 32, 32)
    x[:, :, 4:28, 4:28] = torch.rand(16, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    members = [DAGCorruption(), FPICorruption()]
    mix = Mixture(members, weights=(1, 1))
    p = mix.sample_params(x, torch.Generator().manual_seed(0))
    out = mix.apply(x, p)
    choice = p["choice"]
    assert set(choice.tolist()) == {0, 1}
    for i, c in enumerate(members):
        sub = {k[2:]: v for k, v in p.items() if k.startswith(f"{i}.")}
        ref = c.apply(x, sub)
        pick = choice == i
        assert torch.equal(out.image[pick], ref.image[pick])
        assert torch.equal(out.mask[pick], ref.mask[pick])
        assert torch.equal(out.severity[pick], ref.severity[pick])
    # Same generator state, same result (draw, then apply).
    again = mix(x, torch.Generator().manual_seed(0))
    assert torch.equal(again.image, out.image)


def test_mixture_weights():
    from disyre_sk.corruption import GaussianCorruption, Mixture

    x = torch.rand(4000, 1, 2, 2)
    p = Mixture([GaussianCorruption(), GaussianCorruption()], weights=(3, 1)).sample_params(
        x, torch.Generator().manual_seed(0)
    )
    share = (p["choice"] == 0).float().mean().item()
    assert abs(share - 0.75) < 0.03  # 4000 draws: standard error 0.007
    only = Mixture([GaussianCorruption(), GaussianCorruption()], weights=(0, 1))
    assert (only.sample_params(x, torch.Generator())["choice"] == 1).all()
    with pytest.raises(ValueError, match="weights"):
        Mixture([GaussianCorruption()], weights=(1, 1))
    with pytest.raises(TypeError, match="Corruption"):
        Mixture(["dag"])


@pytest.mark.parametrize("cls", [DAGCorruption, IntensityBiasCorruption])
def test_p_bright_sets_the_bias_sign_and_keeps_the_random_stream(cls):
    x = torch.rand(400, 1, 8, 8, generator=gen(1))
    default = cls().sample_params(x, gen(0))
    for p, expected in ((1.0, {1.0}), (0.0, {-1.0})):
        params = cls(p_bright=p).sample_params(x, gen(0))
        assert set(params["bias_sign"].tolist()) == expected
        # One draw per sample whatever p_bright is: every other parameter is unchanged.
        for key in default:
            if key != "bias_sign":
                assert torch.equal(params[key], default[key]), key
    assert torch.equal(
        cls(p_bright=0.5).sample_params(x, gen(0))["bias_sign"], default["bias_sign"]
    )
    share = (cls(p_bright=0.25).sample_params(x, gen(0))["bias_sign"] > 0).float().mean()
    assert 0.19 < share < 0.31, share  # 100 of 400 expected


def test_p_bright_one_only_brightens_and_zero_only_darkens():
    x = make_batch(16)
    for p, sign in ((1.0, 1.0), (0.0, -1.0)):
        c = IntensityBiasCorruption(p_bright=p)
        out = c(x, gen(3))
        change = sign * (out.image - x)
        assert (change >= 0).all() and (change > 0).any()


@pytest.mark.parametrize(
    "value, error",
    [
        (-0.1, ValueError),
        (1.5, ValueError),
        (math.nan, ValueError),
        (True, TypeError),
        ("0.5", TypeError),
    ],
)
def test_bad_p_bright_raises_with_the_reason(value, error):
    for cls in (DAGCorruption, IntensityBiasCorruption):
        with pytest.raises(error, match="p_bright"):
            cls(p_bright=value)


def test_p_bright_is_a_parameter_in_the_repr():
    import numpy as np

    assert DAGCorruption(p_bright=np.float32(0.25)).p_bright == 0.25  # numpy scalars too
    assert "p_bright=1.0" in repr(DAGCorruption(p_bright=1.0))
    assert "p_bright=0.5" in repr(IntensityBiasCorruption())
