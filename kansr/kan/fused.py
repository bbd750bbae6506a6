"""Fused KAN layer for training: one basis kernel, two matrix products, a hand-written backward.

`KANLayer.forward` builds the layer output out of ~30 small autograd ops (basis lookup,
Horner steps, scatter, masks, two products). On the batch sizes symbolic regression trains on
that is mostly per-op dispatch, paid again in the backward pass: 0.5-0.6 ms per layer for
forward and backward on [2, 5, 1] with 1,000 rows. Here the same function is

    out = basis(x) @ coef_eff + silu(x) @ w_base_eff + bias,

with the dense basis and its x-derivative, feature-major (I*K, B), written by one compiled
loop (numba, on CPU; torch ops elsewhere), and the gradients of coef, w_sp, w_base, bias and
x computed directly from the saved basis (`layer_forward`, `layer_backward`).

`SplineLayerFn` wraps them as the autograd op `KAN.forward` uses for inputs that need no
gradient (on CPU and CUDA). `NetworkMSE`, the loss and gradient `fit` evaluates on CPU with no
autograd graph at all, runs each layer as two compiled calls instead (`kernels`): on small
networks the ~40 torch ops per layer of `layer_forward`/`layer_backward` cost more than their
arithmetic. All of them equal the autograd layers to rounding (tests compare them).

The backward pass is not itself differentiable: callers that need second derivatives in x
(physics-informed losses) use the autograd path, which `KAN.forward` picks whenever its input
requires grad.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np
import sympy
import torch
from torch.autograd.function import once_differentiable

from . import kernels
from .spline import SplineTable, eval_basis_kib
from .symbolic import torch_function

# KANSR_FUSED=0 turns the fused path off (debugging, comparing against the autograd path).
ENABLED = os.environ.get("KANSR_FUSED", "1") != "0"


def use_kernel(x: torch.Tensor) -> bool:
    """Whether the compiled CPU basis kernel serves x (else torch ops do)."""
    return kernels.numba is not None and x.device.type == "cpu"


class LayerBasis(NamedTuple):
    """The basis of a layer's input x (B, I), feature-major: dense_t (I*K, B), row i*K + c
    holding B_c(x_i), and its x-derivative ddense_t (same layout) when x needs a gradient."""

    dense_t: torch.Tensor
    ddense_t: torch.Tensor | None = None


def layer_basis(x: torch.Tensor, table: SplineTable, with_grad: bool,
                kernel: bool | None = None) -> LayerBasis:
    """Basis of x (B, I), with its derivative if `with_grad`.

    `kernel` forces the compiled loop (True) or the torch ops (False); None picks the loop
    on CPU when numba is installed.
    """
    x = x.detach()
    grid, recip = table.grid, table.recip
    if grid.dtype != x.dtype:
        grid, recip = grid.to(x.dtype), recip.to(x.dtype)
    n_rows, n_in = x.shape
    n_knots = grid.shape[1]
    n_basis = n_knots - table.k - 1
    if kernel if kernel is not None else use_kernel(x):
        dense_t = x.new_empty(n_in * n_basis, n_rows)
        ddense_t = x.new_empty(n_in * n_basis, n_rows if with_grad else 0)
        kernels.basis(x.t().contiguous().numpy(), grid.numpy(), recip.numpy(), table.k,
                      dense_t.numpy(), ddense_t.numpy(), with_grad,
                      *kernels.basis_scratch(n_knots, n_rows, dense_t.numpy().dtype))
        return LayerBasis(dense_t, ddense_t if with_grad else None)
    if not with_grad:  # (K, I, B) -> (I*K, B)
        return LayerBasis(eval_basis_kib(x, table).transpose(0, 1).reshape(-1, n_rows))
    basis, dbasis = eval_basis_kib(x, table, with_grad=True)
    return LayerBasis(basis.transpose(0, 1).reshape(-1, n_rows),
                      dbasis.transpose(0, 1).reshape(-1, n_rows))


class _Saved(NamedTuple):
    """What a layer's backward needs from its forward."""

    x: torch.Tensor
    coef: torch.Tensor
    scale: torch.Tensor
    live: torch.Tensor
    coef_eff: torch.Tensor
    wb_eff: torch.Tensor
    act: torch.Tensor
    basis: LayerBasis


def layer_forward(x, coef, w_sp, w_base, bias, live, basis: LayerBasis):
    """out = basis @ coef_eff + silu(x) @ (w_base * live) + bias, coef_eff = coef * w_sp * live;
    returns (out, what `layer_backward` needs). No autograd: callers wrap it."""
    n_in, n_out, n_basis = coef.shape
    scale = w_sp * live
    coef_eff = (coef * scale.unsqueeze(-1)).transpose(1, 2).reshape(n_in * n_basis, n_out)
    wb_eff = w_base * live
    act = torch.nn.functional.silu(x)
    out = torch.addmm(bias, act, wb_eff).addmm_(basis.dense_t.t(), coef_eff)
    return out, _Saved(x, coef, scale, live, coef_eff, wb_eff, act, basis)


def layer_backward(saved: _Saved, grad: torch.Tensor, need: tuple[bool, ...]):
    """Gradients (x, coef, w_sp, w_base, bias) of `layer_forward` for the output gradient grad
    (B, O); an entry is None where `need` (same order) is False."""
    x, coef, scale, live, coef_eff, wb_eff, act, basis = saved
    n_in, n_out, n_basis = coef.shape
    g_x = g_coef = g_wsp = g_wb = g_bias = None
    if need[1] or need[2]:
        # (I*K, B) @ (B, O) -> (I, K, O) -> (I, O, K)
        g_raw = (basis.dense_t @ grad).view(n_in, n_basis, n_out).transpose(1, 2)
        if need[1]:
            g_coef = g_raw * scale.unsqueeze(-1)
        if need[2]:
            g_wsp = (g_raw * coef).sum(-1) * live
    if need[3]:
        g_wb = (act.t() @ grad) * live
    if need[4]:
        g_bias = grad.sum(0)
    if need[0]:
        if basis.ddense_t is None:
            raise RuntimeError("x needs a gradient but its basis has no derivative")
        g_x = torch.ops.aten.silu_backward(grad @ wb_eff.t(), x)  # the silu part
        if use_kernel(x):
            g_t = grad.t().contiguous()
            g_xt = x.new_empty(n_in, len(x))
            kernels.input_grad(g_t.numpy(), coef_eff.numpy(), basis.ddense_t.numpy(),
                               *kernels.input_grad_scratch(max(1, len(x)), len(coef_eff),
                                                           n_out, g_xt.numpy().dtype),
                               g_xt.numpy())
            g_x += g_xt.t()
        else:
            h_t = coef_eff @ grad.t()  # (I*K, B), as the basis
            g_x += (basis.ddense_t * h_t).view(n_in, n_basis, len(x)).sum(1).t()
    return g_x, g_coef, g_wsp, g_wb, g_bias


class SplineLayerFn(torch.autograd.Function):
    """`layer_forward` as an autograd op with `layer_backward` as its backward.

    Inputs: x (B, I), coef (I, O, K), w_sp, w_base (I, O), bias (O,), then the constant
    live (I, O) and a `LayerBasis` of x (its derivative only if x needs a gradient).
    """

    @staticmethod
    def forward(ctx, x, coef, w_sp, w_base, bias, live, basis):  # type: ignore[override]
        out, ctx.saved = layer_forward(x, coef, w_sp, w_base, bias, live, basis)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        return (*layer_backward(ctx.saved, grad, ctx.needs_input_grad[:5]), None, None)


class _LayerBuffers:
    """Scratch arrays of one layer for `NetworkMSE` (B rows), numpy views for the kernels, all
    feature-major (`kernels`). What only the input gradient uses (ddT, h, g_x) has no
    columns where the layer's input needs no gradient (the first layer)."""

    def __init__(self, n_rows: int, coef: torch.Tensor, k: int, n_next: int,
                 need_x: bool) -> None:
        n_in, n_out, n_basis = coef.shape
        width = n_in * (n_basis + 1)
        n_grad = n_rows if need_x else 0

        def empty(*shape, dtype=coef.dtype):
            return torch.empty(shape, dtype=dtype).numpy()

        self.shape = tuple(coef.shape)
        self.sig_t = torch.empty(n_in, n_rows, dtype=coef.dtype)
        self.sig = self.sig_t.numpy()
        self.dense, self.ddense = empty(width, n_rows), empty(width, n_grad)
        np_dtype = self.sig.dtype
        self.tmp_a, self.tmp_b = kernels.basis_scratch(n_basis + k + 1, n_rows, np_dtype)
        self.coef_eff, self.g_raw = empty(width, n_out), empty(width, n_out)
        self.z, self.g_z = empty(n_out, n_rows), empty(n_out, n_rows)
        self.g_block, self.h = kernels.input_grad_scratch(n_grad, width, n_out, np_dtype)
        self.x_next, self.g_x = empty(n_next, n_rows), empty(n_in, n_grad)


def _grad_array(p: torch.Tensor) -> np.ndarray | None:
    """A numpy view of p.grad (created as zeros if missing) for the kernel to add into."""
    if not p.requires_grad:
        return None
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    elif not p.grad.is_contiguous():
        p.grad = p.grad.contiguous()
    return p.grad.numpy()


@functools.lru_cache(maxsize=64)
def _derivative(expr: str):
    """f' of a symbolic edge's f(x) as a torch callable (cached per expression), or None where
    it has no torch form (then `NetworkMSE` leaves the network to autograd)."""
    x = sympy.Symbol("x", real=True)  # Abs' = sign on the reals
    d = sympy.diff(sympy.sympify(expr, locals={"x": x}), x)
    d = d.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)
    d = d.subs(x, sympy.Symbol("x"))
    try:
        fn = torch_function(d)
        fn(torch.tensor([0.37, -0.61], dtype=torch.float64))  # elementwise, not scalar code
    except Exception:  # noqa: BLE001 - any function torch cannot evaluate
        return None
    return fn


class NetworkMSE:
    """Mean squared error of a KAN on fixed rows, and its gradient, without autograd.

    `fit` calls it at every optimizer evaluation. Each layer is two compiled calls
    (`kernels.layer_forward`, `kernels.layer_backward`, product nodes included) and one torch
    sigmoid; the first layer's basis is computed once per grid. On small networks the ~40
    torch ops per layer that `layer_forward`/`layer_backward` issue cost more than their
    arithmetic ([2, 5, 1] on 1,000 rows: 0.8-1.1 ms per evaluation with them, 0.4-0.6 ms
    here, measured alternately on one machine). The kernels' arguments (numpy views of
    tables, parameters and gradients) are gathered once into a plan, remade only when one of
    them is replaced (27 us of Python per evaluation on [2, 5, 1], from 65 us). Gradients
    are added to each parameter's `.grad`, as `backward()` would. Networks with symbolic
    edges (torch callables of their own) use autograd: see `supports`.
    """

    def __init__(self, model, X: torch.Tensor, y: torch.Tensor) -> None:
        self.model = model
        dtype = model.dtype
        # Feature-major, as the kernels work: (features, rows).
        self._X = X.detach().to(dtype).t().contiguous().numpy()
        self._y = y.detach().to(dtype).reshape(len(X), -1).t().contiguous().numpy()
        self._g_out = np.empty_like(self._y)
        self._table0 = None  # the first layer's table whose basis of X the buffers hold
        self._bufs: list[_LayerBuffers] = []
        self._plan: list[tuple] = []
        self._plan_key: tuple | None = None
        # Masks do not change while a fit runs (pruning happens between fits).
        self._live = [(layer.mask * (1.0 - layer.sym_mask)).contiguous().numpy()
                      for layer in model.layers]

    @staticmethod
    def supports(model, X: torch.Tensor) -> bool:
        """A KAN (not another network `fit` trains, e.g. a baseline MLP), CPU rows that need
        no gradient, numba present, symbolic edges (if any) only in the last layer (a separable
        product's fixed output line, say: the common case)."""
        from .network import KAN  # network imports this module

        return (ENABLED and isinstance(model, KAN) and use_kernel(X) and not X.requires_grad
                and all(not layer.symbolic for layer in model.layers[:-1])
                and all(_derivative(e.expr) is not None
                        for e in model.layers[-1].symbolic.values()))

    _NAMES = ("coef", "w_sp", "w_base", "bias")

    def _key(self) -> tuple:
        """What the plan depends on: each layer's spline table and, for every parameter, the
        tensor, its storage and its gradient's (the optimizer re-seats them; a grid update
        replaces them). ~1 us per layer, against ~30 us for remaking the plan."""
        key = []
        for layer in self.model.layers:
            key.append(id(layer.spline_table()))
            params = layer._parameters  # Module.__getattr__ is slow; these are registered
            for n in self._NAMES:
                t = params[n]
                g = t.grad
                key += (id(t), t.data_ptr(), t.requires_grad,
                        -1 if g is None else id(g), -1 if g is None else g.data_ptr())
        return tuple(key)

    def _make_plan(self) -> list[tuple]:
        """Per layer: the kernels' arguments that stay put between evaluations (numpy views
        of tables, parameters and gradients, sizes, buffers)."""
        model, n_rows = self.model, self._X.shape[1]
        shapes = [tuple(layer.coef.shape) for layer in model.layers]
        if [b.shape for b in self._bufs] != shapes:
            self._bufs = [_LayerBuffers(n_rows, layer.coef, model.k, sum(model.width[l + 1]),
                                        need_x=l > 0)
                          for l, layer in enumerate(model.layers)]
            self._table0 = None
        plan = []
        for l, (layer, buf) in enumerate(zip(model.layers, self._bufs)):
            params = [getattr(layer, n) for n in self._NAMES]
            grads = [_grad_array(t) for t in params]
            if any(g is None for g in grads):  # frozen parameters: gradients to spare arrays
                grads = [g if g is not None else np.empty_like(buf.coef_eff, shape=t.shape)
                         for g, t in zip(grads, params)]
            table = layer.spline_table()
            n_sum, n_mult = model.width[l + 1]
            views = [t.detach().numpy() for t in params]
            plan.append((table, table.grid.numpy(), table.recip.numpy(), views, grads,
                         n_sum, n_mult))
        return plan

    @torch.no_grad()
    def __call__(self) -> torch.Tensor:
        """The MSE (a 0-d tensor); its gradient is accumulated into the parameters' .grad."""
        model, x, k, arity = self.model, self._X, self.model.k, self.model.mult_arity
        key = self._key()
        if key != self._plan_key:
            self._plan = self._make_plan()
            self._plan_key = self._key()  # the plan may have created gradients
        bufs, live = self._bufs, self._live
        x_in = x
        for l, (buf, (table, grid, recip, params, _, n_sum, n_mult)) in enumerate(
                zip(bufs, self._plan)):
            if l > 0 or self._table0 is not table:  # else the basis of X is still there
                torch.sigmoid(torch.from_numpy(x), out=buf.sig_t)
                kernels.basis(x, grid, recip, k, buf.dense, buf.ddense, l > 0, buf.tmp_a,
                              buf.tmp_b)
                kernels.silu_rows(x, buf.sig, buf.dense, buf.ddense, l > 0)
            kernels.layer_forward(*params, live[l], n_sum, n_mult, arity, buf.dense,
                                  buf.coef_eff, buf.z, buf.x_next)
            if l == 0:
                self._table0 = table
            x_in, x = x, buf.x_next
        last = model.layers[-1]
        sym = self._symbolic_forward(last, x_in, x) if last.symbolic else None
        mse = kernels.mse_and_grad(x, self._y, self._g_out)
        grad = self._g_out
        for l in range(len(bufs) - 1, -1, -1):
            buf, (_, _, _, params, grads, n_sum, n_mult) = bufs[l], self._plan[l]
            kernels.layer_backward(grad, buf.z, n_sum, n_mult, arity, l > 0, buf.dense,
                                   buf.ddense, params[0], params[1], live[l], buf.coef_eff,
                                   buf.g_z, buf.g_raw, buf.g_block, buf.h, *grads, buf.g_x)
            if sym is not None and l == len(bufs) - 1:
                self._symbolic_backward(sym, grad, buf.g_x if l > 0 else None)
            grad = buf.g_x
        return torch.tensor(mse, dtype=model.dtype)

    @staticmethod
    def _symbolic_forward(layer, x_in: np.ndarray, out: np.ndarray) -> list:
        """Add the last layer's symbolic edges c * f(a x_i + b) + d to its output `out` (O, B)
        in place; what `_symbolic_backward` needs (f and f' at a x_i + b)."""
        saved = []
        with torch.no_grad():
            for (i, j), edge in layer.symbolic.items():
                xi = torch.from_numpy(x_in[i])
                a, b, c, d = (float(v) for v in layer.sym_params[i, j])
                m = float(layer.mask[i, j])
                u = a * xi + b
                fu, dfu = edge.fn(u), _derivative(edge.expr)(u)
                out[j] += (m * (c * fu + d)).numpy()
                saved.append((i, j, xi, a, c, m, fu, dfu))
        return saved

    def _symbolic_backward(self, saved: list, g_out: np.ndarray, g_x: np.ndarray | None) -> None:
        """Gradients of the symbolic edges, in closed form: added into `sym_params.grad` and,
        where the layer's input needs one, into g_x (I, B)."""
        sym = self.model.layers[-1].sym_params
        if sym.requires_grad and sym.grad is None:
            sym.grad = torch.zeros_like(sym)
        for i, j, xi, a, c, m, fu, dfu in saved:
            g = torch.from_numpy(g_out[j]) * m
            inner = g * c * dfu  # d loss / d u, u = a x + b
            if sym.grad is not None:
                sym.grad[i, j] += torch.stack([(inner * xi).sum(), inner.sum(), (g * fu).sum(),
                                               g.sum()])
            if g_x is not None:
                g_x[i] += (inner * a).numpy()
