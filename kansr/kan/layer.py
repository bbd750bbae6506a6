"""One KAN layer: every edge is phi_ij(x) = w_base_ij * silu(x) + w_sp_ij * spline_ij(x).

Computed as one basis evaluation plus one matrix product; per-edge activations (B, I, O)
are only formed on request (`edge_activations`). Edges can be masked (pruned) or fixed to a
symbolic function c * f(a * x + b) + d whose four parameters stay trainable.
"""

from __future__ import annotations

import weakref
import sympy
import torch
from torch import nn

from . import fused as _fused
from .symbolic import SymbolicEdge, TorchFunction, torch_function  # noqa: F401 - TorchFunction: old pickles
from .spline import (SplineTable, basis_table, eval_basis, eval_basis_kib, extend_grid,
                     fit_coefficients, greville, uniform_grid)

class KANLayer(nn.Module):
    """A layer of I * O learnable activation functions.

    Parameters: `coef` (I, O, K) spline coefficients, `w_base` and `w_sp` (I, O) scales,
    buffers `grid` (I, G + 2k + 1) and `mask` (I, O). Input (B, I) -> output (B, O).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid_size: int = 5,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.grid_size, self.k = in_dim, out_dim, grid_size, k
        grid = uniform_grid(in_dim, grid_size, k, *grid_range, dtype=dtype)
        self.register_buffer("grid", grid)
        noise = (torch.rand(in_dim, out_dim, grid_size + k, generator=generator, dtype=dtype) - 0.5)
        self.coef = nn.Parameter(noise * noise_scale / grid_size)
        # Base weights as in the KAN paper: silu term initialised like a linear layer.
        bound = 1.0 / in_dim**0.5
        w_base = (torch.rand(in_dim, out_dim, generator=generator, dtype=dtype) * 2 - 1) * bound
        self.w_base = nn.Parameter(w_base)
        self.w_sp = nn.Parameter(torch.ones(in_dim, out_dim, dtype=dtype))
        self.register_buffer("mask", torch.ones(in_dim, out_dim, dtype=dtype))
        self.register_buffer("sym_mask", torch.zeros(in_dim, out_dim, dtype=dtype))
        sym = torch.zeros(in_dim, out_dim, 4, dtype=dtype)
        sym[..., 0] = 1.0
        sym[..., 2] = 1.0
        self.sym_params = nn.Parameter(sym)  # (a, b, c, d) per edge
        # Sub-node bias: where pruning folds the constant part of the edges it removes.
        self.bias = nn.Parameter(torch.zeros(out_dim, dtype=dtype))
        self.symbolic: dict[tuple[int, int], SymbolicEdge] = {}
        self._table: tuple | None = None  # (grid tensor, its version, SplineTable)
        self._basis_cache: tuple | None = None  # (weakref to x, its version, table, fused, basis)

    @torch.no_grad()
    def init_linear(self, cols: list[int], generator: torch.Generator | None = None) -> None:
        """Start the edges into sub-nodes `cols` as random straight lines w_ij * x (no silu).

        Used for the factors of product nodes: with small curved starting edges a product of
        factors starts near zero with a near-zero gradient (each factor's gradient is scaled
        by the others), and training drifts into steep, badly scaled optima.
        """
        k, g = self.k, self.grid
        line = greville(g, k)  # (I, K): coefficients of the identity x
        for j in cols:
            w = torch.randn(self.in_dim, generator=generator, dtype=g.dtype) / self.in_dim**0.5
            self.coef[:, j, :] = w.to(g.device)[:, None] * line
            self.w_base[:, j] = 0.0

    # ------------------------------------------------------------------ forward
    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """B-spline basis of x (B, I) on this layer's grid, (B, I, K)."""
        return eval_basis(x, self.spline_table())

    def spline_table(self) -> SplineTable:
        """Lookup table of the current grid, rebuilt when `grid` is reassigned (update_grid,
        refine, load, prune, .to()) or modified in place (its version counter moves)."""
        grid, cached = self.grid, self._table
        try:
            version = grid._version
        except RuntimeError:  # inference tensors have no version counter: never trust a cache
            return basis_table(grid, self.k)
        if cached is None or cached[0] is not grid or cached[1] != version:
            cached = self._table = (grid, version, basis_table(grid, self.k))
        return cached[2]

    def _cached_basis(self, x: torch.Tensor, fused: bool):
        """Basis of x, (K, I, B) or (fused) a `fused.LayerBasis`, reused while x and the grid
        are unchanged.

        Full-batch training feeds the same X to the first layer at every LBFGS evaluation;
        its basis depends only on X and the grid, so it is computed once per fit (and per grid
        update). Only inputs that need no gradient are cached, and only with grad mode on
        (training), so inference on large batches keeps nothing alive.
        """
        table = self.spline_table()

        def compute():
            if fused:
                return _fused.layer_basis(x, table, False)
            return eval_basis_kib(x, table)

        if x.requires_grad or not torch.is_grad_enabled() or x.is_inference():
            return compute()
        cached = self._basis_cache
        if cached is not None and cached[0]() is x and cached[1] == x._version \
                and cached[2] is table and cached[3] == fused:
            return cached[4]
        basis = compute()
        self._basis_cache = (weakref.ref(x), x._version, table, fused, basis)
        return basis

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, I) -> (B, O): one basis evaluation and one contraction over (I, K).

        fused (default: when x itself needs no gradient) computes it with `fused.SplineLayerFn`,
        whose backward is hand-written and cannot be differentiated again; `KAN.forward`
        decides once for the whole network from its input.
        """
        if fused is None:
            fused = _fused.ENABLED and not x.requires_grad
        live = self.mask * (1.0 - self.sym_mask)
        if fused:
            if x.requires_grad and torch.is_grad_enabled():
                basis = _fused.layer_basis(x, self.spline_table(), True)
            else:
                basis = self._cached_basis(x, fused=True)
            out = _fused.SplineLayerFn.apply(x, self.coef, self.w_sp, self.w_base, self.bias,
                                             live, basis)
        else:
            basis = self._cached_basis(x, fused=False)  # (K, I, B)
            coef = self.coef * (self.w_sp * live).unsqueeze(-1)  # (I, O, K)
            # (K*I, B)^T @ (K*I, O): BLAS reads the transposed basis in place, no copy.
            out = basis.flatten(0, 1).t() @ coef.permute(2, 0, 1).reshape(-1, self.out_dim)
            out = out + nn.functional.silu(x) @ (self.w_base * live) + self.bias
        for (i, j), edge in self.symbolic.items():
            out[:, j] = out[:, j] + self.mask[i, j] * self._symbolic_value(x[:, i], i, j, edge)
        return out

    def _symbolic_value(self, xi: torch.Tensor, i: int, j: int, edge: SymbolicEdge) -> torch.Tensor:
        a, b, c, d = self.sym_params[i, j]
        return c * edge.fn(a * xi + b) + d

    def edge_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge values phi_ij(x_i), shape (B, I, O); masked edges are zero."""
        basis = self.basis(x)
        spline = torch.einsum("bik,iok->bio", basis, self.coef)
        acts = self.w_sp * spline + self.w_base * nn.functional.silu(x).unsqueeze(-1)
        acts = acts * (1.0 - self.sym_mask)
        for (i, j), edge in self.symbolic.items():
            acts[:, i, j] = self._symbolic_value(x[:, i], i, j, edge)
        return acts * self.mask

    def spline_values(self, x: torch.Tensor) -> torch.Tensor:
        """Non-symbolic edge values ignoring masks, (B, I, O): used to refit coefficients."""
        basis = self.basis(x)
        return torch.einsum("bik,iok->bio", basis, self.coef)

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def set_grid(self, new_grid: torch.Tensor, x: torch.Tensor) -> None:
        """Replace the knot grid, refitting coefficients so the splines stay the same on x.

        The fit uses the samples inside the new inner range plus a uniform sweep of it, so
        basis functions without data stay anchored. If the new grid refines the old one (knot
        insertion), the function is preserved there to float precision.
        """
        k = self.k
        lo, hi = new_grid[:, k : k + 1], new_grid[:, -k - 1 : -k]  # new inner range (I, 1)
        # Only points inside the new inner range constrain the fit: there the new basis spans
        # every C2 piecewise cubic on the old breakpoints, so a refinement is exact.
        n_sweep = 4 * new_grid.shape[1]
        t = torch.linspace(0, 1, n_sweep, dtype=x.dtype, device=x.device)[:, None]
        sweep = lo.T + (hi - lo).T * t  # (S, I)
        inside = (x >= lo.T) & (x <= hi.T)
        pts = torch.cat([torch.where(inside, x, sweep[:1].expand_as(x)), sweep], dim=0)
        y = self.spline_values(pts)
        self.grid = new_grid.to(self.grid)
        self.grid_size = new_grid.shape[1] - 2 * k - 1
        self.coef = nn.Parameter(fit_coefficients(pts, y, self.grid, k))

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02,
                    margin: float = 0.01) -> torch.Tensor:
        """Zoom each input's knots onto its samples x (B, I), keeping the function on them exact.

        The new knots of an input are its old knots (extended ones included) strictly inside
        the samples' hull [lo, hi] (widened by `margin`), plus lo and hi. While that gives fewer
        than G intervals, the interval holding the most samples is split at its median sample
        (mixed with its midpoint by `grid_eps`). Every old breakpoint on the data survives, so
        the old piecewise cubic is still a spline on the new knots: only knots the samples
        never reach move. An input whose hull already spans more than G old intervals keeps its
        grid. Returns a bool mask (I,) of the inputs whose grid changed.
        """
        k, G = self.k, self.grid_size
        grid = self.grid.clone()
        changed = torch.zeros(self.in_dim, dtype=torch.bool)
        xs = torch.sort(x, dim=0).values
        for i in range(self.in_dim):
            col = xs[:, i].contiguous()
            lo, hi = float(col[0]), float(col[-1])
            span = hi - lo
            if not span > 0:  # constant input: nothing to adapt to
                continue
            lo, hi = lo - margin * span, hi + margin * span
            old = grid[i]
            knots = [lo] + [float(t) for t in old if lo < float(t) < hi] + [hi]
            if len(knots) - 1 > G:
                continue
            while len(knots) - 1 < G:
                t = torch.tensor(knots, dtype=col.dtype, device=col.device)
                counts = torch.searchsorted(col, t).diff()
                j = int(torch.argmax(counts.double() + 1e-9 * t.diff().double()))
                inside = col[(col >= knots[j]) & (col <= knots[j + 1])]
                mid = 0.5 * (knots[j] + knots[j + 1])
                med = float(inside.median()) if len(inside) else mid
                cut = grid_eps * mid + (1 - grid_eps) * med
                if not knots[j] < cut < knots[j + 1]:
                    cut = mid
                knots.insert(j + 1, cut)
            inner = torch.tensor(knots, dtype=grid.dtype, device=grid.device)[None]
            new = extend_grid(inner, k)[0]
            if not torch.equal(new, old):
                grid[i] = new
                changed[i] = True
        if changed.any():
            self.set_grid(grid, x)
        return changed

    @torch.no_grad()
    def refine(self, new_size: int, x: torch.Tensor) -> None:
        """Coarse to fine: about `new_size` intervals over the current inner range.

        Every old interval is split into m = max(1, round(new_size / G)) equal parts (knot
        insertion), so the function is preserved exactly; the grid gets exactly `new_size`
        intervals when that is a multiple of the current size. Samples beyond the inner range
        widen it by whole old intervals first (at most k per side, where the old spline still
        lives), so the grid may end up a few intervals larger.
        """
        k, G = self.k, self.grid_size
        m = max(1, round(new_size / G))
        below = (self.grid[:, k : k + 1] - x.T).clamp_min(0).amax(dim=1)  # (I,)
        above = (x.T - self.grid[:, k + G : k + G + 1]).clamp_min(0).amax(dim=1)
        h_lo = self.grid[:, k] - self.grid[:, k - 1]
        h_hi = self.grid[:, k + G + 1] - self.grid[:, k + G]
        e_lo = int(torch.ceil(below / h_lo).max().clamp(0, k).item())
        e_hi = int(torch.ceil(above / h_hi).max().clamp(0, k).item())
        inner = self.grid[:, k - e_lo : k + G + 1 + e_hi]
        t = torch.arange(m, dtype=inner.dtype, device=inner.device) / m
        left, width = inner[:, :-1, None], (inner[:, 1:] - inner[:, :-1])[..., None]
        new_inner = torch.cat([(left + width * t).flatten(1), inner[:, -1:]], dim=1)
        self.set_grid(extend_grid(new_inner, k), x)

    # ------------------------------------------------------------------ symbolic edges
    def fix_edge(self, i: int, j: int, expr: str | sympy.Expr,
                 params: tuple[float, float, float, float] = (1.0, 0.0, 1.0, 0.0)) -> None:
        """Fix edge (i, j) to c * f(a * x + b) + d with f given as a sympy expression in x."""
        edge = SymbolicEdge(str(expr), torch_function(expr))
        with torch.no_grad():
            self.sym_params[i, j] = torch.as_tensor(params, dtype=self.sym_params.dtype)
            self.sym_mask[i, j] = 1.0
        self.symbolic[(i, j)] = edge

    def unfix_edge(self, i: int, j: int) -> None:
        """Return edge (i, j) to its spline form."""
        self.symbolic.pop((i, j), None)
        with torch.no_grad():
            self.sym_mask[i, j] = 0.0

    def __getstate__(self) -> dict:
        # Caches are derived data (and hold a weakref, which cannot be pickled): drop them.
        state = super().__getstate__()
        return {**state, "_table": None, "_basis_cache": None}

    def get_extra_state(self) -> dict:  # saved by state_dict()
        symbolic = {f"{i},{j}": e.expr for (i, j), e in self.symbolic.items()}
        return {"symbolic": symbolic, "grid_size": self.grid_size}

    def set_extra_state(self, state: dict) -> None:
        self.grid_size = state["grid_size"]
        self.symbolic = {}
        for key, expr in state["symbolic"].items():
            i, j = map(int, key.split(","))
            self.symbolic[(i, j)] = SymbolicEdge(expr, torch_function(expr))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Grid refinement changes the coefficient count: adopt the saved shapes before loading.
        for name in ("coef", "grid"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                if name == "coef":
                    self.coef = nn.Parameter(torch.empty_like(saved, dtype=self.coef.dtype))
                else:
                    self.grid = torch.empty_like(saved, dtype=self.grid.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
