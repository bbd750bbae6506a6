"""Output transforms y -> z = T(y), each undone exactly in a formula, and a probe ranking them.

A law that is hard to fit as y may be easy as z: a product of powers is a sum after log, a
harmonic sum 1/(1/a + 1/b) is a sum after 1/y, a Euclidean norm sqrt(a^2 + b^2) after y^2.
Solve for z, then `OutputTransform.inverse` turns the formula for z into one for y.

    >>> import sympy
    >>> t = OutputTransform("log")
    >>> a, b = sympy.symbols("a b", positive=True)
    >>> t.inverse(sympy.log(a) + 2 * sympy.log(b))
    a*b**2

Transforms that take |y| (log, sqrt, square) carry y's sign, so a negative target works too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

TRANSFORMS = ("identity", "log", "reciprocal", "square", "sqrt", "arctanh")
# Among transforms the probe cannot tell apart, the simplest is tried first.
PRIORITY = {name: k for k, name in enumerate(TRANSFORMS)}
# Probe scores (unexplained variance fractions) below this count as equal: they are at the
# least-squares round-off of a polynomial basis, not a real difference in fit.
PROBE_FLOOR = 1e-9
# The probe fits at most this many rows (a cheap screen, not a model).
PROBE_ROWS = 2000


@dataclass(frozen=True)
class OutputTransform:
    """z = T(y). name: one of TRANSFORMS; sign: y's sign (+1 or -1) for the transforms of |y|.

    identity z = y; log z = log(sign*y); reciprocal z = 1/y; square z = y^2;
    sqrt z = sqrt(sign*y); arctanh z = atanh(y) for |y| < 1 (a sum of rapidities: the
    relativistic addition (a + b)/(1 + a*b) is atanh(a) + atanh(b) after it).
    """

    name: str
    sign: int = 1

    def __post_init__(self):
        if self.name not in TRANSFORMS:
            raise ValueError(f"unknown output transform {self.name!r}; use one of {TRANSFORMS}")
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {self.sign!r}")

    def __str__(self) -> str:
        inner = "y" if self.sign > 0 else "-y"
        return {"identity": "y", "log": f"log({inner})", "reciprocal": "1/y",
                "square": "y^2", "sqrt": f"sqrt({inner})", "arctanh": "atanh(y)"}[self.name]

    def applies(self, y) -> bool:
        """True when T is defined (and invertible) on every value of y."""
        y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            return False
        s = self.sign * y
        return bool({"identity": True, "log": np.all(s > 0), "reciprocal": np.all(y != 0),
                     "square": np.all(s >= 0), "sqrt": np.all(s >= 0),
                     "arctanh": np.all(np.abs(y) < 1)}[self.name])

    def forward(self, y) -> np.ndarray:
        """z = T(y) on an array."""
        y = np.asarray(y, dtype=np.float64)
        if not self.applies(y):
            raise ValueError(f"{self} is not defined on every target value; check "
                             "`applicable_transforms(y)` first")
        return {"identity": lambda: y.copy(), "log": lambda: np.log(self.sign * y),
                "reciprocal": lambda: 1.0 / y, "square": lambda: y ** 2,
                "sqrt": lambda: np.sqrt(self.sign * y),
                "arctanh": lambda: np.arctanh(y)}[self.name]()

    def inverse_values(self, z) -> np.ndarray:
        """y = T^-1(z) on an array."""
        z = np.asarray(z, dtype=np.float64)
        return {"identity": lambda: z.copy(), "log": lambda: self.sign * np.exp(z),
                "reciprocal": lambda: 1.0 / z, "square": lambda: self.sign * np.sqrt(z),
                "sqrt": lambda: self.sign * z ** 2, "arctanh": lambda: np.tanh(z)}[self.name]()

    def forward_expr(self, expr) -> sympy.Expr:
        """The formula for z from a formula for y."""
        e = sympy.sympify(expr)
        return {"identity": lambda: e, "log": lambda: sympy.log(self.sign * e),
                "reciprocal": lambda: 1 / e, "square": lambda: e ** 2,
                "sqrt": lambda: sympy.sqrt(self.sign * e),
                "arctanh": lambda: sympy.atanh(e)}[self.name]()

    def inverse(self, expr) -> sympy.Expr:
        """The formula for y from a formula for z (exact: no constants are fitted)."""
        e = sympy.sympify(expr)
        return {"identity": lambda: e, "log": lambda: self.sign * sympy.exp(e),
                "reciprocal": lambda: 1 / e, "square": lambda: self.sign * sympy.sqrt(e),
                "sqrt": lambda: self.sign * e ** 2,
                "arctanh": lambda: _tanh_of(e)}[self.name]()


def _tanh_of(e: sympy.Expr) -> sympy.Expr:
    """tanh(e), written without tanh where e is a sum of atanh terms (the addition theorem:
    tanh(atanh(a) + atanh(b)) = (a + b)/(1 + a*b)), else as it is."""
    t = sympy.tanh(e)
    expanded = sympy.expand_trig(t)
    return expanded if not expanded.has(sympy.tanh) else t


def applicable_transforms(y) -> list[OutputTransform]:
    """Every transform defined on all of y, with y's sign where it has one."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    sign = -1 if y.size and np.all(y <= 0) and np.any(y < 0) else 1
    return [t for t in (OutputTransform(name, sign) for name in TRANSFORMS) if t.applies(y)]


@dataclass(frozen=True)
class ProbeResult:
    """A transform and its probe score: the share of Var(z) an additive model in per-variable
    features leaves unexplained (0: z is exactly additive in those features)."""

    transform: OutputTransform
    score: float


def additive_features(X: np.ndarray) -> np.ndarray:
    """(N, 1 + k*d) per-variable features: 1, then for each column (scaled to [-1, 1] on its
    range) t, t^2, t^3, and where the column keeps one sign also log|x| and 1/x (scaled to
    unit spread) so that power laws are captured."""
    X = np.asarray(X, dtype=np.float64)
    cols = [np.ones(len(X))]
    for x in X.T:
        lo, hi = x.min(), x.max()
        t = (x - (lo + hi) / 2) / ((hi - lo) / 2 if hi > lo else 1.0)
        cols += [t, t ** 2, t ** 3]
        if lo > 0 or hi < 0:
            for g in (np.log(np.abs(x)), 1.0 / x):
                cols.append((g - g.mean()) / (g.std() if g.std() > 0 else 1.0))
    return np.column_stack(cols)


def additive_misfit(F: np.ndarray, z: np.ndarray) -> float:
    """1 - R^2 of the least-squares fit of z (N,) on the features F (N, p); 0 for a constant
    z (nothing left to explain), inf for a non-finite one."""
    z = np.asarray(z, dtype=np.float64)
    spread = z.std()
    if not np.isfinite(spread):
        return float("inf")
    if spread == 0:
        return 0.0
    zs = (z - z.mean()) / spread
    coef, *_ = np.linalg.lstsq(F, zs, rcond=None)
    return float(np.mean((F @ coef - zs) ** 2))


def probe_transforms(X, y, transforms=None, *, rng: np.random.Generator | None = None,
                     max_rows: int = PROBE_ROWS) -> list[ProbeResult]:
    """Rank output transforms by how additive the transformed target is in the inputs.

    X: (N, d) inputs; y: (N,) target; transforms: default `applicable_transforms(y)`.
    Each z = T(y) is fitted by least squares on `additive_features(X)`; the ranking is by
    score (floored at PROBE_FLOOR), ties to the simplest transform. A product law
    y = a * b^2 ranks log first (log y = log a + 2 log b is exactly additive).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (N, d) and y (N,), got shapes {X.shape} and {y.shape}")
    if len(y) > max_rows:
        keep = (rng or np.random.default_rng(0)).choice(len(y), max_rows, replace=False)
        X, y = X[keep], y[keep]
    transforms = applicable_transforms(y) if transforms is None else list(transforms)
    F = additive_features(X)
    results = [ProbeResult(t, additive_misfit(F, t.forward(y)))
               for t in transforms if t.applies(y)]
    return sorted(results, key=lambda r: (max(r.score, PROBE_FLOOR), PRIORITY[r.transform.name]))
