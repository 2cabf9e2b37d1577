"""Diffusion forward noise as SeVa and POVID use it to make "rejected" images (methods.md §3.1, §4.1).

    >>> import torch
    >>> schedule = NoiseSchedule()                          # T = 1000, sigmoid betas from 1e-5 to 5e-3
    >>> round(schedule.signal(500), 3), round(schedule.noise(500), 3)
    (0.863, 0.505)
    >>> noisy = schedule.add_noise(torch.zeros(3, 4, 4), k=500, generator=torch.Generator().manual_seed(0))

The schedule: beta_t = sigmoid(linspace(-6, 6, T)) * (end - start) + start, alpha_bar_k = prod_{s<=k} (1 - beta_s),
and x_k = sqrt(alpha_bar_k) * x + sqrt(1 - alpha_bar_k) * eps with eps ~ N(0, I). The step k indexes the cumulative
product from 0, as both papers' `q_x` does: k = 500 gives signal 0.863 and noise 0.505 (SNR 2.9), k = 800 gives
0.467 and 0.884 (SNR 0.28).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    steps: int = 1000
    beta_start: float = 1e-5
    beta_end: float = 5e-3
    alpha_bar: torch.Tensor = field(init=False, repr=False)  # (steps,), float64

    def __post_init__(self):
        betas = torch.sigmoid(torch.linspace(-6, 6, self.steps, dtype=torch.float64))
        betas = betas * (self.beta_end - self.beta_start) + self.beta_start
        object.__setattr__(self, "alpha_bar", torch.cumprod(1 - betas, dim=0))

    def _check(self, k: int) -> None:
        if not 0 <= k < self.steps:
            raise ValueError(f"noise step k={k} is outside 0..{self.steps - 1}")

    def signal(self, k: int) -> float:
        """sqrt(alpha_bar_k): how much of the image is left at step k."""
        self._check(k)
        return float(self.alpha_bar[k].sqrt())

    def noise(self, k: int) -> float:
        """sqrt(1 - alpha_bar_k): the standard deviation of the added noise at step k."""
        self._check(k)
        return float((1 - self.alpha_bar[k]).sqrt())

    def add_noise(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_k for a tensor x of any shape (pixels in [0, 1] or a normalised tensor); same dtype as x."""
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.dtype)
        return self.signal(k) * x + self.noise(k) * eps
