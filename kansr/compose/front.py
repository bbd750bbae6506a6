"""The Pareto front of whole formulas (complexity against loss) and the rule picking one.

Complexity is :func:`expression_complexity`, the one measure used everywhere (nodes of the
sympy tree); the loss is the MSE.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import sympy as sp

from kansr.fallback.base import expr_complexity as expression_complexity  # the one measure

from .refit import target_vector

__all__ = ["expression_complexity", "pareto_front", "select_best"]

_FRONT_COLUMNS = ["complexity", "loss", "r2", "expression", "sympy", "score"]


def pareto_front(
    candidates: Sequence[tuple[sp.Expr, float]], y: np.ndarray | None = None
) -> pd.DataFrame:
    """Non-dominated (complexity, loss) candidates, sorted by complexity.

    ``candidates`` are ``(expression, loss)`` with loss the MSE. Complexity is
    :func:`expression_complexity` (nodes of the sympy tree). A row is kept only
    if its loss is strictly below that of every simpler row (ties in
    complexity keep the lowest loss); non-finite losses are dropped. Columns:
    ``complexity, loss, r2, expression`` (str), ``sympy`` (Expr) and ``score``
    = ``-d log(loss) / d complexity`` with respect to the previous row (0 for
    the first; losses are floored at the smallest positive float). ``r2`` is
    ``1 - loss/var(y)`` if ``y`` is given, else NaN.
    """
    var_y = float(np.var(target_vector(y))) if y is not None else math.nan
    rows = []
    for expr, loss in candidates:
        e = sp.sympify(expr)
        if math.isfinite(float(loss)):
            rows.append((expression_complexity(e), float(loss), e))
    rows.sort(key=lambda r: (r[0], r[1]))
    kept: list[tuple[int, float, sp.Expr]] = []
    for row in rows:
        if not kept or row[1] < kept[-1][1]:
            kept.append(row)
    tiny = np.finfo(float).tiny
    records = []
    for i, (c, loss, e) in enumerate(kept):
        score = 0.0
        if i > 0:
            c0, l0 = kept[i - 1][0], kept[i - 1][1]
            score = -(math.log(max(loss, tiny)) - math.log(max(l0, tiny))) / (c - c0)
        r2 = 1.0 - loss / var_y if var_y > 0 else math.nan
        records.append((c, loss, r2, str(e), e, score))
    return pd.DataFrame.from_records(records, columns=_FRONT_COLUMNS)


def select_best(front: pd.DataFrame, rule: str = "best", *, loss_factor: float = 1.5,
                n_rows: int | None = None, noisy: bool = False) -> pd.Series:
    """Pick one row of a :func:`pareto_front`.

    Rules:

    * ``"best"`` (PySR's rule): among rows with ``loss <= loss_factor * min(loss)``, the
      one with the highest ``score`` (largest drop of log-loss per unit of complexity);
      ties -> simpler;
    * ``"mdl"`` (description length, for noisy data; needs ``n_rows``, the rows the losses
      were measured on): the row minimising ``n_rows/2 * log(loss) + complexity *
      log(n_rows)/2``, i.e. the Bayesian information criterion with one parameter per
      node: a node must lower the loss by a factor ``n_rows**(1/n_rows)`` (0.09% for 10,000
      rows), far more than a formula fitting noise gains, far less than a missing term costs;
    * ``"auto"``: ``"mdl"`` if ``noisy`` else ``"best"`` (on noise-free data the losses of
      exact laws sit at round-off, where a log-likelihood means nothing);
    * ``"accuracy"``: the lowest loss (ties -> simpler);
    * ``"parsimony"``: the simplest row with ``loss <= loss_factor * min(loss)``.
    """
    if front.empty:
        raise ValueError("empty Pareto front")
    if loss_factor < 1:
        raise ValueError("loss_factor must be >= 1")
    if rule == "auto":
        rule = "mdl" if noisy else "best"
    ordered = front.sort_values("complexity", kind="stable")
    ok = ordered[ordered["loss"] <= loss_factor * ordered["loss"].min()]
    if rule == "best":
        return ok.loc[ok["score"].idxmax()]  # idxmax returns the first (simplest) maximum
    if rule == "mdl":
        if not n_rows or n_rows < 2:
            raise ValueError("the 'mdl' rule needs n_rows >= 2")
        loss = np.maximum(ordered["loss"].to_numpy(float), np.finfo(float).tiny)
        length = 0.5 * n_rows * np.log(loss) + 0.5 * math.log(n_rows) * ordered["complexity"]
        return ordered.iloc[int(np.argmin(length.to_numpy()))]  # first minimum: simplest
    if rule == "accuracy":
        return ordered.loc[ordered["loss"].idxmin()]
    if rule == "parsimony":
        return ok.iloc[0]
    raise ValueError(f"unknown rule {rule!r}; use 'auto', 'best', 'mdl', 'accuracy' or "
                     "'parsimony'")
