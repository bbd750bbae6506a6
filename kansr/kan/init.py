"""Data-driven starting points for KANs of a known structure.

A separable product y ~= a * prod_i g_i(x_i) + b is a rank-one model: with every factor but
one held fixed it is linear in that factor's spline coefficients. Alternating least squares
(ALS) over the factors therefore finds it in a few sweeps, where gradient training from a
random start often stalls (one factor near zero silences the gradient of all others, and a
sign-changing factor such as sin(theta) has to cross zero). The result is written into the
network's splines, so training, refinement and the symbolic stages proceed as usual.
"""

from __future__ import annotations

import math

import torch

from .network import KAN
from .spline import bspline_basis, extend_grid, greville


@torch.no_grad()
def init_separable_product(model: KAN, X: torch.Tensor, y: torch.Tensor, *,
                           sweeps: int = 30, ridge: float = 1e-8, tol: float = 1e-3,
                           fix_line_below: float = 0.0) -> float:
    """Start a [n, (0, 1), 1] network wired one input per factor at the ALS rank-one fit.

    X (N, n) and y (N, 1) in the network's units. Factor i becomes a spline g_i on the first
    layer's grid (silu weight 0), the output edge the straight line p -> a * p + b on a grid
    spanning the product's values. When the ALS fit's relative MSE is at most
    `fix_line_below`, the output edge is instead fixed to the symbolic line a * p + b (its
    constants stay trainable): training then cannot bend it, and a bent output edge lets
    every factor bend to match, each into a near-perfect look-alike of its true function.
    Returns the relative MSE of the ALS fit.
    """
    first, last = model.layers
    n = model.n_in
    if model.width[1] != (0, 1) or first.out_dim != n or last.in_dim != 1:
        raise ValueError("init_separable_product needs a [n, (0, 1), 1] network with "
                         f"mult_arity n; got {model}")
    dtype = torch.float64
    Xd, yd = X.to(dtype), y.to(dtype).reshape(-1)
    basis = bspline_basis(Xd, first.grid.to(dtype), first.k)  # (B, n, K)
    var = float(yd.var()) or 1.0
    # Two starts: g_i(x) = x + 2, and the factors of a log-additive fit (ALS from a plain
    # start crawls on ratios such as Y / (1 + sigma): 0.07 relative MSE after 30 sweeps).
    starts = [greville(first.grid.to(dtype), first.k) + 2.0]
    log_start = _log_additive_start(basis, yd)
    if log_start is not None:
        starts.append(log_start)
    runs = [_als(basis, yd, c.clone(), var, sweeps, ridge, tol) for c in starts]
    rel, coef, prod, ab = min(runs, key=lambda r: r[0])
    a, b = float(ab[0]), float(ab[1])
    mdt = first.coef.dtype
    first.coef.zero_()
    first.w_base.zero_()
    first.bias.zero_()
    for i in range(n):
        first.coef[i, i] = coef[i].to(mdt)
    # Output edge: the line a * p + b over the product's range (a little margin).
    lo, hi = float(prod.min()), float(prod.max())
    pad = 0.05 * (hi - lo) + 1e-12
    G = last.grid_size
    inner = torch.linspace(lo - pad, hi + pad, G + 1, dtype=dtype)[None]
    last.grid = extend_grid(inner, last.k).to(last.grid)
    line = greville(last.grid.to(dtype), last.k)[0]
    last.coef.zero_()
    last.coef[0, 0] = (a * line + b).to(mdt)
    last.w_base.zero_()
    last.bias.zero_()
    if rel <= fix_line_below:
        last.fix_edge(0, 0, "x", (1.0, 0.0, a, b))
    return rel


def _als(basis: torch.Tensor, yd: torch.Tensor, coef: torch.Tensor, var: float, sweeps: int,
         ridge: float, tol: float) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alternating least squares for yd ~= a * prod_i (basis_i @ coef_i) + b from `coef`.

    Returns (relative MSE, coef (n, K), product (B,), (a, b))."""
    n, K = coef.shape
    factors = torch.einsum("bik,ik->bi", basis, coef)
    eye = torch.eye(K + 1, dtype=basis.dtype)
    prev = float("inf")
    for _ in range(sweeps):
        for i in range(n):
            others = torch.prod(torch.cat([factors[:, :i], factors[:, i + 1:]], dim=1), dim=1)
            A = torch.cat([basis[:, i, :] * others[:, None], torch.ones_like(yd)[:, None]], 1)
            gram = A.T @ A
            sol = torch.linalg.solve(gram + ridge * gram.diagonal().mean() * eye, A.T @ yd)
            coef[i] = sol[:K]
            factors[:, i] = basis[:, i, :] @ coef[i]
            # keep the factors' scales balanced (the product is unchanged)
            scale = factors[:, i].abs().mean().clamp_min(1e-12)
            coef[i] /= scale
            factors[:, i] /= scale
        prod = torch.prod(factors, dim=1)
        A = torch.stack([prod, torch.ones_like(prod)], dim=1)
        ab = torch.linalg.lstsq(A, yd[:, None]).solution[:, 0]
        rel = float(((A @ ab - yd) ** 2).mean()) / var
        if rel < 1e-20 or (prev < float("inf") and prev - rel <= tol * prev):
            break
        prev = rel
    return rel, coef, prod, ab


def _log_additive_start(basis: torch.Tensor, yd: torch.Tensor, ridge: float = 1e-8
                        ) -> torch.Tensor | None:
    """Factor coefficients (n, K) from log|y - b| ~= sum_i s_i(x_i), or None.

    A product plus offset, y = a * prod g_i + b, is additive in log|y - b| once b is
    known; b is searched on a log-spaced set beyond either end of y's range (where y - b
    keeps one sign), scoring each by the error of b + sign * exp(fit) in y. Each factor
    starts as the spline closest to exp(s_i).
    """
    B, n, K = basis.shape
    lo, hi = float(yd.min()), float(yd.max())
    span = hi - lo
    if not span > 0:
        return None
    A = torch.cat([basis.flatten(1), torch.ones(B, 1, dtype=yd.dtype)], dim=1)
    gram = A.T @ A
    gram = gram + ridge * gram.diagonal().mean() * torch.eye(A.shape[1], dtype=yd.dtype)
    best = None
    for b in [lo - span * 10.0**t for t in range(-3, 3)] + [hi + span * 10.0**t
                                                          for t in range(-3, 3)]:
        sign = 1.0 if b < lo else -1.0
        z = torch.log(sign * (yd - b))
        sol = torch.linalg.solve(gram, A.T @ z)
        err = float(((b + sign * torch.exp(A @ sol) - yd) ** 2).mean())
        if math.isfinite(err) and (best is None or err < best[0]):
            best = (err, sol)
    if best is None:
        return None
    parts = best[1][:-1].reshape(n, K)
    coef = torch.empty(n, K, dtype=yd.dtype)
    for i in range(n):
        target = torch.exp(basis[:, i, :] @ parts[i])
        Bi = basis[:, i, :]
        g = Bi.T @ Bi
        g = g + ridge * g.diagonal().mean() * torch.eye(K, dtype=yd.dtype)
        coef[i] = torch.linalg.solve(g, Bi.T @ target)
    return coef


@torch.no_grad()
def additive_fit_error(X: torch.Tensor, y: torch.Tensor, grid: int = 5, k: int = 3,
                       ridge: float = 1e-8) -> float:
    """Relative MSE of the best y ~= b + sum_i g_i(x_i) with cubic splines g_i (one linear
    least-squares solve): a cheap probe of how additive the data are. X in [-1, 1]."""
    Xd, yd = X.to(torch.float64), y.to(torch.float64).reshape(-1)
    inner = torch.linspace(-1, 1, grid + 1, dtype=torch.float64).expand(X.shape[1], -1)
    basis = bspline_basis(Xd, extend_grid(inner, k), k)  # (B, n, K)
    A = torch.cat([basis.flatten(1), torch.ones_like(yd)[:, None]], dim=1)
    gram = A.T @ A
    eye = torch.eye(A.shape[1], dtype=torch.float64)
    sol = torch.linalg.solve(gram + ridge * gram.diagonal().mean() * eye, A.T @ yd)
    return float(((A @ sol - yd) ** 2).mean()) / (float(yd.var()) or 1.0)


def product_fit_error(X: torch.Tensor, y: torch.Tensor, grid: int = 5, k: int = 3) -> float:
    """Relative MSE of the best y ~= a * prod_i g_i(x_i) + b (ALS; see
    `init_separable_product`): a cheap probe of how separable the data are. X in [-1, 1]."""
    n = X.shape[1]
    probe = KAN([n, (0, 1), 1], grid=grid, k=k, mult_arity=max(n, 2), dtype="float64")
    return init_separable_product(probe, X, y.reshape(-1, 1))
