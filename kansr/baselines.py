"""Baseline networks (MLP, SIREN, random-Fourier-feature MLP) with the KAN's training interface.

Every model here is a plain ``torch.nn.Module`` mapping (B, n_in) -> (B, n_out), and also
exposes the small interface `kansr.kan.fit` relies on: ``n_in``, ``n_out``, ``dtype``,
``device``, ``n_params()`` and a no-op ``update_grid(x, grid_eps)``. Train them with

    fit(model, X, y, update_grid=False, lamb=0.0)

(``update_grid=False`` avoids rebuilding the optimiser for nothing every few steps; the KAN
sparsity penalty does not apply, so ``lamb`` must stay 0).

Widths follow the KAN convention: ``[n_in, hidden, ..., n_out]``.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "softplus": nn.Softplus,
}

__all__ = ["Baseline", "MLP", "SIREN", "FourierFeatureMLP", "width_for_params"]


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype]
    return dtype


def _check_width(width: Sequence[int]) -> list[int]:
    width = [int(w) for w in width]
    if len(width) < 2 or min(width) < 1:
        raise ValueError(f"width must list at least an input and an output size, all > 0; "
                         f"got {width!r}")
    return width


class Baseline(nn.Module):
    """Shared interface so `kansr.kan.fit` (and `kansr.pde.solve`) can train any baseline."""

    width: list[int]

    @property
    def n_in(self) -> int:
        return self.width[0]

    @property
    def n_out(self) -> int:
        return self.width[-1]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def n_params(self) -> int:
        """Trainable parameter count (fixed buffers such as Fourier matrices excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02) -> None:
        """No grid to adapt: present so grid-aware trainers can call it on any model."""

    def regularization(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The KAN sparsity penalty has no meaning here: fail loudly instead of returning 0."""
        raise NotImplementedError(f"{type(self).__name__} has no KAN sparsity penalty; "
                                  "train it with fit(..., lamb=0)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(width={self.width}, n_params={self.n_params()})"


def _linear_stack(width: Sequence[int], gen: torch.Generator, dtype: torch.dtype) -> nn.ModuleList:
    """Linear layers width[i] -> width[i+1], default PyTorch init drawn from `gen`."""
    layers = nn.ModuleList()
    for fan_in, fan_out in zip(width[:-1], width[1:]):
        lin = nn.Linear(fan_in, fan_out, dtype=dtype)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
        layers.append(lin)
    return layers


class MLP(Baseline):
    """Fully connected network: linear layers with `activation` between them, linear output.

    width [n_in, h_1, ..., n_out]; (B, n_in) -> (B, n_out).
    """

    def __init__(self, width: Sequence[int], activation: str = "tanh", *, seed: int = 0,
                 dtype: torch.dtype | str = torch.float32, device: torch.device | str = "cpu"
                 ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.width, self.activation = _check_width(width), activation
        gen = torch.Generator().manual_seed(seed)
        self.layers = _linear_stack(self.width, gen, _as_dtype(dtype))
        self.act = _ACTIVATIONS[activation]()
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) -> (B, n_out)."""
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


class SIREN(Baseline):
    """Sinusoidal representation network (Sitzmann et al. 2020).

    Hidden layers compute sin(omega_0 * (W x + b)). Initialisation: first layer
    W ~ U(-1/n, 1/n) with n its fan-in; later layers (the linear output included)
    W ~ U(-sqrt(6/n)/omega_0, sqrt(6/n)/omega_0), which keeps pre-activations ~ U(-sqrt6, sqrt6)
    through depth. width [n_in, h_1, ..., n_out]; (B, n_in) -> (B, n_out).
    """

    def __init__(self, width: Sequence[int], omega_0: float = 30.0, *, seed: int = 0,
                 dtype: torch.dtype | str = torch.float32, device: torch.device | str = "cpu"
                 ) -> None:
        super().__init__()
        self.width, self.omega_0 = _check_width(width), float(omega_0)
        gen = torch.Generator().manual_seed(seed)
        self.layers = _linear_stack(self.width, gen, _as_dtype(dtype))
        with torch.no_grad():
            for idx, lin in enumerate(self.layers):
                n = lin.in_features
                bound = 1.0 / n if idx == 0 else math.sqrt(6.0 / n) / self.omega_0
                lin.weight.uniform_(-bound, bound, generator=gen)
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) -> (B, n_out)."""
        for layer in self.layers[:-1]:
            x = torch.sin(self.omega_0 * layer(x))
        return self.layers[-1](x)


class FourierFeatureMLP(Baseline):
    """MLP on random Fourier features (Tancik et al. 2020).

    gamma(x) = [cos(2 pi x B), sin(2 pi x B)] with a fixed (not trained) B (n_in, m),
    B_ij ~ N(0, scale^2), followed by a ReLU MLP. width [n_in, h_1, ..., n_out] gives the MLP
    [2m, h_1, ..., n_out]; (B, n_in) -> (B, n_out). Coordinates are expected in about [-1, 1].
    """

    def __init__(self, width: Sequence[int], n_features: int = 64, scale: float = 10.0, *,
                 activation: str = "relu", seed: int = 0,
                 dtype: torch.dtype | str = torch.float32, device: torch.device | str = "cpu"
                 ) -> None:
        super().__init__()
        if n_features < 1 or scale <= 0:
            raise ValueError(f"need n_features >= 1 and scale > 0, got {n_features}, {scale}")
        self.width, self.n_features, self.scale = _check_width(width), int(n_features), float(scale)
        dtype = _as_dtype(dtype)
        gen = torch.Generator().manual_seed(seed)
        B = torch.randn(self.width[0], self.n_features, generator=gen, dtype=dtype) * self.scale
        self.register_buffer("B", B)
        self.mlp = MLP([2 * self.n_features, *self.width[1:]], activation, seed=seed + 1,
                       dtype=dtype)
        self.to(device)

    @property
    def dtype(self) -> torch.dtype:
        return self.B.dtype

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) -> (B, 2m) Fourier features."""
        proj = 2 * math.pi * x @ self.B
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) -> (B, n_out)."""
        return self.mlp(self.features(x))


def width_for_params(target: int, n_in: int, n_out: int, depth: int,
                     n_params: Callable[[list[int]], int] | None = None) -> list[int]:
    """Width [n_in, h, ..., h, n_out] with `depth` linear layers whose size is nearest `target`.

    `n_params(width)` counts a candidate's parameters (default: a plain MLP's weights and
    biases); the search is over the common hidden size h >= 1.
    """
    if depth < 2:
        raise ValueError("depth counts linear layers and must be >= 2 to have a hidden layer")
    count = n_params or (lambda w: sum((a + 1) * b for a, b in zip(w[:-1], w[1:])))
    best, best_gap = None, float("inf")
    for h in range(1, 4096):
        width = [n_in, *[h] * (depth - 1), n_out]
        gap = abs(count(width) - target)
        if gap < best_gap:
            best, best_gap = width, gap
        elif count(width) > target:
            break
    assert best is not None
    return best
