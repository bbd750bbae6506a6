"""Formulas from a trained network: graph, per-edge choice, composition in the user's units,
constants refitted and snapped; the Pareto front of whole formulas; the last resort."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import networkx as nx
import numpy as np
import pandas as pd
import sympy
import torch

from ..compose.choose import alternatives, annotate_graph, swap_edge, symbolize
from ..compose.formula import graph_to_sympy
from ..compose.front import expression_complexity, pareto_front
from ..compose.refit import refit_constants, refit_deadline
from ..compose.simplify import clean_expression
from ..compose.snap import constant_price, free_constants, gather_constants, polish_expression, \
    unsnap
from ..expr import evaluate
from ..fallback import FallbackEngine
from ..graph import network_to_graph
from ..kan import KAN
from ..match.library import X as LIB_X, Library
from ..match.rational import match_rational
from .budget import SYMBOLIC_SHARE, Budget
from .scaling import Scaling

log = logging.getLogger(__name__)

# Relative MSE below which a formula reproduces the data to float64 round-off: "exact".
EXACT_REL_MSE = 1e-24
# ... and below which a formula ends the search early (the near-tied variants and the
# remaining networks cannot beat it).
NEAR_EXACT_REL_MSE = 1e-20
# On noisy data a formula within the noise ends the search early only with at most this many
# fitted (Float) constants: a flexible look-alike reaches the noise floor too (a tanh of a
# product of logs with 11 constants fitted q/(4 pi epsilon r^2) at 1% noise), and the
# structure tests after it find the law that the front's description length then prefers.
# A part split off a network at noise 0 has no such cap: its floor is the network's smooth
# error, not noise, and stopping at its first good reading leaves the budget to the other
# parts.
MAX_NOISY_EXACT_CONSTANTS = 4
# Formulas with more free constants than this are not snapped (each snap refits them all).
MAX_SNAP_CONSTANTS = 24
# Formulas with more free constants than this are not refitted either.
MAX_REFIT_CONSTANTS = 60
# A refitted formula is worth snapping when its MSE is within this factor of the network's.
SNAP_WORTH_RATIO = 10.0


@dataclass(frozen=True)
class SymbolicSettings:
    """How a network becomes formulas (the estimator's parameters of the same names)."""

    top_k: int = 3
    complexity_weight: float = 0.3
    n_alternatives: int = 2
    seed: int = 0


@dataclass(frozen=True)
class ExactRule:
    """When a formula ends the search early: relative MSE at most `rel_tol` (round-off, or
    a floor: the data's noise, a network's error on a split-off part), and, where set, at
    most `max_constants` fitted constants (noisy data, see `MAX_NOISY_EXACT_CONSTANTS`)."""

    rel_tol: float = NEAR_EXACT_REL_MSE
    max_constants: int | None = None


def near_exact(exprs: Sequence[sympy.Expr], symbols: Sequence[sympy.Symbol], X: np.ndarray,
               y: np.ndarray, rule: ExactRule = ExactRule()) -> bool:
    """Does any formula meet `rule` on (X, y): reproduce y to its relative MSE tolerance
    (round-off by default) with few enough fitted constants?"""
    var = float(np.var(y))
    for e in exprs:
        if rule.max_constants is not None and free_constants(e) > rule.max_constants:
            continue
        pred = evaluate(e, symbols, X)
        if np.all(np.isfinite(pred)) and np.mean((pred - y) ** 2) <= rule.rel_tol * var:
            return True
    return False


def compose_graph(graph: nx.DiGraph, scaling: Scaling, symbols: Sequence[sympy.Symbol]
                  ) -> sympy.Expr:
    """The graph's formula in the user's variables and units (the scaling undone)."""
    inputs = {node: scaling.input_exprs(symbols, [d["column"]])[0]
              for node, d in graph.nodes(data=True) if d["kind"] == "input"}
    return scaling.output_expr(graph_to_sympy(graph, inputs)[("out", 0)])


def network_formulas(model: KAN, Xt: torch.Tensor, yt: torch.Tensor, X: np.ndarray,
                     y: np.ndarray, symbols: Sequence[sympy.Symbol], scaling: Scaling,
                     library: Library, engine: FallbackEngine | None, val_mse: float,
                     settings: SymbolicSettings, budget: Budget,
                     exact: ExactRule = ExactRule()
                     ) -> tuple[nx.DiGraph, list[sympy.Expr]]:
    """Graph, per-edge choice, composition in user units, constants refit and snapped.

    Xt, yt: training rows in network units; X (N, d), y (N,): all rows in user units.
    A variant that meets `exact` ends the loop over variants.
    Returns the annotated graph of the first variant and every formula produced.
    """
    deadline = budget.deadline(SYMBOLIC_SHARE)
    names = [symbols[c].name for c in model.input_ids]
    graph = network_to_graph(model, Xt, names, seed=settings.seed)
    sym_model, records = symbolize(model, Xt, yt, library, engine, top_k=settings.top_k,
                                   complexity_weight=settings.complexity_weight,
                                   seed=settings.seed, deadline=deadline,
                                   input_maps=scaling.input_maps(model.input_ids))
    n_alt = 0 if budget.expired(SYMBOLIC_SHARE) else settings.n_alternatives
    variants = [(sym_model, records)] + [
        swap_edge(sym_model, records, r, k, Xt, yt)
        for r, k in alternatives(records, limit=n_alt)]
    exprs, first_graph = [], None
    polish_deadline = budget.polish_deadline()
    # Refits keep their best parameters so far once the polishing deadline passes: a
    # formula with many constants can otherwise take minutes on 10,000 rows.
    with refit_deadline(polish_deadline):
        for v_model, v_records in variants:
            g = annotate_graph(graph, v_model, v_records)
            first_graph = first_graph or g
            composed = compose_graph(g, scaling, symbols)
            log.info("composed: %s", composed)
            n_consts = free_constants(composed)
            if n_consts > MAX_REFIT_CONSTANTS or time.perf_counter() > polish_deadline:
                # a sprawling network's formula (refitting it with a symbolic Jacobian
                # costs minutes, and it is no law anyway), or no time left: keep it as is
                exprs.append(composed)
                continue
            try:
                raw, raw_mse = refit_constants(composed, symbols, X, y)
            except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others
                log.warning("refitting %s failed: %s", composed, exc)
                exprs.append(composed)
                continue
            exprs.append(raw)
            # Snapping refits once per tried value: only worth it (and only bounded in
            # time) for a formula about as good as the network, with few constants.
            good = raw_mse <= max(SNAP_WORTH_RATIO * val_mse, EXACT_REL_MSE) * float(np.var(y))
            if good and n_consts <= MAX_SNAP_CONSTANTS and not budget.expired(SYMBOLIC_SHARE):
                exprs.append(polish_expression(raw, symbols, X, y,
                                               deadline=polish_deadline)[0])
            elif good and n_consts <= MAX_SNAP_CONSTANTS:
                # out of time for snapping: still drop float dust and merge constants
                exprs.append(gather_constants(clean_expression(raw, simplify=False),
                                              symbols, X, y))
            if near_exact(exprs[-1:], symbols, X, y, exact):
                break  # exact already: the near-tied variants cannot beat it
    return first_graph, exprs


#: Rows of a one-variable problem matched directly (the library's fits cost O(rows)).
DIRECT_ROWS = 2000
#: A rational fit (`kansr.match.rational`) joins a one-variable problem's options only with
#: this many times less MSE than the library's best option.
RATIONAL_GAIN = 100.0
#: Library options of a one-variable problem refitted as whole formulas (cheap: one variable).
DIRECT_TOP_K = 5
#: ... of which those within this factor of the best refitted MSE are also snapped.
POLISH_WORTH_RATIO = 2.0


#: Residuals with a lag-one correlation (rows in x order) below this look like noise: a
#: look-alike's misfit on noise-free rows is smooth, near 1.
NOISE_LIKE_CORRELATION = 0.5


def _noise_like(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray,
                y: np.ndarray) -> bool:
    """Does `expr`'s misfit on one-variable rows (X (N, 1), y) look like independent noise:
    residuals in x order with a lag-one correlation below `NOISE_LIKE_CORRELATION`?"""
    with np.errstate(all="ignore"):
        r = (y - evaluate(expr, symbols, X))[np.argsort(X[:, 0], kind="stable")]
    if len(r) < 3 or not np.all(np.isfinite(r)) or np.std(r) == 0:
        return False
    return bool(np.corrcoef(r[:-1], r[1:])[0, 1] < NOISE_LIKE_CORRELATION)


def one_variable_formulas(X: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol],
                          scaling: Scaling, library: Library, settings: SymbolicSettings,
                          budget: Budget, exact: ExactRule = ExactRule(),
                          known_floor: float = NEAR_EXACT_REL_MSE, noise: float = 0.0
                          ) -> list[sympy.Expr]:
    """A one-variable problem is its own edge: the rows (x, y) are matched against the
    library and its compositions directly, with no network in between (a spline would only
    blur them), then refitted and snapped on all rows. X (N, 1), y (N,) in user units.
    Where no option comes within `known_floor` (relative MSE), the rational matcher
    (`kansr.match.rational`) runs too, unless the data's own noise (`noise`, relative MSE)
    leaves it no room to win."""
    from ..compose.choose import edge_options
    from ..graph import EDGE_VAR

    rng = np.random.default_rng(settings.seed)
    rows = rng.permutation(len(X))[:DIRECT_ROWS]
    xs, ys = scaling.x(X[rows])[:, 0], scaling.y(y[rows])
    # Errors below NEAR_EXACT_REL_MSE are round-off ties, settled by complexity: a sine of a
    # tiny argument mimics a line to 1e-21, and the line's own round-off can exceed that.
    options = edge_options(xs, ys, library, None, top_k=max(settings.top_k, DIRECT_TOP_K),
                           x_map=scaling.input_maps([0])[0], err_floor=NEAR_EXACT_REL_MSE)
    x_expr = scaling.input_exprs(symbols, [0])[0]
    raws: list[tuple[float, sympy.Expr]] = []
    polish_deadline = budget.polish_deadline()
    with refit_deadline(polish_deadline):
        for opt in options:
            expr = scaling.output_expr(opt.formula().xreplace({EDGE_VAR: x_expr}))
            try:
                raw, mse = refit_constants(expr, symbols, X, y)
            except Exception as exc:  # noqa: BLE001 - one option failing must not lose the rest
                log.debug("refitting %s failed: %s", expr, exc)
                continue
            raws.append((mse, raw))
        best = min((m for m, _ in raws), default=math.inf)
        # A rational fit must beat the best option RATIONAL_GAIN-fold, and no fit goes below
        # the noise: where the best is already within that reach of the noise and what it
        # leaves looks like noise, the matcher (and the refits of its fits) could only be
        # turned down. (It cost 18-30 s of every noisy one-variable problem: 1/(gamma - 1)
        # at 1% noise took 29 s.) The estimate alone is not enough: on a steep noise-free law
        # it measures curvature (1/(exp(x/3) - 1): 1.5e-6), and a look-alike's misfit is
        # smooth where noise is not.
        hopeless = (best < RATIONAL_GAIN * noise * float(np.var(y))
                    and _noise_like(min(raws, key=lambda r: r[0])[1], symbols, X[rows],
                                    y[rows]))
        if (best > known_floor * float(np.var(y)) and not hopeless
                and not budget.expired(SYMBOLIC_SHARE)):
            # no primitive under an affine map reproduces the rows to their known floor
            # (round-off, or the network's error on a split-off part): a power times a ratio
            # of lines in one primitive may (1/(exp(x) - 1), sin(x)^2/x^2, (1+x)/sqrt(1-x^2)).
            # Not `exact`'s tolerance: on a steep law the local noise estimate measures
            # curvature, and a look-alike passes under it.
            for fit in match_rational(X[rows, 0], y[rows], library, seed=settings.seed,
                                      deadline=budget.deadline(SYMBOLIC_SHARE)):
                try:
                    raw, mse = refit_constants(fit.expr.xreplace({LIB_X: symbols[0]}),
                                               symbols, X, y)
                    # only a far better fit: within the noise its five constants fit the
                    # noise, and once snapped they look free (seed 1 at 1% noise lost the
                    # normal density this way)
                    if mse * RATIONAL_GAIN <= best:
                        raws.append((mse, raw))
                except Exception as exc:  # noqa: BLE001 - as for the library's options
                    log.debug("refitting %s failed: %s", fit.expr, exc)
                    continue
                if mse <= NEAR_EXACT_REL_MSE * float(np.var(y)):
                    # exact to round-off: the fits come best first, round-off ties simplest
                    # first, so the rest can only be longer twins (whose refits on all rows
                    # are slow: x^-1 (a + b (x - 53)^5)/(...) took 4.8 s after 1/(e^x - 1))
                    break
        # Snapping costs a refit per tried value (many on noisy data, where no constant sits
        # on its simple value to round-off): only options about as good as the best are
        # worth it, best first by the front's own loss, until one meets `exact` (on noisy data
        # one with no free constants left: a look-alike reaches the noise too, and c - c'
        # cos(a r) ended the polishing before the parabola (1 + r^2)/4 snapped).
        # Round-off ties go to the simpler: a sine of a tiny argument mimics a line to 1e-21.
        tie = NEAR_EXACT_REL_MSE * float(np.var(y))
        best = min((m for m, _ in raws), default=math.inf)
        exprs = [raw for _, raw in raws]
        worth = [(charged_loss(max(mse, tie), raw, len(y)), expression_complexity(raw), k)
                 for k, (mse, raw) in enumerate(raws) if mse <= POLISH_WORTH_RATIO * best + tie]
        for _, _, k in sorted(worth):
            if budget.expired(SYMBOLIC_SHARE):
                break
            exprs.append(polish_expression(raws[k][1], symbols, X, y,
                                           deadline=polish_deadline)[0])
            if near_exact(exprs[-1:], symbols, X, y, exact) and (
                    noise == 0 or free_constants(exprs[-1]) == 0):
                break
    return exprs


def refit_and_polish(expr: sympy.Expr, symbols: Sequence[sympy.Symbol], X: np.ndarray,
                     y: np.ndarray, budget: Budget) -> list[sympy.Expr]:
    """A formula assembled elsewhere (recombined parts, an undone output transform) with its
    constants refitted on the rows, and snapped while the symbolic share of the budget
    lasts: [refitted, snapped], or [expr] when the refit fails. The parts' own snapped
    constants are refitted too (`unsnap`): they were snapped on approximate data (a part's
    network values), and one fixed at 69/(7 pi) for pi kept the whole from fitting exactly."""
    exprs = []
    polish_deadline = budget.polish_deadline()
    with refit_deadline(polish_deadline):
        try:
            raw, _ = refit_constants(unsnap(expr), symbols, X, y)
        except Exception as exc:  # noqa: BLE001 - the caller's other formulas still answer
            log.warning("refitting %s failed: %s", expr, exc)
            return [expr]
        exprs.append(raw)
        if not budget.expired(SYMBOLIC_SHARE):
            exprs.append(polish_expression(raw, symbols, X, y, deadline=polish_deadline)[0])
    return exprs


def charged_loss(mse: float, expr: sympy.Expr, n_rows: int) -> float:
    """MSE times `constant_price(n_rows)` per fitted (Float) constant of `expr`."""
    return mse * constant_price(n_rows) ** free_constants(expr)


#: Points between neighbouring rows on which every candidate must be finite.
PROBE_POINTS = 1000
#: ... each on the segment from a row to one of this many nearest neighbours.
PROBE_NEIGHBOURS = 10


def between_samples(X: np.ndarray, n: int = PROBE_POINTS, seed: int = 0) -> np.ndarray:
    """(n, d) fresh points on segments between rows of X and their near neighbours: where
    a log or root fitted to the rows may leave its domain unseen. Neighbours rather than the
    bounding box, so the points stay where the data are (v < c in every row need not hold
    in the box)."""
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X, dtype=float)
    if len(X) < 2 or X.shape[1] == 0:  # no inputs (a constant's front): nothing in between
        return X.copy()
    rng = np.random.default_rng(seed)
    lo, hi = X.min(axis=0), X.max(axis=0)
    unit = (X - lo) / np.where(hi > lo, hi - lo, 1.0)  # neighbours by shape, not by units
    k = min(PROBE_NEIGHBOURS, len(X) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(unit).kneighbors(
        unit[rows := rng.integers(0, len(X), n)])
    partner = idx[np.arange(n), rng.integers(1, k + 1, n)]
    t = rng.uniform(0.0, 1.0, (n, 1))
    return X[rows] + t * (X[partner] - X[rows])


def formula_front(exprs: Sequence[sympy.Expr], symbols: Sequence[sympy.Symbol], X: np.ndarray,
                  y: np.ndarray) -> pd.DataFrame:
    """Pareto front of whole formulas, by complexity and a loss charged for free constants.

    loss = `charged_loss` of max(MSE, round-off floor) on the N rows: errors below float64
    round-off of y count as equal (exact), so a snapped law is not beaten by a longer one
    that is 1e-33 better; and at equal complexity a formula with a snapped constant beats
    its unsnapped twin unless the data can tell them apart (on noisy data the free constant
    always fits the noise a little better). The same price as the snapping rule
    (`kansr.compose.snap`). A formula that is not finite on points between the rows
    (`between_samples`) is dropped: its predictions on new data would be undefined.
    """
    floor = EXACT_REL_MSE * float(np.var(y))
    probe = between_samples(X)
    cands = []
    for expr in exprs:
        pred = evaluate(expr, symbols, X)
        if not np.all(np.isfinite(pred)):
            continue
        if not np.all(np.isfinite(evaluate(expr, symbols, probe))):
            log.info("dropped (not finite between the rows): %s", expr)
            continue
        mse = float(np.mean((pred - y) ** 2))
        cands.append((expr, charged_loss(max(mse, floor), expr, len(y))))
    return pareto_front(cands, y=y)


def direct_formulas(X: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol],
                    engine: FallbackEngine | None) -> list[sympy.Expr]:
    """Formulas fitted to the data directly, for when no network gave a usable one: the
    fallback engine's front (if there is an engine) and the least-squares line, which is
    always finite."""
    exprs = []
    if engine is not None:
        try:
            exprs += [c.expr for c in
                      engine.fit(X, y, variable_names=[s.name for s in symbols])]
        except Exception as exc:  # noqa: BLE001 - the line below still answers
            log.warning("fallback engine on the data failed: %s", exc)
    design = np.column_stack([X, np.ones(len(X))])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    line = sympy.Add(*(sympy.Float(c) * s for c, s in zip(coef, symbols)),
                     sympy.Float(coef[-1]))
    return exprs + [line]
