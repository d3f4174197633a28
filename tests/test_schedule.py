import math
from itertools import pairwise

import pytest
import torch

from disyre_sk.schedule import (
    check_severities,
    cold_diffusion_step,
    multistep_severities,
    warmup_cosine_factor,
)


def test_check_severities():
    assert check_severities((0.05, 0.25)) == (0.05, 0.25)
    assert check_severities(1) == (1.0,)
    for bad in ([], [0.0], [1.5], [float("nan")], [-0.1]):
        with pytest.raises(ValueError):
            check_severities(bad)


def test_multistep_order():
    assert multistep_severities([0.25, 0.75, 0.25, 0.5]) == (0.75, 0.5, 0.25)


def test_cold_diffusion_step_keeps_fraction_of_residual():
    x_s, x0 = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(cold_diffusion_step(x_s, x0, 0.8, 0.2), x0 + 0.25 * (x_s - x0))
    torch.testing.assert_close(cold_diffusion_step(x_s, x0, 0.8, 0.0), x0)
    torch.testing.assert_close(cold_diffusion_step(x_s, x0, 0.8, 0.8), x_s)
    with pytest.raises(ValueError):
        cold_diffusion_step(x_s, x0, 0.2, 0.5)
    with pytest.raises(ValueError):
        cold_diffusion_step(x_s, x0, 0.0, 0.0)


def test_warmup_cosine():
    factors = [warmup_cosine_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(1 / 11)
    assert all(a < b for a, b in pairwise(factors[:11]))
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in pairwise(factors[10:]))
    assert factors[-1] < 0.01
    assert warmup_cosine_factor(55, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
