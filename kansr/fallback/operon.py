"""Operon (pyoperon) fallback engine, run in process.

pyoperon facts this wrapper relies on (checked against pyoperon 0.6.2):

* ``SymbolicRegressor(optimizer_iterations=0)`` is the default, i.e. no
  constant tuning: we set it > 0.
* With a single objective (the default ``['r2']``) ``pareto_front_`` holds
  only the best model; with ``objectives=['r2', 'length']`` NSGA-II is used
  and ``pareto_front_`` is the whole first front, a list of dicts with keys
  ``'tree'``, ``'model'``, ``'length'``, ``'complexity'``,
  ``'mean_squared_error'``, ... The model picked by ``model_`` (MDL by
  default) is often just linear, so we take the whole front.
* ``get_model_string(tree, precision, names=[...])`` formats a tree in infix
  with custom variable names (default names are ``X1, X2, ...``); powers are
  written ``a ^ b`` and ``inf``/``nan`` may appear as constants.
* ``max_time`` must be an int (seconds); hitting it makes the result depend
  on machine speed, so determinism for a seed holds only when the run ends
  on ``generations`` / ``max_evaluations`` first. ``n_threads=1`` is used.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Sequence

import numpy as np
import sympy
from sympy.parsing.sympy_parser import parse_expr

from .base import DEFAULT_TIME_LIMIT, Candidate, as_design_matrix, make_symbols, rescore

logger = logging.getLogger(__name__)

__all__ = ["OperonEngine", "parse_operon_model"]

DEFAULT_SYMBOLS = "add,sub,mul,div,constant,variable,sin,cos,exp,log,sqrt,square,tanh"

_PLACEHOLDER = "kansrv{}_"


def _real_cbrt(a: sympy.Expr) -> sympy.Expr:
    """Real cube root, as C's ``cbrt`` (defined for negative arguments)."""
    return sympy.sign(a) * sympy.Abs(a) ** sympy.Rational(1, 3)


# Names the Operon infix formatter may emit, mapped to sympy.
_OPERON_FUNCTIONS: dict[str, Any] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "abs": sympy.Abs,
    "floor": sympy.floor,
    "ceil": sympy.ceiling,
    "min": sympy.Min,
    "max": sympy.Max,
    "cbrt": _real_cbrt,
    "square": lambda a: a**2,
    "inf": sympy.oo,
    "nan": sympy.nan,
}


def parse_operon_model(text: str, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """Parse an Operon infix string whose variables are placeholders ``kansrv{i}_``.

    Raises ValueError on unknown names or syntax errors.
    """
    local: dict[str, Any] = dict(_OPERON_FUNCTIONS)
    local.update({_PLACEHOLDER.format(i): s for i, s in enumerate(symbols)})
    unknown = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)) - set(local)
    # scientific-notation exponents ("1e-05") are not names
    unknown = {u for u in unknown if not re.fullmatch(r"[eE]\d*", u)}
    if unknown:
        raise ValueError(f"unknown names {sorted(unknown)} in Operon model {text!r}")
    try:
        expr = parse_expr(text.replace("^", "**"), local_dict=local)
    except (SyntaxError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot parse Operon model {text!r}: {exc}") from exc
    return sympy.sympify(expr)


class OperonEngine:
    """Fallback engine wrapping ``pyoperon.sklearn.SymbolicRegressor``.

    Runs NSGA-II on (R^2, length) and returns the whole Pareto front,
    converted to sympy and re-scored in float64. ``time_limit`` (seconds) is
    a safety cap; the normal budget is ``generations`` x ``population_size``
    (and ``max_evaluations``), which keeps results reproducible per seed.
    """

    name = "operon"

    def __init__(
        self,
        random_state: int = 0,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
        max_length: int = 30,
        population_size: int = 500,
        generations: int = 100,
        max_evaluations: int = 1_000_000,
        optimizer_iterations: int = 10,
        allowed_symbols: str = DEFAULT_SYMBOLS,
        n_threads: int = 1,
        precision: int = 17,
        **extra: Any,
    ) -> None:
        if optimizer_iterations < 1:
            raise ValueError("optimizer_iterations must be >= 1 (0 disables constant tuning)")
        self.random_state = random_state
        self.time_limit = time_limit
        self.max_length = max_length
        self.population_size = population_size
        self.generations = generations
        self.max_evaluations = max_evaluations
        self.optimizer_iterations = optimizer_iterations
        self.allowed_symbols = allowed_symbols
        self.n_threads = n_threads
        self.precision = precision
        self.extra = extra

    def __repr__(self) -> str:
        return (
            f"OperonEngine(random_state={self.random_state}, time_limit={self.time_limit}, "
            f"population_size={self.population_size}, generations={self.generations})"
        )

    def _regressor(self) -> Any:
        try:
            from pyoperon.sklearn import SymbolicRegressor
        except ImportError as exc:
            raise ImportError(
                "the Operon fallback needs pyoperon: pip install kansr[operon]"
            ) from exc
        max_time = None if self.time_limit is None else max(1, math.ceil(self.time_limit))
        params: dict[str, Any] = dict(
            allowed_symbols=self.allowed_symbols,
            objectives=["r2", "length"],
            optimizer_iterations=self.optimizer_iterations,
            max_length=self.max_length,
            population_size=self.population_size,
            generations=self.generations,
            max_evaluations=self.max_evaluations,
            n_threads=self.n_threads,
            max_time=max_time,
            random_state=self.random_state,
        )
        params.update(self.extra)
        return SymbolicRegressor(**params)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        variable_names: Sequence[str] | None = None,
    ) -> list[Candidate]:
        """Run Operon on ``(X, y)``; return the re-scored Pareto front by complexity."""
        X2, y1, one_d = as_design_matrix(X, y)
        symbols = make_symbols(X2.shape[1], variable_names, one_d)
        reg = self._regressor()
        reg.fit(X2, y1)
        placeholders = [_PLACEHOLDER.format(i) for i in range(X2.shape[1])]
        exprs: list[sympy.Expr] = []
        for entry in reg.pareto_front_:
            text = reg.get_model_string(entry["tree"], self.precision, names=placeholders)
            try:
                exprs.append(parse_operon_model(text, symbols))
            except ValueError as exc:
                logger.warning("skipping Operon model: %s", exc)
        front = rescore(exprs, symbols, X2, y1)
        logger.info(
            "operon: %d model(s) on the front, %d kept after re-scoring (best r2=%.6g)",
            len(reg.pareto_front_),
            len(front),
            max((c.r2 for c in front), default=float("nan")),
        )
        return front
