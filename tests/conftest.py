"""Shared test fixtures (kept minimal)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def square_inputs():
    """Factory: (n, d) samples uniform on [-1, 1]^d from a seeded generator, float64 by default."""

    def make(n: int, d: int = 2, seed: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(n, d, generator=gen, dtype=dtype) * 2 - 1

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests train tiny networks: extra torch threads only contend on a shared CPU (40x slower
    seen on 2 cores). The estimator sets its own thread count (n_threads) and restores it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
