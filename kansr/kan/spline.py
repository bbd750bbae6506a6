"""B-spline basis on per-input knot grids (table-driven, see `basis_table`) and least squares.

Shapes: B = batch, I = inputs of a layer, O = outputs, G = grid intervals, k = spline order,
K = G + k basis functions per input, grid has G + 2k + 1 knots per input (k extended knots
on each side so that the basis is a partition of unity on the whole grid range).
"""

from __future__ import annotations

from typing import NamedTuple

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


def greville(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Greville abscissae (I, G + k) of a grid (I, G + 2k + 1): the spline coefficients that
    reproduce the identity x exactly (so a * greville + b gives the line a x + b)."""
    n_coef = grid.shape[1] - k - 1
    return grid.unfold(1, k, 1)[:, 1 : 1 + n_coef].mean(-1)


class SplineTable(NamedTuple):
    """Per-grid constants for `eval_basis`, built once per grid by `basis_table`.

    Column i * (n + 1) + idx of `rows` describes knot interval [grid[i, idx-1], grid[i, idx]):
    its left knot, 1 / width, -1/2, then the power-form coefficients P[d, r] (in u - 1/2) of
    the k + 1 basis functions alive there; idx = 0 and n (outside the grid) are zero.
    Function r of interval column idx is basis function clamp(idx + `shift`[r]): dead ones
    (zero rows) land on real columns and add 0. Stored feature-major so that gathered
    samples lie contiguous: every Horner step is a plain vector op over samples. `recip`
    (I, k + 1, n) holds 1 / (t[c + p] - t[c]) (0 for repeated knots) for the compiled
    Cox-de Boor loop (`kernels.basis`).
    """

    grid: torch.Tensor  # (I, n) contiguous, in the table's dtype
    rows: torch.Tensor  # (3 + (k + 1)^2, I * (n + 1))
    offset: torch.Tensor  # (I, 1) int64: first column of each input
    shift: torch.Tensor  # (k + 1, 1) int64: r - k - 1
    k: int
    recip: torch.Tensor  # (I, k + 1, n)


def _pad_knots(grid: torch.Tensor, k: int) -> torch.Tensor:
    """k + 1 more knots on each side (I, n + 2k + 2); they only shape basis functions we drop."""
    h_lo = (grid[:, 1:2] - grid[:, :1]).clamp_min(1.0)
    h_hi = (grid[:, -1:] - grid[:, -2:-1]).clamp_min(1.0)
    steps = torch.arange(1, k + 2, dtype=grid.dtype, device=grid.device)[None, :]
    return torch.cat([grid[:, :1] - h_lo * steps.flip(-1), grid, grid[:, -1:] + h_hi * steps], 1)


def _times_u(poly: torch.Tensor) -> torch.Tensor:
    """Multiply polynomials (..., degree + 1 coefficients) by u; the top degree stays empty."""
    return torch.nn.functional.pad(poly[..., :-1], (1, 0))


@torch.no_grad()
def basis_table(grid: torch.Tensor, k: int, dtype: torch.dtype | None = None) -> SplineTable:
    """Power-form pieces of every basis function on every knot interval of `grid` (I, n).

    Cox-de Boor run once, in float64, on polynomial coefficients in the local variable
    u = (x - t_j) / (t_{j+1} - t_j) - 1/2 of each interval, so that evaluating B samples is a
    searchsorted, a table gather and k fused multiply-adds on (k + 1, B * I) instead of ~7k
    broadcast ops on (B, I, n). Zero-width intervals (repeated knots) are never selected and
    their 0/0 terms are taken as 0.
    """
    dtype = dtype or grid.dtype
    g = grid.detach().to(torch.float64)
    n_in, n = g.shape
    t = _pad_knots(g, k)  # t[:, q] = knot q - (k + 1)
    s = k + 1
    j = torch.arange(n - 1, device=g.device)  # intervals [g_j, g_j+1)
    width = g[:, 1:] - g[:, :-1]  # (I, J)
    left = g[:, :-1]
    # poly[..., r, d]: coefficient of u^d of the alive function m = j - p + r at level p.
    poly = torch.zeros(n_in, n - 1, 1, s, dtype=torch.float64, device=g.device)
    poly[..., 0] = 1.0
    for p in range(1, k + 1):
        m = j[:, None] - p + torch.arange(p + 1, device=g.device)[None, :]  # (J, p+1)
        t_m, t_mp = t[:, m + s], t[:, m + p + s]  # knots m, m+p
        t_m1, t_mp1 = t[:, m + 1 + s], t[:, m + p + 1 + s]  # knots m+1, m+p+1
        d_a, d_b = t_mp - t_m, t_mp1 - t_m1
        inv_a = torch.where(d_a > 0, 1.0 / d_a, torch.zeros_like(d_a))
        inv_b = torch.where(d_b > 0, 1.0 / d_b, torch.zeros_like(d_b))
        w = width[..., None]
        # (x - t_m) / d_a = a0 + a1 u ;  (t_mp1 - x) / d_b = b0 + b1 u
        a0, a1 = (left[..., None] + 0.5 * w - t_m) * inv_a, w * inv_a
        b0, b1 = (t_mp1 - left[..., None] - 0.5 * w) * inv_b, -w * inv_b
        zero = poly.new_zeros(n_in, n - 1, 1, s)
        lo = torch.cat([zero, poly], 2)  # N_{m, p-1}, m = j-p..j (first is not alive)
        hi = torch.cat([poly, zero], 2)  # N_{m+1, p-1}
        lo_u, hi_u = _times_u(lo), _times_u(hi)
        poly = a0[..., None] * lo + a1[..., None] * lo_u + b0[..., None] * hi + b1[..., None] * hi_u
    n_basis = n - k - 1
    m = j[:, None] - k + torch.arange(s, device=g.device)[None, :]  # (J, k+1)
    poly = poly * ((m >= 0) & (m < n_basis)).to(poly)[None, ..., None]
    # u - 1/2 is centred: smaller power coefficients, so less rounding in float32 Horner. The
    # origin stays the exact knot `left` since x - left is exact near the interval.
    inv_w = torch.where(width > 0, 1.0 / width, 0.0)[..., None]
    body = torch.cat([left[..., None], inv_w, torch.full_like(inv_w, -0.5),
                      poly.transpose(-1, -2).flatten(2)], dim=2)  # (I, J, 3 + s*s)
    rows = torch.nn.functional.pad(body, (0, 0, 1, 1)).to(dtype)  # idx = j + 1; 0, n zero
    offset = torch.arange(0, n_in * (n + 1), n + 1, device=g.device)[:, None]
    recip = g.new_zeros(n_in, k + 1, n)
    for p in range(1, k + 1):
        span = g[:, p:] - g[:, :-p]
        recip[:, p, : n - p] = torch.where(span > 0, 1.0 / span, 0.0)
    return SplineTable(grid.detach().to(dtype).contiguous(),
                       rows.reshape(-1, rows.shape[-1]).t().contiguous(),
                       offset, torch.arange(-k - 1, 0, device=g.device)[:, None], k,
                       recip.to(dtype).contiguous())


# Up to this many knots per input, and from this many samples on (below it the per-op
# overhead of the loop dominates), counting knots <= x by comparisons beats searchsorted on
# CPU: 0.6 ms vs 1.4 ms for 16 inputs x 3,000 rows and 12 knots.
_COMPARE_MAX_KNOTS = 20
_COMPARE_MIN_SAMPLES = 16384


def _interval(xt: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Number of knots <= x per sample (searchsorted right=True), xt (I, B) -> int64 (I, B)."""
    n = grid.shape[1]
    if n > _COMPARE_MAX_KNOTS or xt.numel() < _COMPARE_MIN_SAMPLES or xt.is_cuda:
        return torch.searchsorted(grid, xt, right=True)
    count = (xt >= grid[:, :1]).to(torch.uint8)
    for q in range(1, n):
        count.add_(xt >= grid[:, q : q + 1])
    return count.long()


def eval_basis_kib(x: torch.Tensor, table: SplineTable, with_grad: bool = False):
    """Basis in (K, I, B) layout from a prebuilt table: x (B, I) -> (G + k, I, B).

    Samples are processed input-major (the layout searchsorted needs), which is also the
    layout a KAN layer contracts without a copy. Twice differentiable in x. With `with_grad`,
    returns (basis, d basis / dx) instead, the derivative computed alongside by Horner's rule
    (not differentiable further).
    """
    k, s = table.k, table.k + 1
    grid, rows = table.grid, table.rows
    if grid.dtype != x.dtype:  # e.g. float64 samples through a float32 layer: promote
        grid, rows = grid.to(x.dtype), rows.to(x.dtype)
    n_in, n = grid.shape
    xt = x.t().contiguous()  # (I, B)
    # Interval per sample: 0 left of the grid, n right of it (both zero table columns).
    local = _interval(xt.detach(), grid)
    idx = (local + table.offset).view(-1)
    row = rows.index_select(1, idx)  # (3 + s*s, I*B)
    u = torch.addcmul(row[2], xt.view(-1) - row[0], row[1])
    vals = row[3 + k * s :]  # Horner over the degree: k fused multiply-adds on (k+1, I*B)
    dvals = torch.zeros_like(vals) if with_grad else None
    for d in range(k - 1, -1, -1):
        if dvals is not None:
            dvals = torch.addcmul(vals, dvals, u)
        vals = torch.addcmul(row[3 + d * s : 3 + (d + 1) * s], vals, u)
    # Basis index of alive function r: interval - 1 - k + r (clamped; dead rows are zero).
    cols = (local.view(1, -1) + table.shift).clamp_(0, n - k - 2)
    out = x.new_zeros(n - k - 1, vals.shape[1]).scatter_add_(0, cols, vals)  # in place: no clone
    out = out.view(n - k - 1, n_in, x.shape[0])
    if dvals is None:
        return out
    dout = x.new_zeros(n - k - 1, vals.shape[1]).scatter_add_(0, cols, dvals * row[1])
    return out, dout.view(n - k - 1, n_in, x.shape[0])


def eval_basis(x: torch.Tensor, table: SplineTable) -> torch.Tensor:
    """`bspline_basis` from a prebuilt table: x (B, I) -> (B, I, G + k) (a permuted view)."""
    return eval_basis_kib(x, table).permute(2, 1, 0)


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """Evaluate all B-spline basis functions of order k.

    x: (B, I), grid: (I, G + 2k + 1) -> (B, I, G + k). Zero outside the grid's extent.
    """
    return eval_basis(x, basis_table(grid, k, x.dtype))


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
