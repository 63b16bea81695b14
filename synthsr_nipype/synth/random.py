"""Seeded draws: every random number of a sample comes from one CPU ``torch.Generator``.

Drawing on the CPU (and moving tensors to the device afterwards) makes a batch a function of its seed alone,
bit for bit, whatever device the augmentation then runs on.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sample ``index`` of the batch drawn with ``seed`` (independent streams)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) & ((1 << 63) - 1))


def uniform(rng: torch.Generator, low: float, high: float, n: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=rng, dtype=torch.float64)


def normal(rng: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=rng, dtype=torch.float32)
