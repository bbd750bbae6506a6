"""The user's problem around `solve`: constant columns out, an optional dimensional
reduction (units -> Buckingham pi groups), magnitudes normalised; formulas mapped back to
the user's variables exactly, and the network's view of the user's X kept for predict/plot.

    X, y (user) -> drop constant columns -> [pi groups] -> powers of ten -> solve -> map back
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import sympy
import torch

from ..expr import evaluate, r2_score
from ..kan import KAN
from ..structure import DimensionalReduction
from ..validation import Magnitudes
from .budget import Budget
from .core import Problem, SolveResult, SolverOptions, solve
from .formulas import formula_front
from .scaling import Scaling

log = logging.getLogger(__name__)


@dataclass
class NetworkView:
    """How the trained network sees the user's X (N, d): the columns it reads, the
    reduction, magnitudes and scaling in between; `predict` maps its output back."""

    model: KAN
    columns: list[int]
    reduction: DimensionalReduction | None
    magnitudes: Magnitudes
    scaling: Scaling

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """(N, d) user rows -> (N, n_in) network inputs."""
        Z = X[:, self.columns]
        if self.reduction is not None:
            Z = self.reduction.transform_inputs(Z)
        Z, _ = self.magnitudes.data(Z, np.zeros(1))
        return self.scaling.x(Z)[:, self.model.input_ids]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N, d) user rows -> (N,) the network's prediction in the user's units."""
        Z = torch.as_tensor(self.inputs(X), dtype=self.model.dtype, device=self.model.device)
        with torch.no_grad():
            out = self.model(Z)[:, 0].cpu().numpy().astype(np.float64)
        y = self.scaling.y_back(out) * 10.0 ** self.magnitudes.y_exp
        if self.reduction is not None:
            y = self.reduction.inverse_target(X[:, self.columns], y)
        return y


@dataclass
class Found:
    """A search's outcome in the user's variables."""

    result: SolveResult  # its front is in the user's variables and units
    network: NetworkView | None
    reduction: DimensionalReduction | None
    magnitudes: Magnitudes


def _rename(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """Replace look-alike symbols (same name, other assumptions) by `symbols`."""
    by_name = {s.name: s for s in symbols}
    return expr.xreplace({s: by_name[s.name] for s in expr.free_symbols
                          if s.name in by_name and s != by_name[s.name]})


def _constant_front(y: np.ndarray, symbols, X) -> pd.DataFrame:
    """The mean, snapped to the simplest exact value (1, 1/(4*pi), ...) within its standard
    error (or round-off on noiseless data)."""
    from ..compose.snap import default_snap_candidates

    value = float(np.mean(y))
    tol = max(1e-12 * abs(value), 2.0 * float(np.std(y)) / np.sqrt(len(y)))
    snapped = next((c for c in default_snap_candidates(value)[1:]
                    if abs(float(c) - value) <= tol), sympy.Float(value))
    return formula_front([snapped], symbols, X, y)


#: Units that leave no dimensionless group fix the law up to one constant; when that law
#: explains less than this share of y's variance, the units do not describe the data (a
#: wrong exponent in the table) and the search runs without them.
UNITS_MISFIT_R2 = 0.5


def search(X: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol], opts: SolverOptions,
           budget: Budget, seed: int, units: tuple[Sequence, object] | None = None) -> Found:
    """Solve the user's problem X (N, d), y (N,) in `symbols`; `units` = (input units, output
    unit) turns on the dimensional reduction (a ValueError for inconsistent units comes
    before any training)."""
    from ..structure import buckingham_pi

    symbols = list(symbols)
    live = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
    if len(live) < X.shape[1]:
        log.warning("constant input columns %s ignored: a law cannot depend on them",
                    [symbols[j].name for j in range(X.shape[1]) if j not in live])
    Xl, syms = X[:, live], [symbols[j] for j in live]
    reduction = None
    if units is not None:
        in_units, out_unit = units
        reduction = buckingham_pi([s.name for s in syms], [in_units[j] for j in live],
                                  out_unit, scales=np.median(np.abs(Xl), axis=0),
                                  positive=False)
        log.info("dimensionless groups %s, prefactor %s", reduction.groups, reduction.prefactor)
        Xw, yw = reduction.transform(Xl, y)
        wsyms = list(reduction.group_symbols)
    else:
        Xw, yw, wsyms = Xl, y, syms
    mags = Magnitudes.fit(Xw, yw)
    Xs, ys = mags.data(Xw, yw)
    if Xs.shape[1] == 0 or np.ptp(ys) == 0:
        log.warning("the target is constant (after the reduction): the law is a constant")
        result = SolveResult(_constant_front(ys, wsyms, Xs), [], Scaling.fit(Xs, ys),
                             last_resort="the target is constant")
        if reduction is not None and Xs.shape[1] == 0:
            law = _rename(reduction.to_original(mags.formula(result.front["sympy"].iloc[0],
                                                              wsyms)), syms)
            r2 = r2_score(y, evaluate(law, syms, Xl))
            if not r2 >= UNITS_MISFIT_R2:
                why = (f"the units leave no dimensionless group, so they fix the law as {law}, "
                       f"but that explains the data with R^2 = {r2:.3g}: the units do not "
                       "describe these data (check each variable's exponents); searched "
                       "without them")
                warnings.warn(why, UserWarning, stacklevel=2)
                found = search(X, y, symbols, opts, budget, seed, units=None)
                found.result.notes.append(why)
                return found
    else:
        result = solve(Problem(Xs, ys, wsyms), opts, budget, seed)
    exprs = [mags.formula(e, wsyms) for e in result.front["sympy"]]
    if reduction is not None:
        exprs = [_rename(reduction.to_original(e), syms) for e in exprs]
    if reduction is not None or not mags.identity:
        # The front keeps its ranking and losses in the solver's units (the pi-group target,
        # rescaled by powers of ten: squares of 1e300 overflow in the user's); its formulas
        # are the user's.
        result.front = result.front.assign(sympy=exprs, expression=[str(e) for e in exprs])
    network = None if result.best_network is None else NetworkView(
        result.best_network, live, reduction, mags, result.scaling)
    return Found(result, network, reduction, mags)
