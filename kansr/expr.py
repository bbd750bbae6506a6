"""The expression toolkit: evaluating a formula on data (one rule for complex values),
as a torch function, and scoring it (R^2, relative MSE)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import sympy

if TYPE_CHECKING:
    import torch

#: A value whose imaginary part exceeds this share of its magnitude (plus an absolute 1e-12)
#: is not a real result: it becomes NaN (a log or root that left its domain).
IMAG_TOL = 1e-12


def real_values(out: object, n: int) -> np.ndarray:
    """numpy output of a lambdified formula -> (n,) float64; complex results with a
    non-negligible imaginary part become NaN."""
    a = np.asarray(out)
    if np.iscomplexobj(a):
        bad = np.abs(a.imag) > IMAG_TOL * (1.0 + np.abs(a.real))
        a = np.where(bad, np.nan, a.real)
    with np.errstate(all="ignore"):
        a = a.astype(np.float64, copy=False)
    return np.broadcast_to(a, (n,)).copy()


def evaluate(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray) -> np.ndarray:
    """The formula on X (N, len(symbols)) -> (N,) float64 (NaN where it is undefined).

    The formula's symbols are matched to `symbols` by name and renamed before lambdify, so
    names sympy or numpy use themselves (I, E, gamma, lambda) are safe. A symbol not in
    `symbols` is a ValueError.
    """
    X = np.asarray(X, dtype=np.float64)
    expr = sympy.sympify(expr)
    safe = [sympy.Symbol(f"_kansr_x{i}") for i in range(len(symbols))]
    by_name = {s.name: t for s, t in zip(symbols, safe)}
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in by_name)
    if unknown:
        raise ValueError(f"expression uses unknown symbols {unknown}")
    renamed = expr.xreplace({s: by_name[s.name] for s in expr.free_symbols})
    fn = sympy.lambdify(safe, renamed, modules="numpy")
    with np.errstate(all="ignore"):
        out = fn(*X.T)
    return real_values(out, len(X))


def torch_function(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The formula as a differentiable torch function of X (N, len(symbols)) -> (N,); a
    constant formula gives a constant column of X's dtype and device."""
    import torch

    fn = sympy.lambdify(symbols, expr, modules="torch")

    def law(X: torch.Tensor) -> torch.Tensor:
        out = fn(*X.unbind(dim=1))
        return out if torch.is_tensor(out) else torch.full((len(X),), float(out),
                                                           dtype=X.dtype, device=X.device)
    return law


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination (NaN-safe: a non-finite prediction gives -inf)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        return -np.inf
    scale = np.max(np.abs(y)) or 1.0  # overflow-safe for |y| near 1e300
    ss_res = np.sum(((y - pred) / scale) ** 2)
    ss_tot = np.sum(((y - y.mean()) / scale) ** 2)
    return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float(ss_res == 0) - 0.0
