"""Two-level edge matching: y ~= c * f(A * g(x) + B) + d for library primitives f and g.

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

import math
from typing import Sequence

import numpy as np
import sympy

from .edge import EdgeFit, match_edge
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
            g_expr = g.expr.subs(X, x_sym)
            arg = sympy.Float(fit.a) * g_expr + sympy.Float(fit.b)
            composed = Primitive(f"{fit.name}({name})", fit.primitive.expr.subs(X, arg),
                                 fit.primitive.complexity + g.complexity)
            fits.append(EdgeFit(composed.name, 1.0, 0.0, fit.c, fit.d, fit.r2, fit.mse,
                                composed.complexity, composed))
    err = lambda f: math.log10(max(1.0 - f.r2, 1e-10))  # noqa: E731
    fits.sort(key=lambda f: (err(f) + complexity_weight * f.complexity, f.complexity))
    return fits[:top_k]
