"""Fused KAN layer for training: one basis kernel, two matrix products, a hand-written backward.

`KANLayer.forward` builds the layer output out of ~30 small autograd ops (basis lookup,
Horner steps, scatter, masks, two products). On the batch sizes symbolic regression trains on
that is mostly per-op dispatch, paid again in the backward pass: about 1 ms per layer
evaluation whatever the size. Here the same function is

    out = basis(x) @ coef_eff + silu(x) @ w_base_eff + bias,

with the dense basis (B, I*K) and its x-derivative written by one compiled loop (numba, on
CPU) and the gradients of coef, w_sp, w_base, bias and x computed directly from the saved
basis. The result equals the autograd path to rounding (tests compare both).

The backward pass is not itself differentiable: callers that need second derivatives in x
(physics-informed losses) use the autograd path, which `KAN.forward` picks whenever its input
requires grad.
"""

from __future__ import annotations

import functools
import os

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
# Horner sums (2x faster); no-NaN/no-inf flags are left out so NaN inputs stay NaN-safe.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@functools.lru_cache(maxsize=None)
def _basis_kernel(k: int):
    """The compiled basis loop for spline order k (a compile-time constant: Horner unrolls,
    2x faster than a loop over a runtime k). Compiled on first use, about 0.5 s."""
    s = k + 1

    @numba.njit(nogil=True, fastmath=_FASTMATH)
    def basis(x, grid, pieces, out, dvals, starts, with_grad):  # pragma: no cover - compiled
        """Dense basis out (B, I, K) of x (B, I); with_grad: the live functions' derivatives
        dvals (B, I, k + 1) and their first column starts (B, I).

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
                row = out[b, i]
                for c in range(n_basis):
                    row[c] = 0.0
                lo = 0
                for q in range(n):
                    lo += grid[i, q] <= xv
                start = lo - s
                starts[b, i] = start
                p = pieces[i, lo]
                u = (xv - p[0]) * p[1] + p[2]
                for r in range(s):
                    v = p[3 + k * s + r]
                    dv = v - v
                    for d in range(k - 1, -1, -1):
                        dv = dv * u + v
                        v = v * u + p[3 + d * s + r]
                    row[min(max(start + r, 0), n_basis - 1)] += v
                    if with_grad:
                        dvals[b, i, r] = dv * p[1]

    return basis


def _grad_x_loop(grad, coef_eff, dvals, starts, h, out):  # pragma: no cover - compiled
    """out[b, i] += sum_r dvals[b, i, r] h[b, i, starts[b, i] + r], h = grad @ coef_eff^T
    viewed (B, I, K): the spline part of the input gradient, reading only the k + 1 live
    basis functions. With few outputs h is formed here, from coef_eff viewed (I, K, O), only
    where it is read (pass h with a zero-length first axis); with many, BLAS makes it.
    (The silu part is one vectorised torch op; a scalar exp here cost as much as the rest.)
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
# short dot products per sample and input (measured: 16 outputs, 1.2 vs 0.4 ms on 3000 x 16).
_H_BLAS_MIN_OUT = 8


_grad_x_kernel = (numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)(_grad_x_loop)
                  if numba is not None else None)


def use_kernel(x: torch.Tensor) -> bool:
    """Whether the compiled CPU basis kernel serves x (else torch ops do)."""
    return numba is not None and x.device.type == "cpu"


def dense_basis(x: torch.Tensor, table: SplineTable, with_grad: bool,
                kernel: bool | None = None) -> tuple[torch.Tensor, object]:
    """Basis of x (B, I) as a dense (B, I * K) matrix, plus what `SplineLayerFn` needs for
    the gradient in x when `with_grad` (else None).

    That is (dvals (B, I, k + 1), starts (B, I)) for the compiled loop: the derivatives of the
    live basis functions only; and the dense derivative (B, I * K) for the torch ops.
    `kernel` forces the compiled loop (True) or the torch ops (False); None picks the loop
    on CPU when numba is installed.
    """
    x = x.detach()
    grid, pieces = table.grid, table.pieces
    if grid.dtype != x.dtype:
        grid, pieces = grid.to(x.dtype), pieces.to(x.dtype)
    n_rows, n_in = x.shape
    n_basis = grid.shape[1] - table.k - 1
    if kernel if kernel is not None else use_kernel(x):
        out = x.new_empty(n_rows, n_in, n_basis)
        s = table.k + 1
        dvals = x.new_empty(n_rows if with_grad else 1, n_in, s)  # 1 row: written never
        starts = torch.empty(n_rows, n_in, dtype=torch.int64)
        _basis_kernel(table.k)(x.contiguous().numpy(), grid.numpy(), pieces.numpy(),
                               out.numpy(), dvals.numpy(), starts.numpy(), with_grad)
        return out.view(n_rows, -1), (dvals, starts) if with_grad else None
    if not with_grad:
        return eval_basis_kib(x, table).permute(2, 1, 0).reshape(n_rows, -1), None
    basis, dbasis = eval_basis_kib(x, table, with_grad=True)
    return (basis.permute(2, 1, 0).reshape(n_rows, -1),
            dbasis.permute(2, 1, 0).reshape(n_rows, -1))


class SplineLayerFn(torch.autograd.Function):
    """out = basis @ coef_eff + silu(x) @ (w_base * live) + bias, coef_eff = coef * w_sp * live.

    Inputs: x (B, I), coef (I, O, K), w_sp, w_base (I, O), bias (O,), then constants live
    (I, O), the basis (B, I*K) and `dense_basis`'s gradient information (None: x needs no
    gradient).
    """

    @staticmethod
    def forward(ctx, x, coef, w_sp, w_base, bias, live, basis, dbasis):  # type: ignore[override]
        n_in, n_out, n_basis = coef.shape
        scale = w_sp * live
        coef_eff = (coef * scale.unsqueeze(-1)).transpose(1, 2).reshape(n_in * n_basis, n_out)
        wb_eff = w_base * live
        act = torch.nn.functional.silu(x)
        out = torch.addmm(bias, act, wb_eff).addmm_(basis, coef_eff)
        sparse = isinstance(dbasis, tuple)
        ctx.sparse = sparse
        ctx.save_for_backward(x, coef, scale, live, basis, coef_eff, wb_eff, act,
                              *(dbasis if sparse else (dbasis,)))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x, coef, scale, live, basis, coef_eff, wb_eff, act, *dbasis = ctx.saved_tensors
        need = ctx.needs_input_grad
        n_in, n_out, n_basis = coef.shape
        g_x = g_coef = g_wsp = g_wb = g_bias = None
        if need[1] or need[2]:
            # (I*K, B) @ (B, O) -> (I, K, O) -> (I, O, K)
            g_raw = (basis.t() @ grad).view(n_in, n_basis, n_out).transpose(1, 2)
            if need[1]:
                g_coef = g_raw * scale.unsqueeze(-1)
            if need[2]:
                g_wsp = (g_raw * coef).sum(-1) * live
        if need[3]:
            g_wb = (act.t() @ grad) * live
        if need[4]:
            g_bias = grad.sum(0)
        if need[0]:
            if dbasis[0] is None:
                raise RuntimeError("SplineLayerFn: x needs a gradient but no basis derivative "
                                   "was given")
            if ctx.sparse:
                dvals, starts = dbasis
                g_x = torch.ops.aten.silu_backward(grad @ wb_eff.t(), x).contiguous()
                h = (grad @ coef_eff.t() if n_out >= _H_BLAS_MIN_OUT else x.new_empty(0, 1))
                _grad_x_kernel(grad.contiguous().numpy(),
                               coef_eff.view(n_in, n_basis, n_out).numpy(), dvals.numpy(),
                               starts.numpy(), h.view(-1, n_in, n_basis).numpy(), g_x.numpy())
            else:
                h = grad @ coef_eff.t()  # (B, I*K)
                spline = (dbasis[0] * h).view(len(x), n_in, n_basis).sum(-1)
                g_x = torch.ops.aten.silu_backward(grad @ wb_eff.t(), x).add_(spline)
        return g_x, g_coef, g_wsp, g_wb, g_bias, None, None, None
