"""The fused training layer (kansr.kan.fused) against the autograd path it replaces."""

import pytest
import torch

from kansr.kan import KAN, fused
from kansr.kan.spline import basis_table, eval_basis_kib, extend_grid, uniform_grid


def _grid(n_in: int, G: int, k: int, kind: str) -> torch.Tensor:
    if kind == "uniform":
        return uniform_grid(n_in, G, k, -1.5, 2.0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(G + k)
    inner = torch.sort(torch.rand(n_in, G + 1, generator=gen, dtype=torch.float64) * 4 - 2, 1)
    inner = inner.values + 1e-2 * torch.arange(G + 1)
    if kind == "repeated":  # quantile grids of discrete data can repeat knots
        inner[:, 3] = inner[:, 2]
        inner[0, 4] = inner[0, 2]  # a triple knot
    return extend_grid(inner, k)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["uniform", "random", "repeated"])
def test_kernel_basis_and_derivative_match_the_torch_ops(k, kind):
    grid = _grid(3, 6, k, kind)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(500, 3, generator=gen, dtype=torch.float64) * 8 - 4  # beyond the grid too
    x = torch.cat([x, grid.T])  # every knot exactly
    table = basis_table(grid, k)
    ref, dref = eval_basis_kib(x, table, with_grad=True)
    ref, dref = ref.transpose(0, 1), dref.transpose(0, 1)  # (I, K, B)
    basis = fused.layer_basis(x, table, True, kernel=True)
    torch.testing.assert_close(basis.dense_t.view(ref.shape), ref, atol=1e-12, rtol=0)
    dense = basis.ddense_t.view(dref.shape)
    scale = dref.abs().max()
    torch.testing.assert_close(dense / scale, dref / scale, atol=1e-12, rtol=0)
    no_grad = fused.layer_basis(x, table, False, kernel=True)
    assert no_grad.ddense_t is None and torch.equal(no_grad.dense_t, basis.dense_t)
    # Both derivatives against autograd through the twice-differentiable basis: column
    # (i, c) depends on x[:, i] only, so d/dx_i sum_c w B_ic(x_i) = sum_c w dB_ic/dx_i.
    w = torch.randn(dref.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    xg = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad((eval_basis_kib(xg, table).transpose(0, 1) * w).sum(), xg)
    torch_ops = fused.layer_basis(x, table, True, kernel=False)
    for deriv in (dense, torch_ops.ddense_t.view(dref.shape)):
        got = (deriv * w).sum(1).t()
        torch.testing.assert_close(got / auto.abs().max(), auto / auto.abs().max(), atol=1e-12,
                                   rtol=0)


def _model(width, dtype) -> tuple[KAN, torch.Tensor, torch.Tensor]:
    model = KAN(width, grid=6, k=3, seed=1, dtype=dtype)
    with torch.no_grad():
        for layer in model.layers:
            layer.coef.normal_(generator=torch.Generator().manual_seed(3))
            layer.bias.uniform_(-0.3, 0.3)
        model.layers[0].mask[0, 0] = 0.0  # a pruned edge
    model.layers[0].fix_edge(1, 0, "sin(x)", (1.2, 0.1, 0.8, 0.3))  # a symbolic edge
    gen = torch.Generator().manual_seed(4)
    X = torch.rand(300, model.n_in, generator=gen, dtype=dtype) * 2.6 - 1.3
    return model, X, torch.rand(300, model.n_out, generator=gen, dtype=dtype)


def _loss_and_grads(model, X, y):
    model.zero_grad(set_to_none=True)
    out = model(X)
    torch.mean((out - y) ** 2).backward()
    return out.detach(), [p.grad for p in model.parameters()]


def _assert_param_grads(model, grads_ref) -> None:
    """Each parameter's gradient equals autograd's; where autograd's is zero (or never
    reached the parameter), the fused one must be zero (or unset) too."""
    for name, (p, g_ref) in zip([n for n, _ in model.named_parameters()],
                                zip(model.parameters(), grads_ref)):
        if g_ref is None or not g_ref.any():
            assert p.grad is None or not p.grad.any(), f"{name}: nonzero where autograd's is 0"
        else:
            assert p.grad is not None, f"{name}: no gradient"
            torch.testing.assert_close(p.grad, g_ref, atol=1e-12 * g_ref.abs().max().item(),
                                       rtol=0, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kernel", [True, False], ids=["numba", "torch-basis"])
@pytest.mark.parametrize("width", [[3, 5, 2], [2, (1, 1), 1], [4, (2, 2), 3, 1], [2, 3, 9, 1]])
def test_fused_layers_equal_the_autograd_layers(width, kernel, monkeypatch):
    """Same outputs and parameter gradients (masks, symbolic edges, product nodes included)."""
    model, X, y = _model(width, torch.float64)
    monkeypatch.setattr(fused, "ENABLED", False)
    out_ref, grads_ref = _loss_and_grads(model, X, y)
    monkeypatch.setattr(fused, "ENABLED", True)
    monkeypatch.setattr(fused, "use_kernel", lambda x: kernel)
    out, grads = _loss_and_grads(model, X, y)
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    for g, g_ref in zip(grads, grads_ref):
        if g_ref is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, g_ref, atol=1e-12 * g_ref.abs().max().item(), rtol=0)


def test_inputs_that_need_gradients_keep_second_derivatives():
    """Physics-informed losses differentiate the network twice in x: inputs that need a
    gradient take the autograd path (the fused op has first derivatives only)."""
    model, X, _ = _model([2, 4, 1], torch.float64)
    X.requires_grad_(True)
    (gx,) = torch.autograd.grad(model(X).sum(), X, create_graph=True)
    (hx,) = torch.autograd.grad(gx[:, 0].sum(), X)
    eps = 1e-5
    shift = torch.tensor([eps, 0.0], dtype=X.dtype)

    def d0(z):  # first derivative in x_0, by autograd
        z = z.detach().requires_grad_(True)
        return torch.autograd.grad(model(z).sum(), z)[0][:, 0]

    fd = (d0(X + shift) - d0(X - shift)) / (2 * eps)
    torch.testing.assert_close(hx[:, 0], fd, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("width", [[3, 5, 2], [2, (1, 1), 1], [4, (2, 2), 3, 1], [2, 3, 9, 1],
                                   [3, (0, 2), 1]])
def test_network_mse_equals_autograd(width, monkeypatch):
    """The autograd-free loss used by `fit`: same MSE, same gradient for every parameter."""
    model, X, y = _model(width, torch.float64)
    model.layers[0].unfix_edge(1, 0)  # NetworkMSE serves networks without symbolic edges
    if len(model.layers[-1].mask) > 1:
        model.layers[-1].mask[1, 0] = 0.0
    assert fused.NetworkMSE.supports(model, X)
    monkeypatch.setattr(fused, "ENABLED", False)
    ref, grads_ref = _loss_and_grads(model, X, y)
    model.zero_grad(set_to_none=True)
    mse = fused.NetworkMSE(model, X, y)()
    torch.testing.assert_close(mse, torch.mean((ref - y) ** 2), atol=1e-14, rtol=0)
    _assert_param_grads(model, grads_ref)
    model.layers[0].fix_edge(0, 1, "x**2")
    assert not fused.NetworkMSE.supports(model, X)


@pytest.mark.parametrize("width", [[3, 5, 2], [2, (1, 1), 1], [3, (0, 2), 1], [2, 2]])
def test_network_mse_with_symbolic_edges_in_the_last_layer_equals_autograd(width, monkeypatch):
    """A separable product's fixed output line (a symbolic edge of the last layer) keeps the
    autograd-free loss: same MSE, same gradients (sym_params and earlier layers included)."""
    model, X, y = _model(width, torch.float64)
    if len(model.layers) > 1:
        model.layers[0].unfix_edge(1, 0)
    last = model.layers[-1]
    last.fix_edge(0, 0, "x", (1.3, -0.2, 0.7, 0.1))
    last.fix_edge(last.in_dim - 1, last.out_dim - 1, "sin(x)", (0.9, 0.3, 1.1, -0.4))
    assert fused.NetworkMSE.supports(model, X)
    monkeypatch.setattr(fused, "ENABLED", False)
    ref, grads_ref = _loss_and_grads(model, X, y)
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(fused, "ENABLED", True)
    mse = fused.NetworkMSE(model, X, y)()
    torch.testing.assert_close(mse, torch.mean((ref - y) ** 2), atol=1e-14, rtol=0)
    _assert_param_grads(model, grads_ref)


@pytest.mark.parametrize("width", [[2, 1, 1], [3, (0, 2), 1], [3, 5, 2]])
def test_network_mse_reuses_the_first_layer_basis_across_evaluations(width, monkeypatch):
    """`fit` evaluates the same rows many times: the first layer's basis is kept, and an
    evaluation after a parameter change still equals autograd."""
    model, X, y = _model(width, torch.float64)
    model.layers[0].unfix_edge(1, 0)
    mse_fn = fused.NetworkMSE(model, X, y)
    mse_fn()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3),
                                     dtype=p.dtype))
    monkeypatch.setattr(fused, "ENABLED", False)
    ref, grads_ref = _loss_and_grads(model, X, y)
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(mse_fn(), torch.mean((ref - y) ** 2), atol=1e-14, rtol=0)
    _assert_param_grads(model, grads_ref)


@pytest.mark.parametrize("width", [[3, 4, 2, 1], [3, 4, 9, 1]])
def test_network_mse_input_gradient_in_row_blocks(width, monkeypatch):
    """The backward forms h = coef_eff @ g_z a block of samples at a time (by BLAS from
    `H_BLAS_MIN_OUT` outputs on, inline below): blocks of 16 over 300 (the last one partial)
    give the same gradients as autograd."""
    model, X, y = _model(width, torch.float64)
    model.layers[0].unfix_edge(1, 0)
    monkeypatch.setattr(fused, "ENABLED", False)
    ref, grads_ref = _loss_and_grads(model, X, y)
    monkeypatch.setattr(fused.kernels, "H_BLOCK_ELEMENTS", 100)
    monkeypatch.setattr(fused.kernels, "H_INLINE_BLOCK", 16)
    mse_fn = fused.NetworkMSE(model, X, y)
    model.zero_grad(set_to_none=True)
    mse_fn()
    assert [buf.h.shape[1] for buf in mse_fn._bufs] == [0, 16, 16]  # the first needs no h
    _assert_param_grads(model, grads_ref)


def test_network_mse_with_three_factor_products(monkeypatch):
    model = KAN([3, (1, 2), 1], grid=4, mult_arity=3, seed=2, dtype="float64")
    gen = torch.Generator().manual_seed(5)
    X = torch.rand(200, 3, generator=gen, dtype=torch.float64) * 2 - 1
    y = X.prod(1, keepdim=True)
    monkeypatch.setattr(fused, "ENABLED", False)
    ref, grads_ref = _loss_and_grads(model, X, y)
    model.zero_grad(set_to_none=True)
    fused.NetworkMSE(model, X, y)()
    _assert_param_grads(model, grads_ref)
    # A factor that is exactly 0 everywhere: the others' gradients vanish, its own is the
    # product of the others (no division by a factor).
    with torch.no_grad():
        first = model.layers[0]
        for param in (first.coef, first.w_base):
            param[:, 1] = 0.0
        first.bias[1] = 0.0
    ref, grads_ref = _loss_and_grads(model, X, y)
    assert grads_ref[0][:, 1].abs().max() > 0
    model.zero_grad(set_to_none=True)
    fused.NetworkMSE(model, X, y)()
    _assert_param_grads(model, grads_ref)
