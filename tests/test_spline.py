"""B-spline basis: table-driven evaluation against Cox-de Boor and scipy, gradients, caching."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kansr.kan import KANLayer
from kansr.kan import spline
from kansr.kan.spline import bspline_basis, extend_grid, uniform_grid


def cox_de_boor(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Plain recursion on the full (B, I, n) layout: the reference, (B, I) -> (B, I, G + k)."""
    x, g = x.unsqueeze(-1), grid.unsqueeze(0)
    b = ((x >= g[..., :-1]) & (x < g[..., 1:])).to(x.dtype)
    for p in range(1, k + 1):
        b = ((x - g[..., : -(p + 1)]) / (g[..., p:-1] - g[..., : -(p + 1)]) * b[..., :-1]
             + (g[..., p + 1:] - x) / (g[..., p + 1:] - g[..., 1:-p]) * b[..., 1:])
    return b


def random_grid(n_in: int, G: int, k: int, dtype, seed: int = 0) -> torch.Tensor:
    """Non-uniform extended grid like update_grid makes (sorted samples, end spacing kept)."""
    gen = torch.Generator().manual_seed(seed)
    inner = torch.sort(torch.rand(n_in, G + 1, generator=gen, dtype=dtype) * 6 - 3, 1).values
    inner = inner + 1e-2 * torch.arange(G + 1, dtype=dtype)  # strictly increasing
    return extend_grid(inner, k)


def samples(grid: torch.Tensor, n: int = 300, seed: int = 1) -> torch.Tensor:
    """Random points beyond the grid on both sides, plus every knot exactly."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = grid[:, 0] - 0.5, grid[:, -1] + 0.5
    x = lo + (hi - lo) * torch.rand(n, grid.shape[0], generator=gen, dtype=grid.dtype)
    return torch.cat([x, grid.T], 0)


CASES = [(k, G, uni) for k in (1, 2, 3, 4) for G in (1, 3, 5, 10) for uni in (True, False)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("k,G,uni", CASES)
def test_matches_recursion_with_derivatives(dtype, tol, k, G, uni):
    grid = uniform_grid(3, G, k, dtype=dtype) if uni else random_grid(3, G, k, dtype)
    x = samples(grid).requires_grad_(True)
    ref, new = cox_de_boor(x, grid, k), bspline_basis(x, grid, k)
    assert new.shape == (len(x), 3, G + k)
    torch.testing.assert_close(new, ref, atol=tol, rtol=0)
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x, create_graph=True)
    (g_new,) = torch.autograd.grad((new * w).sum(), x, create_graph=True)
    scale = g_ref.abs().max().clamp_min(1)
    torch.testing.assert_close(g_new / scale, g_ref / scale, atol=tol, rtol=0)
    if k >= 2:  # second derivatives, as PDE losses use them
        (h_ref,) = torch.autograd.grad(g_ref.sum(), x)
        (h_new,) = torch.autograd.grad(g_new.sum(), x)
        scale = h_ref.abs().max().clamp_min(1)
        torch.testing.assert_close(h_new / scale, h_ref / scale, atol=10 * tol, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_matches_scipy_and_partition_of_unity(k):
    grid = random_grid(2, 7, k, torch.float64, seed=3)
    x = samples(grid, 500)
    basis = bspline_basis(x, grid, k)
    for i in range(2):
        t = grid[i].numpy()
        inside = (x[:, i] >= t[k]) & (x[:, i] < t[-k - 1])
        xi = x[inside, i].numpy()
        ref = BSpline.design_matrix(xi, t, k).toarray()
        np.testing.assert_allclose(basis[inside, i].numpy(), ref, atol=1e-12)
        np.testing.assert_allclose(basis[inside, i].sum(-1).numpy(), 1.0, atol=1e-12)
        outside = (x[:, i] < t[0]) | (x[:, i] >= t[-1])
        assert outside.any() and torch.all(basis[outside, i] == 0)


def test_edge_cases():
    grid = uniform_grid(2, 5, 3, dtype=torch.float64)
    assert bspline_basis(torch.zeros(0, 2, dtype=torch.float64), grid, 3).shape == (0, 2, 8)
    # float32 samples through a float64 grid (and back) still evaluate
    x = torch.rand(10, 2) * 2 - 1
    torch.testing.assert_close(bspline_basis(x, grid, 3).double(),
                               bspline_basis(x.double(), grid, 3), atol=1e-6, rtol=0)
    # repeated knots give finite values instead of 0/0
    rep = torch.tensor([[-3.0, -2.0, -1.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    assert torch.isfinite(bspline_basis(torch.linspace(-4, 5, 50)[:, None].double(), rep, 3)).all()


def test_layer_table_follows_grid():
    torch.manual_seed(0)
    layer = KANLayer(2, 3, grid_size=5, k=3)
    x = torch.rand(200, 2) * 2 - 1
    y0 = layer(x)
    with torch.no_grad():
        layer.grid.mul_(1.5)  # in place: the version counter moves
    torch.testing.assert_close(layer.basis(x), cox_de_boor(x, layer.grid, 3), atol=1e-6, rtol=0)
    layer.grid = uniform_grid(2, 5, 3, -2.0, 2.0)  # reassigned, as prune does
    torch.testing.assert_close(layer.basis(x), cox_de_boor(x, layer.grid, 3), atol=1e-6, rtol=0)
    layer.update_grid(x)
    torch.testing.assert_close(layer.basis(x), cox_de_boor(x, layer.grid, 3), atol=1e-6, rtol=0)
    assert layer(x).shape == y0.shape
    layer = layer.double()
    xd = x.double()
    torch.testing.assert_close(layer.basis(xd), cox_de_boor(xd, layer.grid, 3), atol=1e-12,
                               rtol=0)


def test_layer_forward_matches_edge_sum():
    torch.manual_seed(0)
    layer = KANLayer(3, 4, grid_size=6, k=3, dtype=torch.float64)
    x = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    expected = layer.edge_activations(x).sum(1)
    if hasattr(layer, "bias"):  # sub-node bias (pruning folds constants into it)
        expected = expected + layer.bias
    torch.testing.assert_close(layer(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_batches_pick_the_same_intervals(dtype):
    """From 16,384 samples on, intervals are found by counting knots; they must agree with
    searchsorted exactly, knots and points beyond the grid included."""
    grid = random_grid(4, 10, 3, dtype, seed=5)
    x = torch.cat([samples(grid, 6000, seed=4), grid.T.repeat(20, 1)])
    assert x.numel() >= spline._COMPARE_MIN_SAMPLES
    xt = x.t().contiguous()
    torch.testing.assert_close(spline._interval(xt, grid),
                               torch.searchsorted(grid, xt, right=True), atol=0, rtol=0)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(bspline_basis(x, grid, 3), cox_de_boor(x, grid, 3), atol=tol,
                               rtol=0)


def test_layer_reuses_the_basis_of_an_unchanged_input_only():
    """Full-batch training reuses the first layer's basis; changing X in place must not."""
    torch.manual_seed(0)
    layer = KANLayer(2, 3, grid_size=5, k=3)
    x = torch.rand(200, 2) * 2 - 1
    first = layer(x)
    for fused in (False, True):  # cached while x is unchanged
        assert layer._cached_basis(x, fused) is layer._cached_basis(x, fused)
    with torch.no_grad():
        x.mul_(0.5)  # in place: the version counter moves
    torch.testing.assert_close(layer(x), layer(x.clone()), atol=0, rtol=0)
    assert not torch.equal(layer(x), first)
    layer.grid = uniform_grid(2, 5, 3, -2.0, 2.0)
    torch.testing.assert_close(layer(x), layer(x.clone()), atol=0, rtol=0)
