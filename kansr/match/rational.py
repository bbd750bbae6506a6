"""One-variable laws as a power times a linear-fractional function of one primitive.

    T(y) ~= x^k * (p0 + p1 g) / (1 + q g [+ r g^2]),   g = f(a x + b) or f(a / x + b)

for a library primitive f, an integer power k and an output transform T (y, y^2 or sqrt y).
The class holds what one primitive under an affine map cannot: 1/(exp(x) - 1) (Bose-Einstein
occupancy), x^3/(exp(x) - 1) (Planck), sin(x/2)^2/x^2 (a sinc squared: x^-2 (1 - cos x)/2),
(1 + x)/sqrt(1 - x^2) (y^2 is a ratio of lines), x/(1 + x) and 1/sqrt(1 - x^2); with the
quadratic denominator (T = y only) also resonances and relaxations, 1/(1 + x^2) and
x/(1 + x^2) (Lorentz, Debye), and 1/cosh(x) = 2 e^x/(1 + e^(2x)).

For fixed (a, b) the model is linear in (p0, p1, q[, r]) once multiplied out,
z = p0 + p1 g - q g z [- r g^2 z] with z = T(y) / x^k, so a coarse grid over (a, b) costs one small
least-squares solve per grid point, all of them batched (variable projection, as in
`kansr.match.varpro`). Each (primitive, power, transform) keeps its best grid point,
narrowed by finer local grids; the best of those are refined on all five constants by
scipy's least squares against y itself, and returned as sympy expressions in the library's
`X` (the caller's units; no scaling inside them). The caller refits and snaps them like any
other candidate formula.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sympy
from scipy.optimize import least_squares

from .library import X, Library, Primitive
from .varpro import _grid, _symmetry, is_identity

#: Powers k of the prefactor x^k.
POWERS = (0, 1, -1, 2, -2, 3, -3)
#: Output transforms T (each undone exactly: y^2 by a root of y's sign, sqrt y by a square).
TRANSFORMS = ("identity", "square", "sqrt")
#: Rows used by the coarse grid, and by the refinement.
SCAN_ROWS = 200
REFINE_ROWS = 1000
#: Grid over (a, b) in units where the data's x spans [-1, 1] (as `varpro._grid`).
N_ALPHA, N_BETA = 24, 13  # (alpha steps of 1.3x, beta steps of (|alpha| + 3) / 4)
#: Local minima of the coarse grid refined on (a, b) per (primitive, power, transform), of
#: those within `STARTS_WITHIN` times the best one's error (a coarse grid point one step
#: off the law can lose to a look-alike's basin: 1/(e^x + e^-x) as exp(-x)/(1 + exp(-2x))
#: scanned 1.4e-5 beside exp(0.4 x)'s 7.4e-6 on one subsample, and the best alone was kept),
#: and candidates then refined on all constants against y.
STARTS, STARTS_WITHIN = 3, 10.0
#: Zoom levels each basin gets before the best of them is narrowed further (after two, the
#: law's basin above scanned 1.5e-8 against the look-alike's 7.0e-6).
BASIN_LEVELS = 2
REFINED = 8
#: Relative errors below this are round-off: ties.
ROUND_OFF = 1e-20
#: A scanned fit this close (relative error on T(y) / x^k, after the local grids) is
#: refined at once: exact to round-off, it ends the scan of forms as complex or more.
EARLY_REFINE = 1e-8
#: Local grids narrowing each coarse grid point: points per axis, levels, shrink per level.
ZOOM_POINTS, ZOOM_LEVELS, ZOOM_SHRINK = 9, 5, 4.0
#: The denominator 1 + q g may come no closer to zero than this on the data (a pole in the
#: data's range is no law; near one the equation error says nothing about the fit).
MIN_DENOMINATOR = 1e-3


#: Transforms for which the quadratic denominator 1 + q g + r g^2 is scanned too ...
QUADRATIC_TRANSFORMS = ("identity",)
#: ... where the best linear-fractional fit leaves more than this relative MSE on y.
QUADRATIC_AFTER = 1e-14


@dataclass(frozen=True)
class RationalFit:
    """A fitted x^k (p0 + p1 g)/(1 + q g + r g^2) under the output transform `transform`
    (r = 0 unless `quadratic`)."""

    expr: sympy.Expr  # in the library's X, the caller's units
    mse: float  # on the refinement rows, in y's units
    primitive: str
    power: int
    transform: str
    quadratic: bool = False


def _transform(name: str, y: np.ndarray) -> np.ndarray | None:
    """T(y), or None where T does not apply (sqrt of a negative, y of mixed sign for y^2)."""
    if name == "identity":
        return y
    if name == "square":  # undone by sqrt: y must keep one sign
        return y ** 2 if (np.all(y > 0) or np.all(y < 0)) else None
    return np.sqrt(y) if np.all(y > 0) else None


def _undo(name: str, model: sympy.Expr, y_sign: float) -> sympy.Expr:
    if name == "identity":
        return model
    if name == "square":
        return sympy.sqrt(model) if y_sign > 0 else -sympy.sqrt(model)
    return model ** 2


def _undo_np(name: str, model: np.ndarray, y_sign: float) -> np.ndarray:
    if name == "identity":
        return model
    if name == "square":
        return y_sign * np.sqrt(model)
    return model ** 2


def _scan(g: np.ndarray, z: np.ndarray, quad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of z ~ p0 + p1 g - q g z [- r g^2 z] for every row of g (G, n) at once.

    Returns the parameters (G, 4): (p0, p1, q, r), r = 0 unless `quad`, and the true
    relative error of (p0 + p1 g)/(1 + q g + r g^2) against z (G,), inf where the solve
    fails or the denominator nears zero."""
    gz = g * z
    cols = [None, g, -gz] + ([-g * gz] if quad else [])  # None: the constant column
    m = len(cols)
    n = z.size
    with np.errstate(all="ignore"):
        # normal equations from pairwise row sums (a batched matmul is 3x slower here)
        M = np.empty((len(g), m, m))
        r = np.empty((len(g), m))
        for i, ci in enumerate(cols):
            r[:, i] = z.sum() if ci is None else ci @ z
            for j in range(i, m):
                cj = cols[j]
                M[:, i, j] = M[:, j, i] = (n if ci is None and cj is None
                                           else cj.sum(1) if ci is None
                                           else np.einsum("gn,gn->g", ci, cj))
        # normal equations scaled to unit diagonal: conditioning
        d = np.sqrt(np.maximum(np.diagonal(M, axis1=1, axis2=2), 1e-300))
        Mn = M / (d[:, :, None] * d[:, None, :]) + 1e-12 * np.eye(m)
        try:
            sol = np.linalg.solve(Mn, (r / d)[..., None])[..., 0] / d
        except np.linalg.LinAlgError:
            return np.zeros((len(g), 4)), np.full(len(g), np.inf)
        p = np.zeros((len(g), 4))
        p[:, :m] = sol
        den = 1.0 + p[:, 2:3] * g + p[:, 3:4] * g * g
        pred = (p[:, 0:1] + p[:, 1:2] * g) / den
        err = np.mean((pred - z[None, :]) ** 2, axis=1) / max(float(np.var(z)), 1e-300)
    # one sign across the rows: a pole between samples would be crossed
    bad = ~np.isfinite(err) | (np.min(np.abs(den), axis=1) < MIN_DENOMINATOR) \
        | (np.min(den, axis=1) * np.max(den, axis=1) <= 0)
    err[bad] = np.inf
    return p, err


def _zoom(f: Primitive, t: np.ndarray, z: np.ndarray, alpha: float, beta: float,
          free_beta: bool, quad: bool = False, levels: range = range(ZOOM_LEVELS)
          ) -> tuple[float, float, np.ndarray, float]:
    """(alpha, beta) from a coarse grid point narrowed by finer local grids (the zoom
    `levels`: level l spans ZOOM_SHRINK^-l coarse steps), (p0, p1, q, r) solved at each point
    (a coarse grid's error says little: a flexible look-alike beats the law's own shape one
    grid step off); (alpha, beta, p, relative error on z)."""
    steps = np.linspace(-1.0, 1.0, ZOOM_POINTS)
    d_log = math.log(_grid(N_ALPHA, 1, False)[0][1] / _grid(N_ALPHA, 1, False)[0][0])
    d_beta = 3.0 / (N_BETA - 1) * (abs(alpha) + 3.0) if free_beta else 0.0
    d_log, d_beta = d_log / ZOOM_SHRINK ** levels.start, d_beta / ZOOM_SHRINK ** levels.start
    best = (alpha, beta, np.zeros(4), math.inf)
    for _ in levels:
        al = np.repeat(best[0] * np.exp(steps * d_log), ZOOM_POINTS if free_beta else 1)
        be = (np.tile(best[1] + steps * d_beta, ZOOM_POINTS) if free_beta
              else np.full(al.shape, best[1]))
        ok = f.range_ok(be - np.abs(al), be + np.abs(al))
        if not ok.any():
            break
        al, be = al[ok], be[ok]
        with np.errstate(all="ignore"):
            g = f.numpy_fn(al[:, None] * t[None, :] + be[:, None])
        fin = np.all(np.isfinite(g), axis=1)
        if not fin.any():
            break
        p, err = _scan(np.where(fin[:, None], g, 0.0), z, quad)
        err[~fin] = np.inf
        i = int(np.argmin(err))
        if err[i] < best[3]:
            best = (float(al[i]), float(be[i]), p[i], float(err[i]))
        d_log, d_beta = d_log / ZOOM_SHRINK, d_beta / ZOOM_SHRINK
    return best


def _grid_for(f: Primitive) -> tuple[np.ndarray, np.ndarray, int]:
    """(alpha, beta) to scan in normalised units, and the number of betas per alpha (1
    where the shift b is not free)."""
    # exp(a x + b) = e^b exp(a x): b is absorbed by p1 and q
    n_beta = 1 if _symmetry(f) == "shift" else N_BETA
    return (*_grid(N_ALPHA, n_beta, True), n_beta)


def _basins(err: np.ndarray, n_beta: int) -> list[int]:
    """Indices of the coarse grid's local minima (each no worse than its neighbours in
    alpha and beta; the grid is alpha-major), best first: at most `STARTS`, within
    `STARTS_WITHIN` of the best, finite."""
    e = err.reshape(-1, n_beta)
    pad = np.pad(e, 1, constant_values=np.inf)
    local = ((e <= pad[:-2, 1:-1]) & (e <= pad[2:, 1:-1]) & (e <= pad[1:-1, :-2])
             & (e <= pad[1:-1, 2:]) & np.isfinite(e)).ravel()
    idx = np.flatnonzero(local)
    idx = idx[np.argsort(err[idx], kind="stable")][:STARTS]
    return [int(i) for i in idx if err[i] <= STARTS_WITHIN * err[idx[0]]]


def _model(theta: np.ndarray, f: Primitive, x: np.ndarray, k: int, inv: bool) -> np.ndarray:
    p0, p1, q, r, a, b = theta
    g = f.numpy_fn(a * (1.0 / x if inv else x) + b)
    return x ** k * (p0 + p1 * g) / (1.0 + q * g + r * g * g)


def _refine(f: Primitive, x: np.ndarray, y: np.ndarray, k: int, inv: bool, tname: str,
            y_sign: float, theta0: np.ndarray, free_ab: bool, quad: bool = False
            ) -> tuple[np.ndarray, float]:
    """The free constants (p0, p1, q, r if `quad`, a and b if `free_ab`) refined against
    y itself; (theta (6,), relative MSE on y)."""
    var = max(float(np.var(y)), 1e-300)
    free = np.array([True, True, True, quad, free_ab, free_ab])

    def unpack(theta: np.ndarray) -> np.ndarray:
        full = theta0.astype(np.float64).copy()
        full[free] = theta
        return full

    def resid(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = _undo_np(tname, _model(unpack(theta), f, x, k, inv), y_sign) - y
        return np.where(np.isfinite(r), r, 1e3 * math.sqrt(var))

    start = theta0[free]
    r0 = resid(start)
    best, best_err = start, float(r0 @ r0) / len(y) / var
    try:
        with np.errstate(all="ignore"):
            res = least_squares(resid, start, max_nfev=60 * len(start), x_scale="jac")
        err = float(res.fun @ res.fun) / len(y) / var
        if err < best_err:
            best, best_err = res.x, err
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        pass
    return unpack(best), best_err


def _canonical(f: Primitive, theta: np.ndarray) -> np.ndarray:
    """A readable representative: exp(a x + b) -> e^b exp(a x), (a x + b)^n -> a^n (x + b/a)^n,
    the factor taken into p1 and q (the curve is unchanged)."""
    p0, p1, q, r, a, b = (float(v) for v in theta)
    kind = _symmetry(f)
    with np.errstate(all="ignore"):
        if kind == "shift":
            lam = float(f.numpy_fn(np.array([b]))[0] / f.numpy_fn(np.array([0.0]))[0])
            a_new, b_new = a, 0.0
        elif kind == "scale" and a != 0 and not is_identity(f.expr):
            a_new, b_new = math.copysign(1.0, a), b / abs(a)
            u = np.array([0.3, 0.7])
            ratio = f.numpy_fn(a * u + b) / f.numpy_fn(a_new * u + b_new)
            lam = float(ratio[0])
        else:
            return theta
    if not (math.isfinite(lam) and lam != 0):
        return theta
    return np.array([p0, p1 * lam, q * lam, r * lam * lam, a_new, b_new])


def _expr(f: Primitive, theta: np.ndarray, k: int, inv: bool, tname: str, y_sign: float
          ) -> sympy.Expr:
    p0, p1, q, r, a, b = (sympy.Float(float(v)) for v in theta)
    u = 1 / X if inv else X
    g = f.expr.subs(X, a * u + b) if not is_identity(f.expr) else u
    den = 1 + q * g + (r * g ** 2 if theta[3] != 0 else 0)
    return _undo(tname, X ** k * (p0 + p1 * g) / den, y_sign)


def match_rational(x: np.ndarray, y: np.ndarray, library: Library, *,
                   powers: Sequence[int] = POWERS, transforms: Sequence[str] = TRANSFORMS,
                   top_k: int = 3, seed: int = 0, deadline: float | None = None
                   ) -> list[RationalFit]:
    """The `top_k` best fits x^k (p0 + p1 g) / (1 + q g [+ r g^2]), g = f(a u + b), of
    (x, y), u = x or (x of one sign) 1/x, undone from T(y) for T in `transforms`, over the
    library's primitives; best first by relative MSE on y, possibly empty. The quadratic
    denominator is scanned only while no linear one reproduces y to `QUADRATIC_AFTER` (an
    exact linear-fractional law has quadratic twins at round-off). Forms are scanned
    simplest first (see `_forms`); stops scanning at `deadline` (perf_counter)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 8 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return []
    ranked = _match(x, y, library, powers, transforms, seed, deadline)
    # round-off ties go to the simpler form (a ratio of lines in x, not in 1/(c - 1/x))
    return [fit for _, fit in sorted(ranked, key=lambda rf: rf[0])[:top_k]]


def _forms(prims: Sequence[Primitive], powers: Sequence[int], transforms: Sequence[str],
           inversions: Sequence[bool]) -> list[tuple[str, int, Primitive, bool, bool]]:
    """Every (transform, power k, primitive, inverted, quadratic) to scan, simplest first
    by `_complexity`, linear denominators before quadratic ones of the same complexity,
    then in the order given. Under a deadline the simple forms are the ones tried: 1/cosh
    of an inverted group (exp, quadratic) came after every linear form of every transform
    and power, and a part three reductions deep ran out of its 3.8 s before it."""
    forms = [(tname, k, f, inv, quad)
             for tname in transforms
             for quad in ((False, True) if tname in QUADRATIC_TRANSFORMS else (False,))
             for k in powers for f in prims for inv in inversions]
    return sorted(forms, key=lambda form: (_complexity(*form[1:]), form[4]))


def _complexity(k: int, f: Primitive, inv: bool, quad: bool) -> int:
    return f.complexity + inv + abs(k) + quad


def _match(x: np.ndarray, y: np.ndarray, library: Library, powers: Sequence[int],
           transforms: Sequence[str], seed: int, deadline: float | None
           ) -> list[tuple[tuple[float, int], RationalFit]]:
    """The scan of `match_rational`: the refined fits, each with its rank (relative MSE on
    y floored at round-off, complexity)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(x.size)
    scan, fine = order[:SCAN_ROWS], order[:REFINE_ROWS]
    y_sign = 1.0 if np.all(y > 0) else -1.0
    candidates: list[tuple[float, Primitive, int, bool, str, bool, np.ndarray]] = []
    ranked: list[tuple[tuple[float, int], RationalFit]] = []
    xf, yf = x[fine], y[fine]
    var = max(float(np.var(yf)), 1e-300)

    def refined(f: Primitive, k: int, inv: bool, tname: str, quad: bool, theta0: np.ndarray
                ) -> tuple[tuple[float, int], RationalFit] | None:
        if is_identity(f.expr):
            with np.errstate(all="ignore"):
                p, _ = _scan(xf[None, :], _transform(tname, yf) / xf ** k, quad)
            theta0 = np.array([*p[0], 1.0, 0.0])
        theta, err = _refine(f, xf, yf, k, inv, tname, y_sign, theta0,
                             free_ab=not is_identity(f.expr), quad=quad)
        theta = _canonical(f, theta)
        try:
            expr = _expr(f, theta, k, inv, tname, y_sign)
        except (TypeError, ValueError):
            return None
        return ((max(err, ROUND_OFF), _complexity(k, f, inv, quad)),
                RationalFit(expr, err * var, f.name, k, tname, quad))

    def take(e: float, f: Primitive, k: int, inv: bool, tname: str, quad: bool,
             theta0: np.ndarray, exact_cx: float) -> float:
        """A scanned fit (relative error e on T(y) / x^k): refined at once where close, kept
        as a candidate unless that made it exact; returns the complexity bound after it."""
        if e <= EARLY_REFINE:
            fit = refined(f, k, inv, tname, quad, theta0)
            if fit is not None and fit[0][0] <= ROUND_OFF:
                ranked.append(fit)
                return min(exact_cx, fit[0][1])
        candidates.append((e, f, k, inv, tname, quad, theta0))
        return exact_cx

    # Once a fit is exact to round-off, only simpler forms can still win (round-off ties go
    # to the simpler): the rest of the scan is skipped (x/(exp(x) - 1) is found in the
    # first tenth of it; the whole scan took 5 s of a one-variable part's budget).
    exact_cx = math.inf
    # a dimensionless group comes in either orientation (h omega / kT or kT / h omega):
    # f(a / x + b) is tried beside f(a x + b) where x keeps one sign
    inversions = (False, True) if x.min() * x.max() > 0 else (False,)
    prims = [f for f in library if f.expr.has(X) and f.name != "abs"]
    linear_best = math.inf  # the best linear form's error (scanned on z, or refined on y)
    targets: dict[tuple[str, int], np.ndarray | None] = {}
    for tname, k, f, inv, quad in _forms(prims, powers, transforms, inversions):
        if deadline is not None and time.perf_counter() > deadline:
            break
        if _complexity(k, f, inv, quad) >= exact_cx:
            break  # (simplest first: none after it is simpler)
        if quad and linear_best <= QUADRATIC_AFTER:
            continue
        if (tname, k) not in targets:
            ty = _transform(tname, y)
            z = None
            if ty is not None and not (k < 0 and x.min() <= 0 <= x.max()):  # (a pole of x^k)
                with np.errstate(all="ignore"):
                    z = ty[scan] / x[scan] ** k
                if not np.all(np.isfinite(z)) or np.ptp(z) == 0:
                    z = None
            targets[tname, k] = z
        z = targets[tname, k]
        if z is None:
            continue
        if is_identity(f.expr):  # a ratio of polynomials: no map to scan
            _, e_id = _scan(x[scan][None, :], z, quad)
            if not inv and np.isfinite(e_id[0]):  # (1/x is a ratio of lines too)
                exact_cx = take(float(e_id[0]), f, k, False, tname, quad,
                                np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0]), exact_cx)
                linear_best = min(linear_best, math.inf if quad else float(e_id[0]))
            continue
        u = 1.0 / x if inv else x
        m, s = 0.5 * (u.max() + u.min()), 0.5 * np.ptp(u)
        t = (u[scan] - m) / s
        alpha, beta, n_beta = _grid_for(f)
        ok = f.range_ok(beta - np.abs(alpha), beta + np.abs(alpha))
        if not ok.any():
            continue
        with np.errstate(all="ignore"):
            g = f.numpy_fn(alpha[ok, None] * t[None, :] + beta[ok, None])
        fin = np.all(np.isfinite(g), axis=1) & (np.max(np.abs(g), axis=1) < 1e100)
        if not fin.any():
            continue
        use = np.flatnonzero(ok)[fin]
        err = np.full(alpha.size, np.inf)
        _, err[use] = _scan(g[fin], z, quad)
        # every basin narrowed a little, the best of them to the end
        free_beta = n_beta > 1
        first = range(BASIN_LEVELS)
        al, be, pi, e = min((_zoom(f, t, z, alpha[i], beta[i], free_beta, quad, first)
                             for i in _basins(err, n_beta)),
                            key=lambda zoomed: zoomed[3], default=(0.0, 0.0, None, math.inf))
        if not math.isfinite(e):
            continue
        finer = _zoom(f, t, z, al, be, free_beta, quad, range(BASIN_LEVELS, ZOOM_LEVELS))
        if finer[3] < e:
            al, be, pi, e = finer
        # (a, b) back in x's own units
        exact_cx = take(e, f, k, inv, tname, quad, np.array([*pi, al / s, be - al * m / s]),
                        exact_cx)
        linear_best = min(linear_best, math.inf if quad else e)
    # the best few of each kind refined on y: the quadratic ones only where no linear one
    # is exact to `QUADRATIC_AFTER`
    candidates.sort(key=lambda c: c[0])
    for quad in (False, True):
        if quad and min((r[0][0] for r in ranked if not r[1].quadratic),
                        default=linear_best) <= QUADRATIC_AFTER:
            break
        for _, f, k, inv, tname, _, theta0 in [c for c in candidates if c[5] == quad][:REFINED]:
            if deadline is not None and time.perf_counter() > deadline:
                break
            if _complexity(k, f, inv, quad) >= exact_cx:
                continue
            fit = refined(f, k, inv, tname, quad, theta0)
            if fit is not None:
                ranked.append(fit)
    return ranked
