"""Common types for the symbolic-regression fallback engines.

A fallback engine receives a small regression problem ``X (N, d), y (N,)``
(typically one KAN edge that no library primitive explains) and returns a
Pareto front of :class:`Candidate` expressions, each re-scored in float64 on
the data by evaluating its sympy expression.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import sympy

from kansr.expr import evaluate

logger = logging.getLogger(__name__)

__all__ = [
    "Candidate",
    "FallbackEngine",
    "expr_complexity",
    "as_design_matrix",
    "make_symbols",
    "score_expression",
    "pareto_front",
    "rescore",
    "get_engine",
]

DEFAULT_TIME_LIMIT = 10.0


@dataclass
class Candidate:
    """One expression proposed by a fallback engine.

    Attributes:
        expr: sympy expression in the caller's variable symbols.
        complexity: number of sympy nodes, see :func:`expr_complexity`.
        mse: mean squared error on the data (float64).
        r2: coefficient of determination ``1 - SSE/SST`` on the data.
    """

    expr: sympy.Expr
    complexity: int
    mse: float
    r2: float


@runtime_checkable
class FallbackEngine(Protocol):
    """A symbolic-regression engine usable as a fallback."""

    name: str

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        variable_names: Sequence[str] | None = None,
    ) -> list[Candidate]:
        """Search expressions for ``y ~ f(X)``.

        ``X`` may be 1-D ``(N,)`` (one variable, named ``"x"`` by default) or
        2-D ``(N, d)`` (variables named ``x0..x{d-1}`` by default). Returns a
        Pareto front sorted by increasing complexity.
        """
        ...


def expr_complexity(expr: sympy.Basic) -> int:
    """Number of nodes of the sympy expression tree, a constant counting as one node.

    Operators (Add, Mul, Pow, functions), symbols and numbers each count one, and so does
    any whole subtree without free symbols: ``sqrt(2)/(2*sqrt(pi))`` is one constant, as
    simple as the float 0.3989 it replaces. So ``x`` -> 1, ``2*x`` -> 3 (Mul, 2, x),
    ``sin(x) + 1`` -> 4. sympy stores ``a - b`` as ``a + (-1)*b`` and ``a/b`` as
    ``a*b**(-1)``, which is counted as such.
    """
    expr = sympy.sympify(expr)
    if not expr.free_symbols:
        return 1
    coeff, rest = (expr.as_coeff_Mul() if isinstance(expr, sympy.Mul)
                   else (sympy.Integer(1), expr))
    if coeff != 1 and rest.free_symbols and not isinstance(rest, sympy.Mul):
        # a product's constant factors (2, sqrt(2), 1/sqrt(pi), ...) form one constant
        return 2 + expr_complexity(rest)
    if isinstance(expr, sympy.Mul):
        consts = [a for a in expr.args if not a.free_symbols]
        others = [a for a in expr.args if a.free_symbols]
        return 1 + (1 if consts else 0) + sum(expr_complexity(a) for a in others)
    return 1 + sum(expr_complexity(a) for a in expr.args)


def make_symbols(
    n_features: int, variable_names: Sequence[str | sympy.Symbol] | None, one_d: bool
) -> list[sympy.Symbol]:
    """sympy symbols for the input columns (default names ``x`` or ``x0..``)."""
    if variable_names is None:
        names: list[str | sympy.Symbol] = (
            ["x"] if one_d else [f"x{i}" for i in range(n_features)]
        )
    else:
        names = list(variable_names)
    if len(names) != n_features:
        raise ValueError(
            f"got {len(names)} variable names for {n_features} input column(s)"
        )
    symbols = [n if isinstance(n, sympy.Symbol) else sympy.Symbol(str(n)) for n in names]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"variable names must be distinct, got {names}")
    return symbols


def as_design_matrix(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate data; return float64 ``X (N, d)``, ``y (N,)`` and whether X was 1-D."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    one_d = X.ndim == 1
    if one_d:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 1-D (N,) or 2-D (N, d), got shape {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} values")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"need at least 2 samples and 1 feature, got X shape {X.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite")
    return X, y, one_d


def score_expression(
    expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray, y: np.ndarray
) -> tuple[float, float] | None:
    """Return ``(mse, r2)`` of ``expr`` on ``(X, y)`` in float64.

    Returns None when the expression cannot be evaluated or gives a
    non-finite value on any sample. ``r2`` is ``1 - SSE/SST``; for a
    constant ``y`` (SST = 0) it is 1.0 on a perfect fit and -inf otherwise.
    """
    try:
        pred = evaluate(expr, symbols, X)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, NameError) as exc:
        logger.debug("cannot evaluate %s: %s", expr, exc)
        return None
    if not np.all(np.isfinite(pred)):
        return None
    resid = y - pred
    sse = float(resid @ resid)
    sst = float(np.sum((y - y.mean()) ** 2))
    mse = sse / y.size
    if sst > 0:
        r2 = 1.0 - sse / sst
    else:
        r2 = 1.0 if sse == 0 else float("-inf")
    return mse, r2


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Non-dominated candidates on (complexity, mse), sorted by complexity.

    A candidate is kept only if its mse is strictly below that of every
    simpler-or-equal candidate kept before it; ties keep the first seen.
    """
    ordered = sorted(candidates, key=lambda c: (c.complexity, c.mse))
    front: list[Candidate] = []
    for cand in ordered:
        # sorted by (complexity, mse): a same-complexity follower never passes
        if not front or cand.mse < front[-1].mse:
            front.append(cand)
    return front


def rescore(
    exprs: Sequence[sympy.Expr],
    symbols: Sequence[sympy.Symbol],
    X: np.ndarray,
    y: np.ndarray,
) -> list[Candidate]:
    """Score expressions on the data, drop non-finite ones, return the Pareto front."""
    cands: list[Candidate] = []
    for expr in exprs:
        score = score_expression(expr, symbols, X, y)
        if score is None:
            logger.debug("discarding non-finite candidate %s", expr)
            continue
        mse, r2 = score
        cands.append(Candidate(expr=expr, complexity=expr_complexity(expr), mse=mse, r2=r2))
    return pareto_front(cands)
