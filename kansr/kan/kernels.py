"""Compiled CPU kernels of a KAN layer (numba): basis, forward, backward and the MSE.

Every array here is feature-major: a layer's input is xT (I, B), its basis denseT (I*W, B),
its output zT (O, B), so that the loops over samples are the innermost ones, contiguous and
vectorised (AVX2/AVX-512) by the compiler. In the sample-major layout the same loops ran one
scalar at a time: the basis was 3.7x slower on 3,000 x 16 inputs.

The base branch w_base * silu(x) is treated as one more basis function: each input owns
W = K + 1 rows of the basis, [B_0(x) .. B_{K-1}(x), silu(x)], so that the layer is

    zT = coef_eff^T (O, I*W) @ denseT (I*W, B) + bias,

one BLAS product forward and two backward, whatever the number of inputs. A layer's training
step on CPU is two compiled calls, `layer_forward` and `layer_backward`, around one torch
sigmoid (a scalar exp in a numba loop vectorises neither here nor in numba's own `np.exp`,
and was 3-4x slower than torch's). The arithmetic is that of `fused.layer_forward` and
`fused.layer_backward` (the torch-ops form CUDA uses); tests hold both to autograd.

Kernels compile once and are cached on disk (numba's cache, beside the sources). numba
checks a cached function against its own file only: after editing this file, delete
kansr/kan/__pycache__/*.nbi and *.nbc, or batched.py's compiled loops keep the old kernels.
"""
from __future__ import annotations

import numpy as np

try:  # numba is a core dependency; without it the torch-ops path serves everything
    import numba
except ImportError:  # pragma: no cover
    numba = None

# No fastmath flags: with reassociation and fused multiply-adds allowed, the rounding of the
# compiled loops depended on how they were compiled (fresh in this process or loaded from
# numba's disk cache; likely because cached callees are not inlined and re-optimised with
# their caller), so one seed and one dataset gave different fits in different processes (a
# law found exactly or not, depending on which tests ran before: test_batched.py). Strict IEEE
# arithmetic rounds the same way in every context. Its cost, measured alternating the two in
# fresh processes (float64, 50 L-BFGS steps, one thread): 5-10 % per fit ([2, 5, 1] 0.31 s
# against 0.29 s; 16 batched [2, 5, 1] 1.46-1.51 s against 1.40 s; [4, 16, 16, 1] 4.16 s
# against 4.00-4.07 s).

# Samples per block of the basis recursion: its two (knots, block) scratch arrays stay in
# cache (L1 up to G = 5 in float32). 512 beat 256 and 1,024 on 3,000 x 16 inputs.
BASIS_BLOCK = 512

# `input_grad`: from this many outputs on, h = coef_eff @ g_z is formed by BLAS, a block of
# samples at a time; below, inline, one row of h (an input's basis function) at a time.
H_BLAS_MIN_OUT = 8

# Elements of h per BLAS block in `input_grad`: about 128 KB of float32, inside L2.
H_BLOCK_ELEMENTS = 32768

# Samples per block of `input_grad` when h is formed inline (one row at a time): long enough
# that the loops over samples are not mostly prologue and remainder (blocks of 73 made the
# backward of 32 inputs x 4,096 samples 3x slower).
H_INLINE_BLOCK = 2048


def basis_scratch(n_knots: int, n_rows: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The two scratch arrays `basis` alternates between: (n_knots - 1, block)."""
    shape = (n_knots - 1, max(1, min(BASIS_BLOCK, n_rows)))
    return np.empty(shape, dtype), np.empty(shape, dtype)


def input_grad_scratch(n_rows: int, width: int, n_out: int,
                       dtype) -> tuple[np.ndarray, np.ndarray]:
    """`input_grad`'s scratch (g_block, hT) for n_rows samples, width = I*W basis rows and
    n_out outputs. hT's row count tells `input_grad` how to form h: all width rows by BLAS,
    or a single row inline."""
    if n_out >= H_BLAS_MIN_OUT:
        rows, cols = width, min(n_rows, max(16, H_BLOCK_ELEMENTS // width))
    else:
        rows, cols = 1, min(n_rows, H_INLINE_BLOCK)
    return np.empty((n_out, cols), dtype), np.empty((rows, cols), dtype)


def _jit(fn):
    """numba.njit with an on-disk cache; where no cache location is writable (numba raises at
    decoration), compile per process instead. None without numba."""
    if numba is None:
        return None
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # pragma: no cover - read-only install and home
        return numba.njit(nogil=True)(fn)


@_jit
def basis(xT, knots, recip, k, denseT, ddT, with_grad, tmp_a, tmp_b):  # pragma: no cover
    """B-spline basis of order k of xT (I, B) on knots (I, n): row i*W + c of denseT
    (I*W, B) receives B_c(x_i) for c < n - k - 1 (rows i*W + c beyond are left alone); with
    `with_grad`, the same rows of ddT receive dB_c/dx.

    Cox-de Boor over all basis functions at once, a block of samples at a time (tmp_a, tmp_b:
    `basis_scratch`): every step is a vector op over samples with the knots as scalars, no gathers.
    recip (I, k + 1, n) holds 1 / (t[c + p] - t[c]), 0 for repeated knots (their 0/0 terms
    are 0). Intervals are half-open [t_c, t_c+1): zero outside the knots.
    """
    n_in, n_rows = xT.shape
    n = knots.shape[1]
    n_basis = n - k - 1
    w = denseT.shape[0] // n_in
    block = tmp_a.shape[1]
    one, zero = xT.dtype.type(1), xT.dtype.type(0)
    kf = xT.dtype.type(k)
    for i in range(n_in):
        for b0 in range(0, n_rows, block):
            m = min(block, n_rows - b0)
            xb = xT[i, b0:b0 + m]
            # Rows as 1-D views and two scratch arrays (levels p - 1 and p): updating one
            # array in place, rows c and c + 1, did not vectorise (8x slower).
            prev, cur = tmp_a, tmp_b
            if k == 1:  # level 0: the interval indicators (the derivative needs them)
                for c in range(n - 1):
                    lo, hi = knots[i, c], knots[i, c + 1]
                    out = prev[c]
                    for b in range(m):
                        xv = xb[b]
                        out[b] = one * ((xv >= lo) & (xv < hi))
            else:  # level 1 directly: hats max(0, min(rise, fall)), 20% faster for k = 3
                for c in range(n - 2):
                    lo, hi = knots[i, c], knots[i, c + 2]
                    r1, r2 = recip[i, 1, c], recip[i, 1, c + 1]
                    out = prev[c]
                    if r1 > zero and r2 > zero:
                        for b in range(m):
                            xv = xb[b]
                            out[b] = max(zero, min((xv - lo) * r1, (hi - xv) * r2))
                    else:  # a repeated knot: one side of the hat, the other is empty
                        for b in range(m):
                            xv = xb[b]
                            out[b] = max(zero, (xv - lo) * r1 * (xv < hi)
                                         + (hi - xv) * r2 * (xv >= lo))
            for p in range(1 if k == 1 else 2, k + 1):
                last = p == k
                if last and with_grad:  # dB_c,k/dx = k (B_c,k-1 / (t_c+k - t_c) - ...)
                    for c in range(n_basis):
                        r1, r2 = recip[i, k, c] * kf, recip[i, k, c + 1] * kf
                        pc, pn = prev[c], prev[c + 1]
                        out = ddT[i * w + c, b0:b0 + m]
                        for b in range(m):
                            out[b] = pc[b] * r1 - pn[b] * r2
                for c in range(n_basis if last else n - 1 - p):
                    lo, hi = knots[i, c], knots[i, c + p + 1]
                    r1, r2 = recip[i, p, c], recip[i, p, c + 1]
                    pc, pn = prev[c], prev[c + 1]
                    out = denseT[i * w + c, b0:b0 + m] if last else cur[c]
                    for b in range(m):
                        xv = xb[b]
                        out[b] = (xv - lo) * r1 * pc[b] + (hi - xv) * r2 * pn[b]
                prev, cur = cur, prev


@_jit
def silu_rows(xT, sigT, denseT, ddT, with_grad):  # pragma: no cover - compiled
    """The base branch's rows: silu(x) = x sig(x) into row i*W + W - 1 of denseT, and, with
    `with_grad`, silu'(x) into the same row of ddT; sigT = sigmoid(xT)."""
    n_in, n_rows = xT.shape
    w = denseT.shape[0] // n_in
    one = xT.dtype.type(1)
    for i in range(n_in):
        xi, si = xT[i], sigT[i]
        row = denseT[i * w + w - 1]
        for b in range(n_rows):
            row[b] = xi[b] * si[b]
        if with_grad:
            drow = ddT[i * w + w - 1]
            for b in range(n_rows):
                drow[b] = si[b] * (one + xi[b] * (one - si[b]))


@_jit
def layer_forward(coef, w_sp, w_base, bias, live, n_sum, n_mult, arity, denseT,
                  coef_eff, zT, x_nextT):  # pragma: no cover - compiled
    """One layer forward from its basis denseT (I*W, B) (`basis`, `silu_rows`): sub-nodes
    zT (O, B), nodes x_nextT (n_sum + n_mult, B). coef_eff (I*W, O) receives coef * w_sp *
    live and w_base * live. A product node multiplies `arity` consecutive sub-nodes after the
    n_sum plain ones."""
    n_in, n_out, n_basis = coef.shape
    n_rows = zT.shape[1]
    w = n_basis + 1
    for i in range(n_in):
        for o in range(n_out):
            lv = live[i, o]
            scale = w_sp[i, o] * lv
            for c in range(n_basis):
                coef_eff[i * w + c, o] = coef[i, o, c] * scale
            coef_eff[i * w + n_basis, o] = w_base[i, o] * lv
    np.dot(coef_eff.T, denseT, zT)
    for o in range(n_out):
        bo = bias[o]
        zo = zT[o]
        for b in range(n_rows):
            zo[b] += bo
    for o in range(n_sum):
        x_nextT[o] = zT[o]
    for m in range(n_mult):
        first = n_sum + m * arity
        out = x_nextT[n_sum + m]
        out[:] = zT[first]
        for a in range(1, arity):
            za = zT[first + a]
            for b in range(n_rows):
                out[b] *= za[b]


@_jit
def node_grad(g_nextT, zT, n_sum, n_mult, arity, g_zT):  # pragma: no cover - compiled
    """Sub-node gradient g_zT (O, B) from the node gradient g_nextT (n_sum + n_mult, B): sum
    nodes pass it on, a product node's factors get it times the other factors (no division:
    a factor may be 0)."""
    n_rows = zT.shape[1]
    for o in range(n_sum):
        g_zT[o] = g_nextT[o]
    for m in range(n_mult):
        first = n_sum + m * arity
        for a in range(arity):
            out = g_zT[first + a]
            out[:] = g_nextT[n_sum + m]
            for a2 in range(arity):
                if a2 != a:
                    za = zT[first + a2]
                    for b in range(n_rows):
                        out[b] *= za[b]


@_jit
def layer_backward(g_nextT, zT, n_sum, n_mult, arity, need_x, denseT, ddT, coef, w_sp, live,
                   coef_eff, g_zT, g_raw, g_block, hT, g_coef, g_wsp, g_wb, g_bias,
                   g_xT):  # pragma: no cover - compiled
    """Backward of `layer_forward` for the node gradient g_nextT (n_sum + n_mult, B).

    Parameter gradients are added into g_coef (I, O, K), g_wsp, g_wb (I, O), g_bias (O,), as
    autograd accumulates; the input gradient (if `need_x`) is written to g_xT (I, B) by
    `input_grad` (scratch g_block, hT). Scratch: g_zT (O, B), g_raw (I*W, O).
    """
    n_out, n_rows = zT.shape
    n_in, _, n_basis = coef.shape
    w = n_basis + 1
    zero = g_raw.dtype.type(0)
    node_grad(g_nextT, zT, n_sum, n_mult, arity, g_zT)
    np.dot(denseT, g_zT.T, g_raw)
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
    for o in range(n_out):
        g_bias[o] += g_zT[o].sum()
    if need_x:
        input_grad(g_zT, coef_eff, ddT, g_block, hT, g_xT)


@_jit
def input_grad(g_zT, coef_eff, ddT, g_block, hT, g_xT):  # pragma: no cover - compiled
    """g_xT (I, B) = the layer's input gradient from the sub-node gradient g_zT (O, B):

        g_x[i, b] = sum_c ddT[i*W + c, b] h[i*W + c, b],   h = coef_eff (I*W, O) @ g_z,

    ddT being the derivative of the basis rows (`basis`, `silu_rows`). As the scratch
    (`input_grad_scratch`) says: hT (I*W, C) is made by BLAS a block of C samples at a time
    (from g_block (O, C): in cache), or, with one row, h is formed inline a row at a time.
    """
    n_out, n_rows = g_zT.shape
    n_in = g_xT.shape[0]
    w = ddT.shape[0] // n_in
    zero = g_xT.dtype.type(0)
    chunk = hT.shape[1]
    blas = hT.shape[0] > 1
    for b0 in range(0, n_rows, chunk):
        m = min(chunk, n_rows - b0)
        if blas:  # hT = coef_eff @ g_z for this block (the last one padded with zeros)
            for o in range(n_out):
                g_block[o, :m] = g_zT[o, b0:b0 + m]
                g_block[o, m:] = zero
            np.dot(coef_eff, g_block, hT)
        for i in range(n_in):
            gx = g_xT[i, b0:b0 + m]
            gx[:] = zero
            for c in range(w):
                r = i * w + c
                h = hT[r] if blas else hT[0]
                if not blas:
                    for b in range(m):
                        h[b] = zero
                    for o in range(n_out):
                        co = coef_eff[r, o]
                        go = g_zT[o, b0:b0 + m]
                        for b in range(m):
                            h[b] += co * go[b]
                d = ddT[r, b0:b0 + m]
                for b in range(m):
                    gx[b] += d[b] * h[b]


@_jit
def mse_and_grad(out, y, grad):  # pragma: no cover
    """Mean squared error of out against y (same 2-D shape), accumulated in float64; its
    gradient 2 (out - y) / out.size is written to grad."""
    n_rows, n_out = out.shape
    scale = 2.0 / (n_rows * n_out)
    total = 0.0
    for b in range(n_rows):
        for o in range(n_out):
            d = out[b, o] - y[b, o]
            total += float(d) * float(d)
            grad[b, o] = d * scale
    return total / (n_rows * n_out)
