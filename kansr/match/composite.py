"""Two-level edge matching: y ~= c * f(A * g(x) + B) + d for library primitives f and g.

`match_composite` tries fixed inner functions g of the edge's input in the user's units;
`match_nested` takes the inner function with its own affine map, g(a * x + b), from the
edge's best direct fits (sin(pi * x) inside exp is such an edge) and refines all six
constants together.

A single primitive under an affine map cannot express an edge such as sin(pi * x^2); a KAN
edge learns such compositions whenever the network is shallower than the law. For each
inner function g (a short list of simple primitives, by default powers, roots, reciprocals,
exp and log) the samples are mapped to u = g(x) and the whole library is matched on (u, y)
with `match_edge`. The result is reported as an ordinary `EdgeFit` whose primitive is the
composed function f(A * g(x) + B) (a = 1, b = 0), so every downstream stage (fixing the edge
in the network, composing, refitting constants) treats it like any other candidate.

The inner g acts on x in the units given: pass the edge's input in the user's units (the
first layer's inputs before scaling) so that g(x) is the physical x^2 and not (x - m)^2.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import sympy
from scipy.optimize import least_squares

from .edge import EdgeFit, match_edge, score_fit
from .library import X, LibrarySpec, Primitive, load_library

#: Inner functions tried by default (names from the default library).
DEFAULT_INNER = ("x^2", "x^3", "1/x", "1/x^2", "sqrt", "exp", "log")


def _inner_ok(g: Primitive, x: np.ndarray) -> bool:
    """g is defined, finite and not constant on every sample (no singular point crossed)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if not g.interval_ok(lo, hi):
        return False
    with np.errstate(all="ignore"):
        u = g(x)
    return bool(np.all(np.isfinite(u)) and np.ptp(u) > 0)


def match_composite(
    x: np.ndarray,
    y: np.ndarray,
    library: LibrarySpec = None,
    *,
    inner: Sequence[str] = DEFAULT_INNER,
    x_map: tuple[float, float] = (0.0, 1.0),
    top_k: int = 3,
    complexity_weight: float = 0.5,
) -> list[EdgeFit]:
    """Best compositions c * f(A * g(m + s * x) + B) + d for samples (x, y) of one edge.

    `x_map` = (m, s) maps the samples to the units g acts in (m + s * x); the returned
    expressions include that map, so they are functions of the edge's own input x.
    Inner names missing from the library are skipped; identity and constant outer fits
    are left out (the plain library already covers c * g(x) + d). Ranked like
    `match_edge` (true R^2 and complexity), best first; possibly empty.
    """
    lib = load_library(library)
    m, s = (float(v) for v in x_map)
    x = np.asarray(x, dtype=np.float64)
    xu = m + s * x
    x_sym = sympy.Float(m) + sympy.Float(s) * X if (m, s) != (0.0, 1.0) else X
    fits: list[EdgeFit] = []
    for name in inner:
        if name not in lib:
            continue
        g = lib[name]
        if not _inner_ok(g, xu):
            continue
        with np.errstate(all="ignore"):
            u = g(xu)
        for fit in match_edge(u, y, lib, top_k=2, complexity_weight=complexity_weight):
            if fit.primitive is None or fit.primitive.expr == X:
                continue
            arg = sympy.Float(fit.a) * g.expr.subs(X, x_sym) + sympy.Float(fit.b)
            fits.append(_composed(fit.primitive, g, arg, fit.c, fit.d, fit.r2, fit.mse))
    return _best(fits, complexity_weight, top_k)


def _composed(f: Primitive, g: Primitive, arg: sympy.Expr, c: float, d: float, r2: float,
              mse: float) -> EdgeFit:
    """The fit c * f(arg) + d, arg an affine map of g, as an ordinary `EdgeFit` (a = 1,
    b = 0) whose primitive is the composed function."""
    composed = Primitive(f"{f.name}({g.name})", f.expr.subs(X, arg),
                         f.complexity + g.complexity)
    return EdgeFit(composed.name, 1.0, 0.0, c, d, r2, mse, composed.complexity, composed)


def _best(fits: list[EdgeFit], complexity_weight: float, top_k: int) -> list[EdgeFit]:
    """The `top_k` best by `score_fit` (ties: the simpler)."""
    fits.sort(key=lambda f: (score_fit(f, complexity_weight), f.complexity))
    return fits[:top_k]


def _joint_refit(f: Primitive, g: Primitive, x: np.ndarray, y: np.ndarray,
                 p0: np.ndarray, max_nfev: int) -> tuple[np.ndarray, float]:
    """Least-squares refit of p = (c, A, B, a, b, d) in c*f(A*g(a*x+b)+B)+d; (p, SSE)."""
    ff, gf = f.numpy_fn, g.numpy_fn

    def residuals(p: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = p[0] * ff(p[1] * gf(p[3] * x + p[4]) + p[2]) + p[5] - y
        # leaving the domain (log of a negative, overflow) is a bad step, not a crash
        return np.where(np.isfinite(r), r, 1e6)

    r0 = residuals(p0)
    best, best_sse = p0, float(r0 @ r0)
    try:
        res = least_squares(residuals, p0, max_nfev=max_nfev, x_scale="jac")
    except (ValueError, FloatingPointError):
        return best, best_sse
    sse = float(res.fun @ res.fun)
    return (res.x, sse) if sse < best_sse else (best, best_sse)


def match_nested(
    x: np.ndarray,
    y: np.ndarray,
    inner_fits: Sequence[EdgeFit],
    library: LibrarySpec = None,
    *,
    max_inner: int = 2,
    top_k: int = 3,
    complexity_weight: float = 0.5,
    max_nfev: int = 200,
) -> list[EdgeFit]:
    """Best c * f(A * g(a * x + b) + B) + d with g(a * x + b) taken from `inner_fits`.

    `inner_fits` are the edge's direct library fits, best first (as `match_edge` returns
    them); the first `max_inner` that are neither constant nor the identity give inner
    functions with their fitted a and b. The library is matched on (g(a x + b), y) for the
    outer f, and then all six constants are refit together on (x, y). Ranked like
    `match_edge`, best first; possibly empty.
    """
    lib = load_library(library)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sst = float(np.sum((y - y.mean()) ** 2))
    if sst <= 0:
        return []
    inners = [f for f in inner_fits if f.primitive is not None and f.primitive.expr != X]
    fits: list[EdgeFit] = []
    for inner in inners[:max_inner]:
        g = inner.primitive
        with np.errstate(all="ignore"):
            u = g.numpy_fn(inner.a * x + inner.b)
        if not (np.all(np.isfinite(u)) and np.ptp(u) > 0):
            continue
        for outer in match_edge(u, y, lib, top_k=2, complexity_weight=complexity_weight):
            f = outer.primitive
            if f is None or f.expr == X:
                continue  # the constant and c * g + d are plain library fits already
            p0 = np.array([outer.c, outer.a, outer.b, inner.a, inner.b, outer.d])
            p, sse = _joint_refit(f, g, x, y, p0, max_nfev)
            c, A, B, a, b, d = (float(v) for v in p)
            arg = sympy.Float(A) * g.expr.subs(X, sympy.Float(a) * X + sympy.Float(b)) \
                + sympy.Float(B)
            fits.append(_composed(f, g, arg, c, d, 1.0 - sse / sst, sse / len(x)))
    return _best(fits, complexity_weight, top_k)
