"""The SeVa/POVID diffusion schedule, against values computed by hand from its definition."""

import math

import pytest
import torch

from vlpref.numerics.noise import NoiseSchedule


def test_schedule_matches_hand_computation():
    s = NoiseSchedule()
    # beta_0 = sigmoid(-6) * (5e-3 - 1e-5) + 1e-5; alpha_bar_0 = 1 - beta_0
    beta0 = 1 / (1 + math.exp(6)) * (5e-3 - 1e-5) + 1e-5
    assert s.signal(0) == pytest.approx(math.sqrt(1 - beta0), abs=1e-12)
    # alpha_bar_1 = (1 - beta_0)(1 - beta_1), beta_1 at linspace point -6 + 12/999
    beta1 = 1 / (1 + math.exp(6 - 12 / 999)) * (5e-3 - 1e-5) + 1e-5
    assert s.signal(1) ** 2 == pytest.approx((1 - beta0) * (1 - beta1), abs=1e-12)
    # the figures quoted in methods.md §3.1 for the papers' steps
    assert (round(s.signal(500), 3), round(s.noise(500), 3)) == (0.863, 0.505)
    assert (round(s.signal(800), 3), round(s.noise(800), 3)) == (0.467, 0.884)
    for k in (0, 500, 999):
        assert s.signal(k) ** 2 + s.noise(k) ** 2 == pytest.approx(1.0)


def test_add_noise_is_seeded_and_scaled():
    s = NoiseSchedule()
    x = torch.full((3, 8, 8), 0.5)
    a = s.add_noise(x, 500, torch.Generator().manual_seed(1))
    b = s.add_noise(x, 500, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    eps = torch.randn((3, 8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, s.signal(500) * x + s.noise(500) * eps)


@pytest.mark.parametrize("k", [-1, 1000])
def test_step_out_of_range(k):
    with pytest.raises(ValueError, match="outside 0..999"):
        NoiseSchedule().signal(k)
