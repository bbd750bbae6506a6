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
from .noise import estimate_noise
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


#: The prefactor's quieter half must promise at least this factor less noise variance ...
QUIET_MIN_GAIN = 4.0
#: ... and the noise variance both halves imply on y at least this share of var(y) (0.1 %
#: noise on SRBench's scale; at noise 0 the halves of 2 of the 100 Feynman laws pass).
QUIET_NOISE_REL = 1e-6
#: ... and the lower half's local estimate must be noise, not curvature, for at least this
#: share: re-estimated on a random 1 / `QUIET_THIN` of its rows, noise stays put while the
#: curvature term grows as the neighbourhoods widen, by at least QUIET_THIN^(4/d) on d groups
#: (the local fits miss cross terms: bias ~ r^2). Measured on the Feynman laws that pass the
#: tests above: noise-free I.8.14 and I.11.19 grew 6.4 and 3.3 times (share below 0); at 1 %
#: noise every share was 0.68 or more, at 10 % 0.92 or more.
QUIET_THIN, QUIET_MIN_NOISE_SHARE = 4, 0.5


def _noise_follows_prefactor(prefactor: np.ndarray, groups: np.ndarray, y: np.ndarray,
                             seed: int) -> bool:
    """Is the groups' target y / prefactor noisy as y's noise divided by the prefactor would
    make it? Split by |prefactor|, the local noise of the lower half must exceed the upper
    half's by at least the square root of the factor 1 / prefactor^2 predicts (itself at
    least `QUIET_MIN_GAIN`), and the noise each half implies on y must reach
    `QUIET_NOISE_REL`. A noise-free target's local estimate measures curvature, which need
    not follow the prefactor (the estimate alone cannot tell: at noise 0 it reached 5e-3 of
    var(y) on Feynman laws, at 1 % noise it fell to 1e-4); how it changes on thinned rows
    tells (`QUIET_MIN_NOISE_SHARE`)."""
    y_pi = y / prefactor
    order = np.argsort(np.abs(prefactor), kind="stable")
    low, high = order[: len(order) // 2], order[len(order) // 2:]
    gain_low, gain_high = (float(np.mean(prefactor[rows] ** -2.0)) for rows in (low, high))
    expected = gain_low / gain_high
    if not expected >= QUIET_MIN_GAIN or len(low) < 10:
        return False

    def variance(rows: np.ndarray) -> float:
        if groups.shape[1] == 0:
            return float(np.var(y_pi[rows]))
        return estimate_noise(groups[rows], y_pi[rows], seed) ** 2

    v_low, v_high = variance(low), variance(high)
    implied = min(v_low / gain_low, v_high / gain_high)
    if not (v_low >= np.sqrt(expected) * v_high
            and implied >= QUIET_NOISE_REL * float(np.var(y))):
        return False
    if groups.shape[1] == 0:
        return True  # no input to be curved in: the variance is noise
    # v = s + (1 - s) c on thinned rows (in units of v_low): s is the noise's share
    thinned = np.random.default_rng(seed).permutation(low)[: len(low) // QUIET_THIN]
    growth = QUIET_THIN ** (4.0 / groups.shape[1])
    share = (growth - variance(thinned) / v_low) / (growth - 1.0)
    return share >= QUIET_MIN_NOISE_SHARE


#: On noisy data the groups' target is searched on at least this share of the rows ...
QUIET_MIN_SHARE = 0.2
#: ... chosen within cells of the groups' quantiles (this many per group, by the number of
#: groups; 2 beyond), so the rows kept still span every group's range.
QUIET_BINS = {1: 5, 2: 3}


def _quiet_rows(prefactor: np.ndarray, groups: np.ndarray, y: np.ndarray, seed: int
                ) -> np.ndarray:
    """Indices of the rows the groups' target y / prefactor is searched on: all of them on
    noise-free data. On noisy data y's noise (one variance, SRBench's protocol) is divided
    by the prefactor, so a row's noise variance goes as 1 / prefactor^2. Within each cell of
    the groups' quantiles the rows kept, by falling |prefactor|, are those that minimise the
    variance of a least-squares fit, sum(1 / P^2) / k^2 over the k rows kept (a row joins
    while its variance is below about twice the mean so far): the nearest thing to the
    weighted fit, which would need weights in every stage. (m q^4 / (eps^2 h^2) spans 1e-4
    to 1e3: at 10 % noise the target of all rows was noise, and its law came out 0.)"""
    n = len(y)
    if not _noise_follows_prefactor(prefactor, groups, y, seed):
        return np.arange(n)
    bins = QUIET_BINS.get(groups.shape[1], 2)
    cell = np.zeros(n, dtype=np.int64)
    for g in groups.T:
        rank = np.argsort(np.argsort(g, kind="stable"), kind="stable")
        cell = cell * bins + np.minimum(rank * bins // n, bins - 1)
    keep = []
    for c in np.unique(cell):
        rows = np.flatnonzero(cell == c)
        rows = rows[np.argsort(-np.abs(prefactor[rows]), kind="stable")]
        w = 1.0 / np.maximum(prefactor[rows] ** 2, np.finfo(float).tiny)
        cost = np.cumsum(w) / np.arange(1, len(rows) + 1) ** 2
        k_min = max(int(QUIET_MIN_SHARE * len(rows)), 1)
        keep.append(rows[:k_min + int(np.argmin(cost[k_min - 1:]))])
    return np.sort(np.concatenate(keep))


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
        quiet = _quiet_rows(reduction.prefactor_values(Xl), Xw, y, seed)
        if len(quiet) < len(yw):
            log.info("noisy data: the groups' target is searched on the %d of %d rows where "
                     "the prefactor divides the noise most", len(quiet), len(yw))
            Xw, yw = Xw[quiet], yw[quiet]
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
