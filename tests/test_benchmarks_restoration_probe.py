"""benchmarks/restoration_probe.py: restored shares and the severity effect, exactly."""

import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark

probe = load_benchmark("restoration_probe")


class Fixed(torch.nn.Module):
    """Restores every input to one fixed image: a perfect restorer of that image."""

    size_multiple = 4

    def __init__(self, clean):
        super().__init__()
        self.clean = torch.from_numpy(clean)

    def forward(self, x, severity):
        h, w = self.clean.shape
        out = x.clone()
        out[:, 0, :h, :w] = self.clean
        return out


class Identity(torch.nn.Module):
    size_multiple = 4

    def forward(self, x, severity):
        return x


class Shrink(torch.nn.Module):
    """``x * (1 - s)``: its residual is ``s * x``."""

    size_multiple = 1

    def forward(self, x, severity):
        return x * (1 - severity)


def slice_and_brain():
    image = np.full((30, 30), 0.8, np.float32)
    image[5:25, 5:25] = 0.3  # a dark core ("white matter"), most of a bright brain
    brain = np.zeros((30, 30), bool)
    brain[2:28, 2:28] = True
    return image, brain


def test_scaling_matches_the_detector():
    from disyre_sk import DISYREDetector

    rng = np.random.default_rng(0)
    x = np.zeros((3, 16, 16), np.float32)
    x[:, 3:13, 2:14] = rng.uniform(0.1, 2.0, (3, 10, 12))
    det = DISYREDetector(patch_size=8, widths=(4, 8), n_steps=1, batch_size=2, device="cpu")
    det.fit(x)
    lo, hi = det.intensity_range_
    out = probe.scaled(x, x > 0, (lo, hi))
    assert out.min() == 0.0 and out.max() == 1.0
    inside = (x > lo) & (x < hi)
    np.testing.assert_allclose(out[inside], (x[inside] - lo) / (hi - lo), rtol=1e-5)


def test_residuals_are_cropped_back_from_the_padding():
    image, _ = slice_and_brain()
    res = probe.network_residuals(Identity(), image[None, :29, :29], 0.5)
    assert res.shape == (1, 29, 29)
    assert np.all(res == 0)


def test_squares_are_clipped_and_centred():
    image, _ = slice_and_brain()
    out, box = probe.with_square(image, 10, 12, 3, 0.5)
    assert box == (slice(9, 12), slice(11, 14))
    np.testing.assert_allclose(out[box], 0.8)
    out, _ = probe.with_square(image, 3, 3, 1, 0.5)
    assert out[3, 3] == 1.0  # 0.8 + 0.5 clipped
    assert np.array_equal(out != image, np.eye(1, 30 * 30, 3 * 30 + 3, bool).reshape(30, 30))


def test_positions_lie_deep_in_the_darker_tissue():
    image, brain = slice_and_brain()
    pos = probe.probe_positions(image, brain, np.random.default_rng(0), 50)
    assert len(pos) == 50
    for y, x in pos:
        assert 7 <= y <= 22 and 7 <= x <= 22  # 5 px inside the brain (2..27)
    assert probe.probe_positions(image, np.zeros_like(brain), np.random.default_rng(0), 5) == []


def test_perfect_and_blind_restorers_score_one_and_zero():
    image, brain = slice_and_brain()
    rng = np.random.default_rng(0)
    perfect = probe.restored_shares(Fixed(image), image, brain, (0.25, 0.5), rng, 3)
    assert set(perfect) == {(a, s) for a in probe.AMPLITUDES for s in probe.SIDES}
    for values in perfect.values():
        assert len(values) == 3
        np.testing.assert_allclose(values, 1.0, rtol=1e-6)
    blind = probe.restored_shares(Identity(), image, brain, (0.25,), rng, 2)
    for values in blind.values():
        np.testing.assert_allclose(values, 0.0, atol=1e-7)


def test_severity_effect_is_exact():
    image, brain = slice_and_brain()
    stack, brains = image[None], brain[None]
    # |0.05 x - 1.0 x| / (0.25 x), averaged over the brain: 0.95 / 0.25
    assert probe.severity_effect(Shrink(), stack, brains, 0.25) == pytest.approx(3.8)
    assert probe.severity_effect(Identity(), stack, brains, 0.25) == 0.0


def test_report_has_a_column_per_model():
    square = dict(kind="square", amplitude=0.5, side=3, n=4, severities=[0.25, 0.5])
    rows = [
        {**square, "seed": k, "model": f"add, seed {k}", "restored_share": v}
        for k, v in ((0, 0.25), (1, 0.75))
    ]
    rows.append(
        {"seed": 0, "model": "add, seed 0", "kind": "severity", "n": 4, "severity_effect": 0.004}
    )
    text = probe.report(rows)
    assert "| amplitude | side (px) | add, seed 0 | add, seed 1 |" in text
    assert "| +0.50 | 3 | 0.25 | 0.75 |" in text
    assert "| add, seed 0 | 4 | 0.004 |" in text


class Graded(torch.nn.Module):
    """``x * (1 - s * g)`` with ``g`` a fixed ramp across the columns: its residual is
    ``s * g * x``, so a square's share is ``s`` times the ramp's mean over the square,
    which differs from one position to the next."""

    size_multiple = 1

    def forward(self, x, severity):
        g = torch.linspace(0.1, 1.0, x.shape[-1]).view(1, 1, 1, -1)
        return x * (1 - severity * g)


def small_cohort():
    from sklearn.utils import Bunch

    image, brain = slice_and_brain()
    volume = np.repeat(image[None], 9, axis=0)
    masks = np.repeat(brain[None], 9, axis=0)
    return Bunch(
        families_test=["tumour", "healthy", "healthy"],
        X_test=np.stack([volume] * 3),
        brain_masks_test=np.stack([masks] * 3),
    )


def test_each_severity_probes_the_same_positions():
    cohort = small_cohort()
    rows = probe.probe_model(Graded(), cohort, (0.0, 1.0), 0, "m", 4, [(0.5,), (1.0,)], first=0.25)
    squares = [r for r in rows if r["kind"] == "square"]
    by = {(r["model"], r["amplitude"], r["side"]): r for r in squares}
    assert {r["model"] for r in squares} == {"m, severity 0.5", "m, severity 1"}
    for a in probe.AMPLITUDES:
        for s in probe.SIDES:
            half, full = by[("m, severity 0.5", a, s)], by[("m, severity 1", a, s)]
            assert half["n"] == full["n"] == 4 and half["severities"] == [0.5]
            # Same positions: the share scales with the severity exactly.
            assert full["restored_share"] == pytest.approx(2 * half["restored_share"], rel=1e-5)
    # The ramp puts shares between 0.1 s and s, not one value everywhere.
    shares = [r["restored_share"] for r in squares if r["model"] == "m, severity 1"]
    assert 0.1 < min(shares) < max(shares) < 1.0
    (effect,) = [r for r in rows if r["kind"] == "severity"]
    assert effect["model"] == "m" and effect["n"] == 4


def test_one_severity_set_keeps_the_label_and_the_draw():
    cohort = small_cohort()
    one = probe.probe_model(Graded(), cohort, (0.0, 1.0), 3, "m", 4, [(1.0,)])
    two = probe.probe_model(Graded(), cohort, (0.0, 1.0), 3, "m", 4, [(1.0,), (0.5,)])
    first = [r for r in one if r["kind"] == "square"]
    assert {r["model"] for r in first} == {"m"}
    again = [r for r in two if r["model"] == "m, severity 1"]
    assert [r["restored_share"] for r in first] == [r["restored_share"] for r in again]


def test_report_of_several_severities_has_no_empty_column():
    rows = probe.probe_model(Graded(), small_cohort(), (0.0, 1.0), 0, "m", 2, [(0.5,), (1.0,)])
    text = probe.report(rows)
    assert "| amplitude | side (px) | m, severity 0.5 | m, severity 1 |\n" in text
    assert "| m | 2 |" in text
