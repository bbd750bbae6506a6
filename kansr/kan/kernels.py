"""Compiled CPU kernels of a KAN layer (numba): basis, forward, backward and the MSE.

A layer's whole training step on CPU is two compiled calls, `layer_forward` and
`layer_backward`, around one vectorised torch op (the sigmoid of the layer's input: a scalar
exp in a numba loop vectorises neither here nor in numba's own `np.exp`, and was 3-4x slower
than torch's). The arithmetic is that of `fused.layer_forward`/`layer_backward` (the
portable torch-ops form that CUDA uses); tests hold both to the autograd layers.

The base branch w_base * silu(x) is treated as one more basis function: each input owns
K + 1 columns of the dense basis, [B_0(x) .. B_{K-1}(x), silu(x)], so that the layer is

    z = dense (B, I*(K+1)) @ coef_eff (I*(K+1), O) + bias,

one BLAS product forward and two backward (one of them in row blocks), whatever the number
of inputs.

The basis kernel is compiled per spline order and process (`basis_kernel`); the others are
cached on disk.
"""
from __future__ import annotations

import functools

import numpy as np

try:  # numba is a core dependency; without it the torch-ops path serves everything
    import numba
except ImportError:  # pragma: no cover
    numba = None

# Reassociation and fused multiply-adds let the compiler vectorise the knot count and the
# Horner sums (1.4x faster on 32 x 4,096); no-NaN/no-inf flags are left out so NaN inputs
# stay NaN-safe.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

# `grad_x_spline`: from this many outputs on, h = grad @ coef_eff^T is one BLAS product
# rather than k + 1 short dot products per sample and input (measured on 3,000 x 16 inputs
# with 16 outputs: 0.98 ms inline, 0.36 ms through BLAS).
H_BLAS_MIN_OUT = 8

# Rows of h per BLAS block in `layer_backward`: about 128 KB of float32, well inside L2.
H_BLOCK_ELEMENTS = 32768


def _jit(fn):
    """numba.njit with an on-disk cache; where no cache location is writable (numba raises at
    decoration), compile per process instead. None without numba."""
    if numba is None:
        return None
    try:
        return numba.njit(cache=True, nogil=True, fastmath=FASTMATH)(fn)
    except RuntimeError:  # pragma: no cover - read-only install and home
        return numba.njit(nogil=True, fastmath=FASTMATH)(fn)


@functools.lru_cache(maxsize=None)
def basis_kernel(k: int):
    """The compiled basis loop for spline order k, a compile-time constant: the Horner loops
    unroll, 2x faster than a runtime k. Compiled per process on first use, about 0.5 s: a
    closure cannot be cached on disk."""
    s = k + 1

    @numba.njit(nogil=True, fastmath=FASTMATH)
    def basis(x, grid, pieces, dense3, dvals, starts, with_grad):  # pragma: no cover
        """Zero dense3 (B, I, W >= K) and write the basis of x (B, I) into its first K
        columns; with_grad: the derivatives of the k + 1 live functions into dvals
        (B, I, k + 1) and the column of the first into starts (B, I).

        The interval is the number of knots <= x (a branch-free count: grids are short).
        Its k + 1 live functions are Horner sums of the table's power-form pieces
        (`SplineTable`), the derivative a second Horner sum alongside. Dead functions (the
        grid's ends, or x outside it: table rows 0 and n) have zero pieces and add 0 at a
        clamped column. (The zeroing is one pass before the loop: zeroing each row and then
        adding to the same cells stalled on store forwarding, 2-2.5x slower.)
        """
        flat = dense3.reshape(dense3.size)
        for j in range(flat.size):
            flat[j] = 0.0
        n_rows, n_in = x.shape
        n = grid.shape[1]
        n_basis = n - s
        for b in range(n_rows):
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
                    dense3[b, i, min(max(start + r, 0), n_basis - 1)] += v
                    if with_grad:
                        dvals[b, i, r] = dv * p[1]
                if with_grad:
                    starts[b, i] = start

    return basis


@_jit
def grad_x_spline(grad, coef_eff, dvals, starts, h, out):  # pragma: no cover - compiled
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


@_jit
def layer_forward(x, sig, fresh, with_grad, coef, w_sp, w_base, bias, live, n_sum, n_mult,
                  arity, dense, dsilu, coef_eff, z, x_next):  # pragma: no cover
    """One layer forward: x (B, I) -> sub-nodes z (B, O) -> nodes x_next (B, n_sum + n_mult).

    dense (B, I*(K+1)) holds the basis of x (`basis_kernel`, which zeroes each input's last
    column); if `fresh` (not reused from an earlier call: the first layer's is reused
    across a fit) silu(x) = x sig(x) is written into those columns from sig = sigmoid(x), and,
    if `with_grad`, silu'(x) into dsilu (B, I) for the backward. coef_eff (I*(K+1), O)
    receives coef * w_sp * live and w_base * live. A product node multiplies `arity`
    consecutive sub-nodes after the n_sum plain ones.
    """
    n_rows, n_in = x.shape
    n_basis = coef.shape[2]
    w = n_basis + 1
    n_out = bias.shape[0]
    if fresh:
        dense3 = dense.reshape((n_rows, n_in, w))
        for b in range(n_rows):
            for i in range(n_in):
                xv, sv = x[b, i], sig[b, i]
                dense3[b, i, n_basis] = xv * sv
                if with_grad:
                    dsilu[b, i] = sv * (1.0 + xv * (1.0 - sv))
    for i in range(n_in):
        for o in range(n_out):
            lv = live[i, o]
            scale = w_sp[i, o] * lv
            for c in range(n_basis):
                coef_eff[i * w + c, o] = coef[i, o, c] * scale
            coef_eff[i * w + n_basis, o] = w_base[i, o] * lv
    np.dot(dense, coef_eff, z)
    for b in range(n_rows):
        for o in range(n_out):
            z[b, o] += bias[o]
        for o in range(n_sum):
            x_next[b, o] = z[b, o]
        for m in range(n_mult):
            prod = z[b, n_sum + m * arity]
            for a in range(1, arity):
                prod *= z[b, n_sum + m * arity + a]
            x_next[b, n_sum + m] = prod


@_jit
def layer_backward(g_next, z, n_sum, n_mult, arity, need_x, k,
                   dense, dvals, starts, dsilu, coef, w_sp, live, coef_eff,
                   g_z, g_raw, h, g_coef, g_wsp, g_wb, g_bias, g_x):  # pragma: no cover
    """Backward of `layer_forward` for the node gradient g_next (B, n_sum + n_mult).

    Parameter gradients are added into g_coef (I, O, K), g_wsp, g_wb (I, O), g_bias (O,), as
    autograd accumulates; the input gradient (if `need_x`) is written to g_x (B, I). Scratch:
    g_z (B, O) the sub-node gradient, g_raw (I*(K+1), O), and h (C, I*(K+1)) for
    g_z @ coef_eff^T, formed by BLAS C rows at a time. Small blocks keep h in cache: on
    [2, 5, 1] with 1,000 rows, h made whole by BLAS beat short dot products per sample and
    input (0.41 against 0.66 ms per evaluation), on [4, 16, 16, 1] with 3,000 rows it lost
    (7.5 against 6.1 ms) while it did not fit in L2.
    """
    n_rows, n_out = z.shape
    n_in, _, n_basis = coef.shape
    w = n_basis + 1
    zero = g_raw.dtype.type(0)
    for b in range(n_rows):
        for o in range(n_sum):
            g_z[b, o] = g_next[b, o]
        for m in range(n_mult):  # d prod / d factor = the product of the other factors
            first = n_sum + m * arity
            for a in range(arity):
                prod = g_next[b, n_sum + m]
                for a2 in range(arity):
                    if a2 != a:
                        prod *= z[b, first + a2]
                g_z[b, first + a] = prod
    np.dot(dense.T, g_z, g_raw)
    for i in range(n_in):
        for o in range(n_out):
            lv = live[i, o]
            scale = w_sp[i, o] * lv
            acc = zero
            for c in range(n_basis):
                gr = g_raw[i * w + c, o]
                g_coef[i, o, c] += gr * scale
                acc += gr * coef[i, o, c]
            g_wsp[i, o] += acc * lv
            g_wb[i, o] += g_raw[i * w + n_basis, o] * lv
    for o in range(n_out):  # a register sum: adding into g_bias[o] per row was slower
        acc = zero
        for b in range(n_rows):
            acc += g_z[b, o]
        g_bias[o] += acc
    if not need_x:
        return
    s = k + 1
    chunk = h.shape[0]
    for r0 in range(0, n_rows, chunk):  # h by BLAS, a block of rows at a time
        r1 = min(r0 + chunk, n_rows)
        hc = h[: r1 - r0]
        np.dot(g_z[r0:r1], coef_eff.T, hc)
        for b in range(r0, r1):
            hb = hc[b - r0]
            for i in range(n_in):
                acc = dsilu[b, i] * hb[i * w + n_basis]
                for r in range(s):  # dead functions have dvals 0
                    col = min(max(starts[b, i] + r, 0), n_basis - 1)
                    acc += dvals[b, i, r] * hb[i * w + col]
                g_x[b, i] = acc


@_jit
def mse_and_grad(out, y, grad):  # pragma: no cover
    """Mean squared error of out against y (both (B, O)), accumulated in float64; its
    gradient 2 (out - y) / (B O) is written to grad."""
    n_rows, n_out = out.shape
    scale = 2.0 / (n_rows * n_out)
    total = 0.0
    for b in range(n_rows):
        for o in range(n_out):
            d = out[b, o] - y[b, o]
            total += float(d) * float(d)
            grad[b, o] = d * scale
    return total / (n_rows * n_out)

