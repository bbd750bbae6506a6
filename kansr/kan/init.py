"""Data-driven starting points for KANs of a known structure.

A separable product y ~= a * prod_i g_i(x_i) + b is a rank-one model: with every factor but
one held fixed it is linear in that factor's spline coefficients. Alternating least squares
(ALS) over the factors therefore finds it in a few sweeps, where gradient training from a
random start often stalls (one factor near zero silences the gradient of all others, and a
sign-changing factor such as sin(theta) has to cross zero). The result is written into the
network's splines, so training, refinement and the symbolic stages proceed as usual.
"""

from __future__ import annotations

import torch

from .network import KAN
from .spline import bspline_basis, extend_grid, greville


@torch.no_grad()
def init_separable_product(model: KAN, X: torch.Tensor, y: torch.Tensor, *,
                           sweeps: int = 300, ridge: float = 1e-8, tol: float = 1e-9,
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
    line = greville(first.grid.to(dtype), first.k)
    # ALS with the output's offset gets stuck (at a relative MSE of 1e-2 on a(1 - b)) when a
    # starting factor slopes against its true one: each factor starts sloping as y does
    # along its input (the correlation's sign), and from all-rising factors where different.
    yc = yd - yd.mean()
    signs = torch.where((Xd - Xd.mean(0)).T @ yc >= 0, 1.0, -1.0).to(dtype)[:, None]
    starts = [signs] + ([torch.ones_like(signs)] if bool((signs < 0).any()) else [])
    best = None
    for start in starts:
        fitted = _als(basis, yd, line * start + 2.0, sweeps, ridge, tol)
        if best is None or fitted[-1] < best[-1]:
            best = fitted
        if best[-1] < ROUGH_ALS:
            break  # a near-exact product: the other start cannot matter
    coef, prod, a, b, rel = best
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
    inner = torch.linspace(lo - pad, hi + pad, G + 1, dtype=dtype, device=last.grid.device)[None]
    last.grid = extend_grid(inner, last.k).to(last.grid)
    out_line = greville(last.grid.to(dtype), last.k)[0]
    last.coef.zero_()
    last.coef[0, 0] = (a * out_line + b).to(mdt)
    last.w_base.zero_()
    last.bias.zero_()
    if rel <= fix_line_below:
        last.fix_edge(0, 0, "x", (1.0, 0.0, a, b))
    return rel


#: An ALS fit worse than this relative MSE stops once a sweep gains less than
#: `ROUGH_ALS_GAIN` of its error (the data are not a product; the probe only needs the size).
ROUGH_ALS, ROUGH_ALS_GAIN = 1e-4, 1e-3


def _als(basis: torch.Tensor, yd: torch.Tensor, coef: torch.Tensor, sweeps: int, ridge: float,
         tol: float) -> tuple[torch.Tensor, torch.Tensor, float, float, float]:
    """Alternating least squares for yd ~= a * prod_i (basis_i @ coef_i) + b from the
    starting coef (n, K); stops when a sweep gains less than `tol` of the error. Returns
    (coef, product, a, b, relative MSE)."""
    n, K = coef.shape
    coef = coef.clone()
    factors = torch.einsum("bik,ik->bi", basis, coef)
    var = float(yd.var()) or 1.0
    eye = torch.eye(K + 1, dtype=yd.dtype, device=yd.device)
    prev = float("inf")
    for _ in range(max(sweeps, 1)):
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
        # a fit far from separable stops at the first slow sweep; a near-exact one is
        # polished until it stalls (ALS crawls the last digits of e.g. (2 - b)/sqrt(1 - a^2))
        gain = tol if rel < ROUGH_ALS else ROUGH_ALS_GAIN
        if rel < 1e-20 or (prev < float("inf") and prev - rel <= gain * prev):
            break
        prev = rel
    return coef, prod, float(ab[0]), float(ab[1]), rel


@torch.no_grad()
def additive_fit_error(X: torch.Tensor, y: torch.Tensor, grid: int = 5, k: int = 3,
                       ridge: float = 1e-8) -> float:
    """Relative MSE of the best y ~= b + sum_i g_i(x_i) with cubic splines g_i (one linear
    least-squares solve): a cheap probe of how additive the data are. X in [-1, 1]."""
    Xd, yd = X.to(torch.float64), y.to(torch.float64).reshape(-1)
    inner = torch.linspace(-1, 1, grid + 1, dtype=torch.float64,
                           device=X.device).expand(X.shape[1], -1)
    basis = bspline_basis(Xd, extend_grid(inner, k), k)  # (B, n, K)
    A = torch.cat([basis.flatten(1), torch.ones_like(yd)[:, None]], dim=1)
    gram = A.T @ A
    eye = torch.eye(A.shape[1], dtype=torch.float64, device=A.device)
    sol = torch.linalg.solve(gram + ridge * gram.diagonal().mean() * eye, A.T @ yd)
    return float(((A @ sol - yd) ** 2).mean()) / (float(yd.var()) or 1.0)


def product_fit_error(X: torch.Tensor, y: torch.Tensor, grid: int = 5, k: int = 3) -> float:
    """Relative MSE of the best y ~= a * prod_i g_i(x_i) + b (ALS; see
    `init_separable_product`): a cheap probe of how separable the data are. X in [-1, 1]."""
    n = X.shape[1]
    probe = KAN([n, (0, 1), 1], grid=grid, k=k, mult_arity=max(n, 2), dtype="float64",
                device=X.device)
    return init_separable_product(probe, X, y.reshape(-1, 1))
