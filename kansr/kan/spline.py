"""B-spline basis on per-input knot grids (vectorised Cox-de Boor) and least-squares fitting.

Shapes: B = batch, I = inputs of a layer, O = outputs, G = grid intervals, k = spline order,
K = G + k basis functions per input, grid has G + 2k + 1 knots per input (k extended knots
on each side so that the basis is a partition of unity on the whole grid range).
"""

from __future__ import annotations

import torch


def uniform_grid(
    n_in: int,
    grid_size: int,
    k: int,
    low: float | torch.Tensor = -1.0,
    high: float | torch.Tensor = 1.0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Uniform extended knot grid, shape (I, G + 2k + 1). `low`/`high` are scalars or (I,)."""
    low_t = torch.as_tensor(low, dtype=dtype, device=device).reshape(-1, 1).expand(n_in, 1)
    high_t = torch.as_tensor(high, dtype=dtype, device=device).reshape(-1, 1).expand(n_in, 1)
    h = (high_t - low_t) / grid_size
    steps = torch.arange(-k, grid_size + k + 1, dtype=dtype, device=device)[None, :]
    return low_t + h * steps


def extend_grid(inner: torch.Tensor, k: int) -> torch.Tensor:
    """Add k knots on each side of an inner grid (I, G + 1), spaced like the end intervals."""
    h_lo = inner[:, 1:2] - inner[:, 0:1]
    h_hi = inner[:, -1:] - inner[:, -2:-1]
    steps = torch.arange(1, k + 1, dtype=inner.dtype, device=inner.device)[None, :]
    left = inner[:, 0:1] - h_lo * steps.flip(-1)
    right = inner[:, -1:] + h_hi * steps
    return torch.cat([left, inner, right], dim=1)


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Evaluate all B-spline basis functions of order k.

    x: (B, I), grid: (I, G + 2k + 1) -> (B, I, G + k). Zero outside the grid's extent.
    """
    x = x.unsqueeze(-1)
    g = grid.unsqueeze(0)
    bases = ((x >= g[..., :-1]) & (x < g[..., 1:])).to(x.dtype)
    for p in range(1, k + 1):
        left = (x - g[..., : -(p + 1)]) / (g[..., p:-1] - g[..., : -(p + 1)])
        right = (g[..., p + 1 :] - x) / (g[..., p + 1 :] - g[..., 1:-p])
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases


def fit_coefficients(
    x: torch.Tensor, y: torch.Tensor, grid: torch.Tensor, k: int, ridge: float = 1e-10
) -> torch.Tensor:
    """Least-squares spline coefficients so that sum_k coef[i,o,k] B_k(x_i) ~= y[:, i, o].

    x: (B, I), y: (B, I, O), grid: (I, G + 2k + 1) -> coef (I, O, G + k).
    Solved per input in float64 via ridge-regularised normal equations (works on CUDA too,
    and stays well posed when a basis function sees no sample).
    """
    basis = bspline_basis(x.double(), grid.double(), k).permute(1, 0, 2)  # (I, B, K)
    gram = basis.transpose(1, 2) @ basis  # (I, K, K)
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1, keepdim=True).clamp_min(1e-30)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gram = gram + ridge * scale[..., None] * eye
    rhs = basis.transpose(1, 2) @ y.double().permute(1, 0, 2)  # (I, K, O)
    coef = torch.linalg.solve(gram, rhs)  # (I, K, O)
    return coef.permute(0, 2, 1).to(y.dtype)
