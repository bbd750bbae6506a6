"""Fit one KAN edge, known by samples ``(x, y)``, against library primitives.

Model per primitive ``f``::

    y ~= c * f(a * x + b) + d

Algorithm:

1. Normalise ``t = (x - m) / s`` to ``[-1, 1]`` and ``z = (y - mean) / std``;
   work with ``u = alpha * t + beta`` (``a = alpha / s``, ``b = beta - alpha m / s``).
2. Coarse grid over ``(alpha, beta)`` on a subsample (64 points, evenly spaced
   in x).  ``alpha`` is log-spaced in magnitude 0.05..20 (positive only when
   ``f(-u) = +/-f(u) + k``); ``beta`` is linear in ``[-1.5, 1.5] * (|alpha| + 3)``
   so the image window ``[beta-|alpha|, beta+|alpha|]`` slides across the
   region where library functions have their features.  A grid point is
   *invalid* if the window leaves the primitive's domain or touches a
   singular point (checked exactly, since u is linear in x) or f is
   non-finite there.  For all valid grid points ``c, d`` are solved in closed
   form (simple linear regression), vectorised over the whole grid at once.
3. Quick refinement on the subsample of the best (and any near-equal,
   non-adjacent) grid points: Levenberg-Marquardt (MINPACK via
   ``scipy.optimize.leastsq``) over ``(alpha, beta)`` with ``c, d``
   eliminated (variable projection, analytic Kaufman Jacobian).  A trial step
   whose window leaves the domain gets a large constant residual, so the
   trust region rejects it: f is never evaluated outside its domain.
   Flat directions are removed first: scale-invariant primitives (powers,
   1/x, sqrt, abs, log) fix ``|alpha| = 1``, exp fixes ``beta = 0``.
4. :func:`match_edge` ranks all quick fits, then "polishes" the best
   ``n_polish``: the spare grid starts are tried and the winner is refined on
   all points.  ``c, d`` are always re-solved in closed form on all points, so
   every reported R^2 is exact for the reported parameters.
5. Reported parameters are canonical where they are not identifiable:
   ``|a| = 1`` for scale-invariant primitives, ``b = 0`` for exp.

Ranking (:func:`match_edge`), lower is better::

    err   = max(1 - R^2, err_floor)
    score = log10(err) + complexity_weight * complexity
    key   = (R^2 < r2_floor, score, complexity, -R^2)

i.e. one unit of complexity must buy ``complexity_weight`` decades of
unexplained variance. A candidate whose curve on the samples is within
``err_floor`` (of var(y)) of a simpler candidate's is dropped: a look-alike.  Candidates below ``r2_floor`` are kept but ranked after
every candidate above it.  A "const" candidate (complexity 0, ``y = d``) is
always included; nothing is ever dropped for fitting poorly.

The numeric stages (1-3 and 5) are in :mod:`kansr.match.varpro`; this module holds the
result type, the quick-fit-then-polish flow and the ranking.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import sympy

from kansr.match.library import X, Library, LibrarySpec, Primitive, load_library
from kansr.match.varpro import (DEFAULT_N_SUB, EdgeSamples, best_of, canonical, coarse_scan,
                                is_identity, linear_cd, pick_starts, prepare_samples, refine,
                                sse_at)

logger = logging.getLogger(__name__)

CONST_NAME = "const"

_EXACT = 1e-28  # per-point SSE (units of var(y)) treated as an exact fit
_AMBIGUOUS = 5.0  # coarse starts within this SSE factor of the best are all refined early
DEFAULT_GRID = (12, 25)


# --------------------------------------------------------------------------- #
# Result type
# --------------------------------------------------------------------------- #
@dataclass
class EdgeFit:
    """A fitted candidate ``y = c * f(a*x + b) + d`` for one edge.

    ``r2`` is the true coefficient of determination ``1 - SSE/SST`` (can be
    negative in principle, 0 for "const"); ``mse = SSE / N``.
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float
    mse: float
    complexity: int
    primitive: Optional[Primitive] = field(default=None, repr=False, compare=False)
    score: float = field(default=math.nan, compare=False)

    @property
    def is_const(self) -> bool:
        return self.primitive is None

    def expr(self, x: sympy.Symbol = X) -> sympy.Expr:
        """Sympy expression ``c*f(a*x+b)+d`` with float coefficients."""
        d = sympy.Float(self.d)
        if self.primitive is None:
            return d
        inner = sympy.Float(self.a) * x + sympy.Float(self.b)
        return sympy.Float(self.c) * self.primitive.expr.subs(X, inner) + d

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the fit; ``x`` shape (N,) -> (N,)."""
        x = np.asarray(x, dtype=np.float64)
        if self.primitive is None:
            return np.full(x.shape, self.d)
        return self.c * self.primitive.numpy_fn(self.a * x + self.b) + self.d


# --------------------------------------------------------------------------- #
# Conversions
# --------------------------------------------------------------------------- #
def _to_fit(data: EdgeSamples, prim: Primitive, alpha: float, beta: float) -> Optional[EdgeFit]:
    """Evaluate on all points and convert normalised parameters to an :class:`EdgeFit`.

    Non-identifiable parameters are first moved to a canonical representative
    (see :func:`canonical`) when that keeps the fit admissible.
    """
    al2, be2 = canonical(data, prim, alpha, beta)
    ev = sse_at(prim, data.t, data.z, al2, be2)  # same curve when admissible
    if ev is None:
        ev = sse_at(prim, data.t, data.z, alpha, beta)
        if ev is None:
            return None
    else:
        alpha, beta = al2, be2
    c, d, sse = ev
    return EdgeFit(
        name=prim.name,
        a=alpha / data.s,
        b=beta - alpha * data.m / data.s,
        c=c * data.y_std,
        d=data.y_mean + d * data.y_std,
        r2=float(1.0 - sse / data.n),  # sum(z^2) == n
        mse=float(sse * data.y_std**2 / data.n),
        complexity=prim.complexity,
        primitive=prim,
    )


def _normalised(data: EdgeSamples, fit: EdgeFit) -> tuple[float, float]:
    """Inverse of the (a, b) conversion in :func:`_to_fit` -> (alpha, beta)."""
    return fit.a * data.s, fit.b + fit.a * data.m

def _fit_identity(data: EdgeSamples, prim: Primitive) -> EdgeFit:
    """Plain linear regression: a=1, b=0, y = c x + d."""
    c, d, sse = linear_cd(data.x[None, :], data.y)
    sst = data.sst
    r2 = 1.0 - float(sse[0]) / sst if sst > 0 else 1.0
    return EdgeFit(prim.name, 1.0, 0.0, float(c[0]), float(d[0]), r2,
                   float(sse[0]) / data.n, prim.complexity, prim)


def _fit_const(data: EdgeSamples) -> EdgeFit:
    r2 = 0.0 if data.y_std > 0 else 1.0
    return EdgeFit(CONST_NAME, 0.0, 0.0, 0.0, data.y_mean, r2, data.y_std**2, 0, None)


# --------------------------------------------------------------------------- #
# Fitting stages
# --------------------------------------------------------------------------- #
@dataclass
class _Candidate:
    """A quick fit plus coarse-grid starts (normalised alpha, beta) not yet refined."""

    fit: EdgeFit
    spare: list[tuple[float, float]] = field(default_factory=list)


def _quick_fit(
    data: EdgeSamples, prim: Primitive, n_grid: tuple[int, int], n_starts: int, quick_nfev: int
) -> Optional[_Candidate]:
    """Coarse grid, short refinement of the best start on the subsample, scored on all points.

    The remaining ``n_starts - 1`` starts are kept in ``spare`` for :func:`_polish`.
    """
    if is_identity(prim.expr):
        return _Candidate(_fit_identity(data, prim))
    n_alpha, n_beta = n_grid
    alpha, beta, sse = coarse_scan(data, prim, n_alpha, n_beta)
    picked = pick_starts(sse, n_beta, n_starts)
    if not picked:
        logger.debug("primitive %s: no admissible (a, b) for this edge", prim.name)
        return None
    # starts whose coarse SSE is close to the best are ambiguous basins: refine them now
    n_now = sum(1 for g in picked if sse[g] <= _AMBIGUOUS * sse[picked[0]])
    starts = [(float(alpha[g]), float(beta[g])) for g in picked]
    al, be = best_of(data, prim, starts[:n_now], quick_nfev, known=float(sse[picked[0]]))
    fit = _to_fit(data, prim, al, be)
    return None if fit is None else _Candidate(fit, starts[n_now:])


def _polish(data: EdgeSamples, cand: _Candidate, quick_nfev: int, max_nfev: int) -> EdgeFit:
    """Try the spare starts, then refine the best on all points; never returns a worse fit."""
    fit, prim = cand.fit, cand.fit.primitive
    if prim is None or is_identity(prim.expr) or fit.mse <= _EXACT * data.y_std**2:
        return fit
    start = _normalised(data, fit)
    if cand.spare:
        start = best_of(data, prim, [start] + cand.spare, quick_nfev)
    al, be = refine(prim, data.t, data.z, *start, max_nfev)
    new = _to_fit(data, prim, al, be)
    return new if new is not None and new.mse < fit.mse else fit


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def fit_const(x: np.ndarray, y: np.ndarray) -> EdgeFit:
    """The constant candidate ``y = d`` (complexity 0, R^2 = 0 unless y is constant)."""
    return _fit_const(prepare_samples(x, y))


def fit_primitive(
    x: np.ndarray,
    y: np.ndarray,
    prim: Primitive,
    *,
    n_grid: tuple[int, int] = DEFAULT_GRID,
    n_starts: int = 2,
    n_sub: int = DEFAULT_N_SUB,
    quick_nfev: int = 10,
    max_nfev: int = 60,
    rng: Optional[np.random.Generator] = None,
) -> Optional[EdgeFit]:
    """Fit ``y ~= c*prim(a*x+b)+d``; x, y shape (N,).

    Args:
        n_grid: (alpha magnitudes per sign, beta values) of the coarse grid.
        n_starts: grid optima (mutually non-adjacent) refined on the subsample.
        n_sub: points used for the coarse grid and first refinement.
        quick_nfev: cap on residual evaluations per subsample refinement.
        max_nfev: cap on residual evaluations of the final all-points refinement.
        rng: if given, the subsample is random (plus both x extremes),
            otherwise evenly spaced in x order.

    Returns:
        The best fit, or None if no ``(a, b)`` keeps ``a*x+b`` inside the
        primitive's domain (and away from its singular points) on all samples,
        or if ``y`` is constant (use :func:`fit_const`).

    Raises:
        ValueError: NaN/inf, length mismatch, not 1-D, < 5 points, zero x spread.
    """
    data = prepare_samples(x, y, n_sub=n_sub, rng=rng)
    if data.y_std == 0:
        return _fit_identity(data, prim) if is_identity(prim.expr) else None
    cand = _quick_fit(data, prim, n_grid, n_starts, quick_nfev)
    return None if cand is None else _polish(data, cand, quick_nfev, max_nfev)


def score_fit(fit: EdgeFit, complexity_weight: float = 0.5, err_floor: float = 1e-10) -> float:
    """``log10(max(1 - R^2, err_floor)) + complexity_weight * complexity`` (lower is better)."""
    return math.log10(max(1.0 - fit.r2, err_floor)) + complexity_weight * fit.complexity


def rank_fits(
    fits: list[EdgeFit],
    *,
    complexity_weight: float = 0.5,
    r2_floor: float = 0.9,
    err_floor: float = 1e-10,
) -> list[EdgeFit]:
    """Sort candidates best-first (rule in the module docstring); sets ``fit.score``."""
    for f in fits:
        f.score = score_fit(f, complexity_weight, err_floor)
    return sorted(fits, key=lambda f: (f.r2 < r2_floor, f.score, f.complexity, -f.r2))


def _drop_lookalikes(data: EdgeSamples, ranked: list[EdgeFit], err_floor: float) -> list[EdgeFit]:
    """Remove candidates whose curve on the samples equals a simpler candidate's.

    tan and arctan at the edge of their range reproduce 1/x to round-off (tan(pi/2 - e)
    = 1/e - e/3...), a cos at a tiny argument a parabola: when two curves differ by at most
    `err_floor` of var(y), no data on this edge can tell them apart, so the more complex
    one goes (candidates of equal complexity all stay).
    """
    limit = err_floor * data.y_std**2
    preds = {id(f): f.predict(data.x) for f in ranked}
    kept = []
    for f in ranked:
        if any(g.complexity < f.complexity
               and float(np.mean((preds[id(f)] - preds[id(g)]) ** 2)) <= limit
               for g in ranked if g is not f):
            logger.debug("edge candidate %s dropped: same curve as a simpler one", f.name)
            continue
        kept.append(f)
    return kept


def match_edge(
    x: np.ndarray,
    y: np.ndarray,
    library: LibrarySpec = None,
    *,
    top_k: int = 5,
    complexity_weight: float = 0.5,
    r2_floor: float = 0.9,
    err_floor: float = 1e-10,
    n_polish: int = 3,
    n_grid: tuple[int, int] = DEFAULT_GRID,
    n_starts: int = 2,
    quick_nfev: int = 10,
    max_nfev: int = 60,
    rng: Optional[np.random.Generator] = None,
) -> list[EdgeFit]:
    """Fit every primitive (plus "const") to one edge and return the ``top_k`` best.

    x, y shape (N,).  ``library``: None (default library), a TOML path or a
    :class:`Library`.  Every primitive gets the coarse grid and a short
    refinement on a subsample; the ``n_polish`` best are then refined from
    their spare starts and on all points, and everything is re-ranked (rule
    in the module docstring).  Candidates ranked below ``n_polish`` keep
    their subsample parameters (their R^2 is still measured on all points).
    The list is never empty; callers decide on a fallback from
    ``result[0].r2``.  For exactly constant ``y`` the result is ``[const]``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    lib: Library = load_library(library)
    data = prepare_samples(x, y, rng=rng)
    const = _fit_const(data)
    if data.y_std == 0:
        const.score = 0.0
        return [const]
    cands = [_Candidate(const)]
    for prim in lib:
        cand = _quick_fit(data, prim, n_grid, n_starts, quick_nfev)
        if cand is not None:
            cands.append(cand)
    opts = dict(complexity_weight=complexity_weight, r2_floor=r2_floor, err_floor=err_floor)
    by_fit = {id(c.fit): c for c in cands}
    ranked = rank_fits([c.fit for c in cands], **opts)
    polished = [_polish(data, by_fit[id(f)], quick_nfev, max_nfev) for f in ranked[:n_polish]]
    ranked = _drop_lookalikes(data, rank_fits(polished + ranked[n_polish:], **opts), err_floor)
    if ranked[0].r2 < r2_floor:
        logger.info("edge matched poorly: best %s with R^2=%.4g", ranked[0].name, ranked[0].r2)
    return ranked[:top_k]
