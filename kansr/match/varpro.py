"""The numeric fit of one primitive to one edge, ``z ~= c f(alpha t + beta) + d``, in
normalised units.

Stages 1-3 and 5 of :mod:`kansr.match.edge` (see its docstring): the samples normalised
(:func:`prepare_samples`), the coarse grid with ``c, d`` in closed form
(:func:`coarse_scan`, :func:`pick_starts`), Levenberg-Marquardt over ``(alpha, beta)`` with
``c, d`` eliminated (variable projection: :func:`refine`, :func:`best_of`), and the
symmetries that make ``(a, b)`` non-identifiable (:func:`canonical`). Nothing here knows
:class:`~kansr.match.edge.EdgeFit`; the edge module turns these numbers into fits and ranks them.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import sympy
from scipy.optimize import leastsq

from kansr.match.library import X, Primitive

logger = logging.getLogger(__name__)

MIN_POINTS = 5
DEFAULT_N_SUB = 64

_PENALTY = 1e6  # residual (in units of std(y)) returned for out-of-domain trial steps
# Scale-invariant primitives may sit at most this many window half-widths from u = 0; allows
# 1/T on T in [290, 310] (30), rejects the line-like (T/2 - 93.6)^2 on T in [1, 5] (95) that
# a product edge once matched.
MAX_OFFSET = 50.0


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class EdgeSamples:
    """Validated, normalised samples shared by all primitive fits of one edge."""

    x: np.ndarray  # (N,) original inputs
    y: np.ndarray  # (N,) original outputs
    m: float  # x mid-range
    s: float  # x half-range
    y_mean: float
    y_std: float  # population std; 0 for constant y
    t: np.ndarray  # (N,) in [-1, 1]
    z: np.ndarray  # (N,) standardised y
    t_sub: np.ndarray  # (n_sub,) subsample used for the coarse grid
    z_sub: np.ndarray

    @property
    def n(self) -> int:
        return self.x.size

    @property
    def sst(self) -> float:
        return self.n * self.y_std**2


def zero_spread(x: np.ndarray) -> bool:
    """Whether samples x are (numerically) one point: no function of x can be fitted, only
    its value there."""
    x = np.asarray(x, dtype=np.float64)
    return bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.max(np.abs(x)))))


def _validate(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"x and y length mismatch: {x.size} vs {y.size}")
    if x.size < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} points to fit an edge, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values")
    if zero_spread(x):
        raise ValueError("x has (numerically) zero spread; cannot fit an edge")
    return x, y


def prepare_samples(
    x: np.ndarray, y: np.ndarray, n_sub: int = DEFAULT_N_SUB, rng: Optional[np.random.Generator] = None
) -> EdgeSamples:
    """Validate and normalise; choose the coarse-grid subsample.

    Without ``rng`` the subsample is evenly spaced in sorted-x order (always
    contains both extremes); with ``rng`` it is random plus both extremes.
    """
    x, y = _validate(x, y)
    lo, hi = float(x.min()), float(x.max())
    m, s = 0.5 * (lo + hi), 0.5 * (hi - lo)
    t = np.clip((x - m) / s, -1.0, 1.0)
    y_mean, y_std = float(y.mean()), float(y.std())
    if y_std <= 1e-14 * max(1.0, abs(y_mean)):
        y_std = 0.0
    z = (y - y_mean) / y_std if y_std > 0 else np.zeros_like(y)
    order = np.argsort(x, kind="stable")
    if x.size <= n_sub:
        idx = order
    elif rng is None:
        idx = order[np.unique(np.linspace(0, x.size - 1, n_sub).round().astype(int))]
    else:
        inner = rng.choice(order[1:-1], size=n_sub - 2, replace=False)
        idx = np.concatenate([order[:1], inner, order[-1:]])
    return EdgeSamples(x, y, m, s, y_mean, y_std, t, z, t[idx], z[idx])


# --------------------------------------------------------------------------- #
# Closed-form (c, d) and coarse grid
# --------------------------------------------------------------------------- #
def linear_cd(F: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``z ~ c F + d`` per row.  F (G, n), z (n,) -> c, d, sse each (G,)."""
    n = z.size
    zc = z - z.mean()
    syy = float(zc @ zc)
    Fm = F.mean(axis=1)
    Fc = F - Fm[:, None]
    sxx = np.einsum("ij,ij->i", Fc, Fc)
    sxy = Fc @ zc
    good = sxx > 1e-24 * n * np.maximum(1.0, Fm**2)
    c = np.where(good, sxy / np.where(good, sxx, 1.0), 0.0)
    d = z.mean() - c * Fm
    sse = np.where(good, syy - c * sxy, syy)
    return c, d, np.maximum(sse, 0.0)


@functools.lru_cache(maxsize=16)
def _grid(n_alpha: int, n_beta: int, both_signs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Flattened coarse grid in normalised units -> alpha, beta each (G,).

    G = n_alpha * n_beta, doubled when ``both_signs``.  Rows are alpha-major so
    grid neighbours are +/-1 in either index of ``divmod(g, n_beta)``.
    """
    mags = np.geomspace(0.05, 20.0, n_alpha)
    alphas = np.concatenate([-mags[::-1], mags]) if both_signs else mags
    gammas = np.linspace(-1.5, 1.5, n_beta)
    alpha = np.repeat(alphas, n_beta)
    beta = np.tile(gammas, alphas.size) * (np.abs(alpha) + 3.0)
    return alpha, beta


@functools.lru_cache(maxsize=None)
def _reflective(prim: Primitive) -> bool:
    """True if ``f(-u) = s f(u) + k`` (odd, even, arccos-like), numerically.

    Then ``(alpha, beta)`` and ``(-alpha, -beta)`` give the same model family, so
    the coarse grid only needs alpha > 0.
    """
    u = np.linspace(0.05, 0.95, 11) * np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1])
    if not (prim.domain_ok(u).all() and prim.domain_ok(-u).all()):
        return False
    with np.errstate(all="ignore"):
        fu, fm = prim.numpy_fn(u), prim.numpy_fn(-u)
    if not (np.isfinite(fu).all() and np.isfinite(fm).all()) or np.ptp(fu) == 0:
        return False
    slope, icpt = np.polyfit(fu, fm, 1)
    resid = fm - (slope * fu + icpt)
    return bool(abs(abs(slope) - 1) < 1e-9 and np.abs(resid).max() <= 1e-9 * (1 + np.abs(fm).max()))


def coarse_scan(
    data: EdgeSamples, prim: Primitive, n_alpha: int, n_beta: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse-grid SSE on the subsample -> alpha, beta, sse (G,); invalid -> sse=inf."""
    alpha, beta = _grid(n_alpha, n_beta, not _reflective(prim))
    ok = prim.range_ok(beta - np.abs(alpha), beta + np.abs(alpha)) & _offset_ok(prim, alpha, beta)
    sse = np.full(alpha.shape, np.inf)
    if not ok.any():
        return alpha, beta, sse
    U = alpha[ok, None] * data.t_sub[None, :] + beta[ok, None]
    with np.errstate(all="ignore"):
        F = prim.numpy_fn(U)
    finite = np.all(np.isfinite(F), axis=1) & (np.max(np.abs(F), axis=1) < 1e150)
    F = np.where(finite[:, None], F, 0.0)
    with np.errstate(all="ignore"):
        _, _, s = linear_cd(F, data.z_sub)
    s[~finite] = np.inf
    sse[np.flatnonzero(ok)] = s
    return alpha, beta, sse


def pick_starts(sse: np.ndarray, n_beta: int, n_starts: int, scan: int = 60) -> list[int]:
    """Indices of the best grid points, skipping grid neighbours of already chosen ones."""
    order = np.argsort(sse, kind="stable")[:scan]
    chosen: list[tuple[int, int, int]] = []
    for g in order:
        if not np.isfinite(sse[g]):
            break
        ia, ib = divmod(int(g), n_beta)
        if all(max(abs(ia - ja), abs(ib - jb)) > 1 for _, ja, jb in chosen):
            chosen.append((int(g), ia, ib))
            if len(chosen) == n_starts:
                break
    return [g for g, _, _ in chosen]


# --------------------------------------------------------------------------- #
# Refinement (variable projection: c, d eliminated, LM over alpha, beta)
# --------------------------------------------------------------------------- #
def _window_ok(prim: Primitive, alpha: float, beta: float) -> bool:
    """Does ``u = alpha*t + beta`` stay admissible for all t in [-1, 1]?"""
    u1, u2 = beta - alpha, beta + alpha
    ok = prim.interval_ok(u1, u2) if u1 <= u2 else prim.interval_ok(u2, u1)
    return bool(ok) and bool(_offset_ok(prim, np.asarray(alpha), np.asarray(beta)))


def _offset_ok(prim: Primitive, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Scale-invariant primitives (powers, 1/x, sqrt, log) only: is the window at most
    MAX_OFFSET half-widths from the function's feature point u = 0?

    Far from it, c*(x + b)^2 with |b| >> range is a straight line plus a trace of curvature
    (and 1/(x + b) too): such fits mimic a simpler function by fitting the edge's spline
    error, not the law.
    """
    if _symmetry(prim) not in ("scale", "log") or is_identity(prim.expr):
        return np.ones(np.shape(alpha), dtype=bool)
    return np.abs(beta) <= MAX_OFFSET * np.abs(alpha)


class _VarPro:
    """Residual/Jacobian of ``min_{c,d} |c f(alpha t + beta) + d - z|`` over the free
    entries of ``theta = (alpha, beta)``; the others stay at ``base``.

    The Jacobian is Kaufman's approximation ``c * P_perp dF/dtheta`` where
    ``P_perp`` projects out span{1, F}.  Out-of-domain windows return a large
    constant residual so MINPACK's trust region rejects such steps.
    """

    def __init__(self, prim: Primitive, t: np.ndarray, z: np.ndarray,
                 base: tuple[float, float], free: tuple[int, ...]):
        self.prim, self.t = prim, t
        self.base, self.free = np.array(base, dtype=np.float64), list(free)
        self.zc = z - z.mean()
        self.penalty = np.full(t.shape, _PENALTY)
        self._key: Optional[tuple[float, float]] = None
        self._state: Optional[tuple[np.ndarray, np.ndarray, float, float]] = None

    def full(self, q: np.ndarray) -> tuple[float, float]:
        """Free parameters ``q`` -> (alpha, beta)."""
        p = self.base.copy()
        p[self.free] = q
        return float(p[0]), float(p[1])

    def _solve(self, q: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray, float, float]]:
        """(u, Fc, c, sxx) at q, or None if inadmissible; cached on the last q."""
        key = self.full(q)
        if key != self._key:
            self._key, self._state = key, None
            if _window_ok(self.prim, key[0], key[1]):
                u = key[0] * self.t + key[1]
                F = self.prim.numpy_fn(u)
                Fc = F - F.sum() / F.size
                sxx = float(Fc @ Fc)
                if np.isfinite(sxx):
                    c = float(Fc @ self.zc) / sxx if sxx > 1e-300 else 0.0
                    self._state = (u, Fc, c, sxx)
        return self._state

    def resid(self, q: np.ndarray) -> np.ndarray:
        st = self._solve(q)
        if st is None:
            return self.penalty
        _, Fc, c, _ = st
        return c * Fc - self.zc

    def jac(self, q: np.ndarray) -> np.ndarray:
        st = self._solve(q)
        J = np.zeros((2, self.t.size))  # column-major (col_deriv=True)
        if st is None or st[3] <= 1e-300:
            return J[self.free]
        u, Fc, c, sxx = st
        g = self.prim.numpy_deriv(u)  # type: ignore[misc]
        J[1] = g
        np.multiply(g, self.t, out=J[0])
        J = J[self.free]
        J -= J.sum(axis=1, keepdims=True) / self.t.size
        J -= np.outer(J @ Fc / sxx, Fc)
        J *= c
        if not np.isfinite(J).all():
            np.nan_to_num(J, copy=False, nan=0.0, posinf=1e150, neginf=-1e150)
        return J


def _reduce(prim: Primitive, alpha: float, beta: float
            ) -> tuple[tuple[float, float], tuple[int, ...]]:
    """Remove a non-identifiable direction before refining -> (start, free indices).

    "scale"/"log" primitives only depend on beta/alpha: fix |alpha| = 1 and
    refine beta.  "shift" primitives (exp): fix beta = 0 and refine alpha.
    Without this, LM drifts along the flat direction to huge, badly
    conditioned parameters.
    """
    kind = _symmetry(prim)
    if kind in ("scale", "log") and alpha != 0:
        cand, free = (math.copysign(1.0, alpha), beta / abs(alpha)), (1,)
    elif kind == "shift":
        cand, free = (alpha, 0.0), (0,)
    else:
        return (alpha, beta), (0, 1)
    return (cand, free) if _window_ok(prim, *cand) else ((alpha, beta), (0, 1))


def refine(
    prim: Primitive, t: np.ndarray, z: np.ndarray, alpha: float, beta: float, max_nfev: int
) -> tuple[float, float]:
    """Levenberg-Marquardt in (alpha, beta) from an admissible start; returns the end point.

    Uses MINPACK ``lmder`` through :func:`scipy.optimize.leastsq` -- the same
    algorithm as ``least_squares(method="lm")`` with much less per-call
    overhead, which dominates at these problem sizes.
    """
    start, free = _reduce(prim, alpha, beta)
    vp = _VarPro(prim, t, z, start, free)
    q0 = np.array([start[i] for i in free])
    try:
        with np.errstate(all="ignore"):
            q, _, info, _, ier = leastsq(
                vp.resid,
                q0,
                Dfun=vp.jac if prim.numpy_deriv is not None else None,
                col_deriv=True,
                full_output=True,
                xtol=1e-12,
                ftol=1e-12,
                gtol=0.0,
                maxfev=max_nfev,
            )
    except (ValueError, TypeError, FloatingPointError, np.linalg.LinAlgError) as exc:
        logger.debug("refinement of %s failed: %s", prim.name, exc)
        return alpha, beta
    logger.debug("refine %s: nfev=%d ier=%d", prim.name, info["nfev"], ier)
    return vp.full(np.atleast_1d(q))


def sse_at(prim: Primitive, t: np.ndarray, z: np.ndarray, alpha: float, beta: float
           ) -> Optional[tuple[float, float, float]]:
    """Closed-form (c, d, sse) of ``z ~ c f(alpha t + beta) + d``; None if inadmissible."""
    if not (math.isfinite(alpha) and math.isfinite(beta)) or not _window_ok(prim, alpha, beta):
        return None
    with np.errstate(all="ignore"):
        F = prim.numpy_fn(alpha * t + beta)
        if not np.isfinite(F).all():
            return None
        c, d, _ = linear_cd(F[None, :], z)
        r = c[0] * F + d[0] - z
    return float(c[0]), float(d[0]), float(r @ r)  # explicit SSE: no cancellation


# --------------------------------------------------------------------------- #
# Symmetries and canonical parameters
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def _symmetry(prim: Primitive) -> Optional[str]:
    """Detect a continuous symmetry that makes (a, b) non-identifiable, numerically.

    Returns "scale" if ``f(l u) = g(l) f(u)`` (powers, 1/x, sqrt, abs),
    "log" if ``f(l u) = f(u) + g(l)``, "shift" if ``f(u + s) = g(s) f(u)``
    (exp), else None.  Tested on a few points in (+/-)[0.11, 0.37].
    """
    pos = np.linspace(0.11, 0.37, 7)
    f, lam, sh = prim.numpy_fn, 1.7, 0.13
    tests: dict[str, list[np.ndarray]] = {"scale": [], "log": [], "shift": []}
    for u in (pos, -pos):
        if not (prim.domain_ok(u).all() and prim.domain_ok(lam * u).all()
                and prim.domain_ok(u + sh).all()):
            continue
        with np.errstate(all="ignore"):
            fu, fl, fs = f(u), f(lam * u), f(u + sh)
            tests["scale"].append(fl / fu)
            tests["log"].append(fl - fu)
            tests["shift"].append(fs / fu)

    def constant(parts: list[np.ndarray]) -> bool:
        if not parts:
            return False
        return all(np.isfinite(v).all() and np.ptp(v) <= 1e-9 * (1 + np.abs(v).max())
                   for v in parts)

    for kind in ("scale", "log", "shift"):
        if constant(tests[kind]):
            return kind
    return None


def canonical(data: EdgeSamples, prim: Primitive, alpha: float, beta: float) -> tuple[float, float]:
    """Pick a readable representative of a non-identifiable (alpha, beta).

    "scale"/"log": rescale so that |a| = 1 (``f((x + b/a))``); "shift": b = 0.
    ``c, d`` are re-solved afterwards, so the fitted curve is unchanged.
    """
    kind = _symmetry(prim)
    a, b = alpha / data.s, beta - alpha * data.m / data.s
    if kind in ("scale", "log") and a != 0:
        a, b = a / abs(a), b / abs(a)
    elif kind == "shift":
        b = 0.0
    else:
        return alpha, beta
    return a * data.s, b + a * data.m


@functools.lru_cache(maxsize=None)
def is_identity(expr: sympy.Expr) -> bool:
    """Whether the primitive's expression is ``x`` itself (fitted by plain linear regression).

    Expanded, not simplified: `simplify` cost ~70 ms a primitive, 1.7 s of every fresh
    process for the default library, and a library writes the identity as x (or x*1, 2*x/2).
    """
    return expr == X or sympy.expand(expr - X) == 0


# --------------------------------------------------------------------------- #
# Refining several starts
# --------------------------------------------------------------------------- #
def best_of(
    data: EdgeSamples,
    prim: Primitive,
    starts: list[tuple[float, float]],
    nfev: int,
    known: Optional[float] = None,
) -> tuple[float, float]:
    """Refine each start on the subsample; return the point (refined or start) with the
    lowest SSE there.  ``known``: SSE of ``starts[0]`` if already computed."""
    t, z = data.t_sub, data.z_sub
    best: Optional[tuple[float, float, float]] = None  # (sse, alpha, beta)
    for i, (al0, be0) in enumerate(starts):
        s0 = known if (i == 0 and known is not None) else _sse_of(prim, t, z, al0, be0)
        if best is None or s0 < best[0]:
            best = (s0, al0, be0)
        al, be = refine(prim, t, z, al0, be0, nfev)
        s1 = _sse_of(prim, t, z, al, be)
        if s1 < best[0]:
            best = (s1, al, be)
    assert best is not None  # starts are admissible grid points
    return best[1], best[2]


def _sse_of(prim: Primitive, t: np.ndarray, z: np.ndarray, alpha: float, beta: float) -> float:
    ev = sse_at(prim, t, z, alpha, beta)
    return math.inf if ev is None else ev[2]
