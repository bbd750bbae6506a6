"""Fused KAN layer for training: one basis kernel, two matrix products, a hand-written backward.

`KANLayer.forward` builds the layer output out of ~30 small autograd ops (basis lookup,
Horner steps, scatter, masks, two products). On the batch sizes symbolic regression trains on
that is mostly per-op dispatch, paid again in the backward pass: 0.5-0.6 ms per layer for
forward and backward on [2, 5, 1] with 1,000 rows. Here the same function is

    out = basis(x) @ coef_eff + silu(x) @ w_base_eff + bias,

with the dense basis (B, I*K) and the derivatives of its live functions written by one
compiled loop (numba, on CPU; torch ops elsewhere), and the gradients of coef, w_sp, w_base,
bias and x computed directly from the saved basis (`layer_forward`, `layer_backward`).

Two users: `SplineLayerFn`, the autograd op `KAN.forward` uses for inputs that need no
gradient, and `NetworkMSE`, the loss and gradient `fit` evaluates with no autograd graph at
all. Both equal the autograd layers to rounding (tests compare all three).

The backward pass is not itself differentiable: callers that need second derivatives in x
(physics-informed losses) use the autograd path, which `KAN.forward` picks whenever its input
requires grad.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .spline import SplineTable, eval_basis_kib

try:  # numba compiles the CPU basis loop; without it the basis comes from torch ops
    import numba
except ImportError:  # pragma: no cover - numba is a core dependency
    numba = None

# KANSR_FUSED=0 turns the fused path off (debugging, comparing against the autograd path).
ENABLED = os.environ.get("KANSR_FUSED", "1") != "0"


# Reassociation and fused multiply-adds let the compiler vectorise the knot count and the
# Horner sums (1.4x faster on 32 x 4,096); no-NaN/no-inf flags are left out so NaN inputs
# stay NaN-safe.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@functools.lru_cache(maxsize=None)
def _basis_kernel(k: int):
    """The compiled basis loop for spline order k (a compile-time constant: Horner unrolls,
    2x faster than a loop over a runtime k). Compiled on first use, about 0.5 s."""
    s = k + 1

    @numba.njit(nogil=True, fastmath=_FASTMATH)
    def basis(x, grid, pieces, dense, dvals, starts, with_grad):  # pragma: no cover
        """Basis of x (B, I) added into dense (B, I, K), zeroed by the caller (zeroing here,
        then adding to the same cells, stalled on store forwarding: 2-2.5x slower); with_grad:
        the derivatives of the k + 1 live functions into dvals (B, I, k + 1) and the column
        of the first into starts (B, I).

        The interval is the number of knots <= x (a branch-free count: grids are short).
        Its k + 1 live functions are Horner sums of the table's power-form pieces, the
        derivative a second Horner sum alongside. Dead functions (the grid's ends, or x
        outside it: table rows 0 and n) have zero pieces and add 0 at a clamped column.
        """
        n_samples, n_in = x.shape
        n = grid.shape[1]
        n_basis = n - s
        for b in range(n_samples):
            for i in range(n_in):
                xv = x[b, i]
                lo = 0
                for q in range(n):
                    lo += grid[i, q] <= xv
                start = lo - s
                p = pieces[i, lo]
                u = (xv - p[0]) * p[1] + p[2]
                for r in range(s):
                    v = p[3 + k * s + r]
                    dv = v - v
                    for d in range(k - 1, -1, -1):
                        dv = dv * u + v
                        v = v * u + p[3 + d * s + r]
                    dense[b, i, min(max(start + r, 0), n_basis - 1)] += v
                    if with_grad:
                        dvals[b, i, r] = dv * p[1]
                if with_grad:
                    starts[b, i] = start

    return basis


def _grad_x_loop(grad, coef_eff, dvals, starts, h, out):  # pragma: no cover - compiled
    """out[b, i] += sum_r dvals[b, i, r] h[b, i, starts[b, i] + r], h = grad @ coef_eff^T
    viewed (B, I, K): the spline part of the input gradient, reading only the k + 1 live
    basis functions. With few outputs h is formed here, from coef_eff viewed (I, K, O), only
    where it is read (pass h with a zero-length first axis); with many, BLAS makes it.
    (The silu part is one vectorised torch op: with a scalar exp here the kernel was 2-5x
    slower.)
    """
    n_samples, n_in = starts.shape
    n_basis, n_out = coef_eff.shape[1], coef_eff.shape[2]
    s = dvals.shape[2]
    inline = h.shape[0] == 0
    for b in range(n_samples):
        for i in range(n_in):
            acc = out[b, i]
            for r in range(s):  # dead functions have dvals 0
                col = min(max(starts[b, i] + r, 0), n_basis - 1)
                if inline:
                    t = acc - acc
                    for o in range(n_out):
                        t += grad[b, o] * coef_eff[i, col, o]
                else:
                    t = h[b, i, col]
                acc += dvals[b, i, r] * t
            out[b, i] = acc


# From this many outputs on, h = grad @ coef_eff^T is one BLAS product rather than k + 1
# short dot products per sample and input (measured on 3,000 x 16 inputs with 16 outputs:
# 0.98 ms inline, 0.36 ms through BLAS).
_H_BLAS_MIN_OUT = 8


def _compile(fn):
    """njit with an on-disk cache; without a writable cache location (numba raises at
    decoration), compile per process instead."""
    if numba is None:
        return None
    try:
        return numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)(fn)
    except RuntimeError:  # pragma: no cover - read-only install and home
        return numba.njit(nogil=True, fastmath=_FASTMATH)(fn)


_grad_x_kernel = _compile(_grad_x_loop)


def use_kernel(x: torch.Tensor) -> bool:
    """Whether the compiled CPU basis kernel serves x (else torch ops do)."""
    return numba is not None and x.device.type == "cpu"


class LayerBasis(NamedTuple):
    """The basis of a layer's input x (B, I), dense (B, I*K), and its x-derivative when x
    needs a gradient: the k + 1 live functions' derivatives dvals (B, I, k + 1) from column
    starts (B, I) (compiled kernel), or the dense ddense (B, I*K) (torch ops)."""

    dense: torch.Tensor
    dvals: torch.Tensor | None = None
    starts: torch.Tensor | None = None
    ddense: torch.Tensor | None = None


def layer_basis(x: torch.Tensor, table: SplineTable, with_grad: bool,
                kernel: bool | None = None) -> LayerBasis:
    """Basis of x (B, I), with its derivative if `with_grad`.

    `kernel` forces the compiled loop (True) or the torch ops (False); None picks the loop
    on CPU when numba is installed.
    """
    x = x.detach()
    grid, pieces = table.grid, table.pieces
    if grid.dtype != x.dtype:
        grid, pieces = grid.to(x.dtype), pieces.to(x.dtype)
    n_rows, n_in = x.shape
    n_basis, s = grid.shape[1] - table.k - 1, table.k + 1
    if kernel if kernel is not None else use_kernel(x):
        dense = x.new_zeros(n_rows, n_in, n_basis)
        dvals = x.new_empty(n_rows if with_grad else 0, n_in, s)
        starts = torch.empty(n_rows if with_grad else 0, n_in, dtype=torch.int64)
        _basis_kernel(table.k)(x.contiguous().numpy(), grid.numpy(), pieces.numpy(),
                               dense.numpy(), dvals.numpy(), starts.numpy(), with_grad)
        return LayerBasis(dense.view(n_rows, -1), *((dvals, starts) if with_grad else ()))
    if not with_grad:
        return LayerBasis(eval_basis_kib(x, table).permute(2, 1, 0).reshape(n_rows, -1))
    basis, dbasis = eval_basis_kib(x, table, with_grad=True)
    return LayerBasis(basis.permute(2, 1, 0).reshape(n_rows, -1),
                      ddense=dbasis.permute(2, 1, 0).reshape(n_rows, -1))


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
    out = torch.addmm(bias, act, wb_eff).addmm_(basis.dense, coef_eff)
    return out, _Saved(x, coef, scale, live, coef_eff, wb_eff, act, basis)


def layer_backward(saved: _Saved, grad: torch.Tensor, need: tuple[bool, ...]):
    """Gradients (x, coef, w_sp, w_base, bias) of `layer_forward` for the output gradient grad
    (B, O); an entry is None where `need` (same order) is False."""
    x, coef, scale, live, coef_eff, wb_eff, act, basis = saved
    n_in, n_out, n_basis = coef.shape
    g_x = g_coef = g_wsp = g_wb = g_bias = None
    if need[1] or need[2]:
        # (I*K, B) @ (B, O) -> (I, K, O) -> (I, O, K)
        g_raw = (basis.dense.t() @ grad).view(n_in, n_basis, n_out).transpose(1, 2)
        if need[1]:
            g_coef = g_raw * scale.unsqueeze(-1)
        if need[2]:
            g_wsp = (g_raw * coef).sum(-1) * live
    if need[3]:
        g_wb = (act.t() @ grad) * live
    if need[4]:
        g_bias = grad.sum(0)
    if need[0]:
        if basis.dvals is None and basis.ddense is None:
            raise RuntimeError("x needs a gradient but its basis has no derivative")
        g_x = torch.ops.aten.silu_backward(grad @ wb_eff.t(), x).contiguous()  # silu part
        if basis.dvals is not None:  # + the spline part, in place
            h = (grad @ coef_eff.t() if n_out >= _H_BLAS_MIN_OUT else x.new_empty(0, 1))
            _grad_x_kernel(grad.contiguous().numpy(),
                           coef_eff.view(n_in, n_basis, n_out).numpy(),
                           basis.dvals.numpy(), basis.starts.numpy(),
                           h.view(-1, n_in, n_basis).numpy(), g_x.numpy())
        else:
            h = grad @ coef_eff.t()  # (B, I*K)
            g_x.add_((basis.ddense * h).view(len(x), n_in, n_basis).sum(-1))
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


def _exclusive_products(f: torch.Tensor) -> torch.Tensor:
    """others[..., j] = prod_{j' != j} f[..., j'] (no division: factors may be 0)."""
    ones = torch.ones_like(f[..., :1])
    left = torch.cat([ones, f[..., :-1]], -1).cumprod(-1)
    right = torch.cat([ones, f.flip(-1)[..., :-1]], -1).cumprod(-1).flip(-1)
    return left * right


class NetworkMSE:
    """Mean squared error of a KAN on fixed rows, and its gradient, without autograd.

    `fit` calls it at every optimizer evaluation. The layers go through the same
    `layer_forward`/`layer_backward` as the autograd op; product nodes and the loss are
    differentiated here by hand. On small networks the autograd graph (nodes, engine,
    gradient accumulation) cost as much as the arithmetic. Gradients are added to each
    parameter's `.grad`, as `backward()` would. Networks with symbolic edges (torch callables
    of their own) use autograd: see `supports`.
    """

    def __init__(self, model, X: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.X, self.y = model, X, y
        self._basis0: tuple | None = None  # (table, LayerBasis) of X on the first layer
        # Masks do not change while a fit runs (pruning happens between fits).
        self._live = [layer.mask * (1.0 - layer.sym_mask) for layer in model.layers]

    @staticmethod
    def supports(model, X: torch.Tensor) -> bool:
        """A KAN (not another network `fit` trains, e.g. a baseline MLP), CPU rows that need
        no gradient, numba present, no symbolic edges."""
        from .network import KAN  # network imports this module

        return (ENABLED and isinstance(model, KAN) and use_kernel(X) and not X.requires_grad
                and all(not layer.symbolic for layer in model.layers))

    def _first_basis(self, layer) -> LayerBasis:
        table = layer.spline_table()
        if self._basis0 is None or self._basis0[0] is not table:
            self._basis0 = (table, layer_basis(self.X, table, False))
        return self._basis0[1]

    @torch.no_grad()
    def __call__(self) -> torch.Tensor:
        """The MSE (a 0-d tensor); its gradient is accumulated into the parameters' .grad."""
        model, x = self.model, self.X
        saved, subnodes = [], []
        for l, layer in enumerate(model.layers):
            live = self._live[l]
            basis = (self._first_basis(layer) if l == 0 else
                     layer_basis(x, layer.spline_table(), True))
            z, sv = layer_forward(x, layer.coef, layer.w_sp, layer.w_base, layer.bias, live,
                                  basis)
            saved.append(sv)
            subnodes.append(z)
            x = model.node_op(z, l + 1)
        diff = x - self.y
        mse = (diff * diff).mean()
        grad = diff * (2.0 / diff.numel())
        for l in range(len(model.layers) - 1, -1, -1):
            layer, z = model.layers[l], subnodes[l]
            n_sum, n_mult = model.width[l + 1]
            if n_mult:  # d prod / d factor = product of the other factors
                factors = z[:, n_sum:].reshape(len(z), n_mult, model.mult_arity)
                g_fac = grad[:, n_sum:, None] * _exclusive_products(factors)
                grad = torch.cat([grad[:, :n_sum], g_fac.flatten(1)], 1)
            params = (layer.coef, layer.w_sp, layer.w_base, layer.bias)
            need = (l > 0, *(p.requires_grad for p in params))
            g_x, *g_params = layer_backward(saved[l], grad, need)
            for p, g in zip(params, g_params):
                if g is None:
                    continue
                if p.grad is None:
                    p.grad = g.contiguous()
                else:
                    p.grad.add_(g)
            grad = g_x
        return mse
