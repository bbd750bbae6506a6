"""Sub-problems from a passed separability test, and the whole formula from the parts' formulas.

Each part of a split is a slice of the oracle: g(x_A) = f(x_A, ref_B) and h(x_B) = f(ref_A, x_B)
with the other group frozen at a reference point, so the parts are plain functions to solve
with the same pipeline; `recombine` puts the constants back exactly:

    additive        f = g + h - f(ref)
    multiplicative  f = g * h / f(ref)
    offset_product  f = c + (g - c) * (h - c) / (f(ref) - c)
    pair symmetry   f(x) = F(rest, u) with u = combine(kind, x_i, x_j) substituted back
    affine          f = g + (x_j - a) * h, g and h the intercept at x_j = a and the slope
    shear           f(x) = F(x with x_j -> x_j * x_i^k), F solved on the data's own rows

    >>> f = lambda X: X[:, 0] * X[:, 1] + np.sin(X[:, 2])
    >>> res = SeparabilityResult("additive", 0.0, 1e-6, split=((0, 1), (2,)))
    >>> dec = decompose(f, res, [-1] * 3, [1] * 3, np.random.default_rng(0))
    >>> x0, x1, x2 = sympy.symbols("x0 x1 x2")
    >>> g = x0 * x1 + sympy.sin(dec.ref[2]); h = dec.ref[0] * dec.ref[1] + sympy.sin(x2)
    >>> sympy.nsimplify(recombine(dec, [g, h], [x0, x1, x2]), tolerance=1e-12)
    x0*x1 + sin(x2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy

from .separability import (AFFINE, PAIR_TESTS, SHEAR, SPLIT_TESTS, Oracle,
                           SeparabilityResult, Support, affine_lines, check_box, combine, query,
                           sample_box)

# An affine part's intercept is taken at x_j = 0 where 0 lies within this many range widths
# of x_j's range (the law's own intercept, the simpler function: 1/sqrt(1 - u^2) rather than
# (1 - a u)/sqrt(1 - u^2)); farther out the extrapolation would amplify the network's error,
# and the intercept is taken at the range's centre.
AFFINE_REACH = 2.0
# Values of x_j the affine parts' lines are fitted through, per row.
AFFINE_LINE_POINTS = 8
# Rows whose points leave their line by more than this many times the median row's are left
# out of the affine parts.
LINE_OUTLIER = 3.0

# Candidate reference points tried for a product's frozen group: dividing by f(ref) - c
# wants it far from c; the oracle is only accurate where the data are. So among the data's
# rows the candidate at this quantile of |f(ref) - c| wins: the largest sat where pi groups
# (ratios of products) leave a sparse tail, and a network fitted to 1e-6 was off by 1 %
# there (the slice n_0 -> f(n_0, ref) of n_0 * exp(-1/pi) then read as |n_0 - c|).
N_REF_CANDIDATES = 64
REF_QUANTILE = 0.9


@dataclass(frozen=True)
class PairVariable:
    """The new input of a pair symmetry: combine(kind, x_i, x_j)."""

    kind: str
    i: int
    j: int

    def name(self, names: Sequence[str]) -> str:
        """A symbol name for the new column, e.g. 'difference_x0_x1'."""
        kind = "ratio" if self.kind == "homogeneous" else self.kind
        return f"{kind}_{names[self.i]}_{names[self.j]}"

    def values(self, X: np.ndarray) -> np.ndarray:
        """(N,) values of the combination on the original rows X (N, d)."""
        return combine(self.kind, X[:, self.i], X[:, self.j])

    def expr(self, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
        """The combination in the original symbols."""
        return combine(self.kind, symbols[self.i], symbols[self.j])


@dataclass(frozen=True)
class PowerVariable:
    """A shear's new input x_j * x_i^k (x_i > 0 on the data)."""

    i: int
    j: int
    k: float

    def name(self, names: Sequence[str]) -> str:
        """A symbol name for the new column, e.g. 'x1_x0_pow_m1' for x1 / x0."""
        k = sympy.nsimplify(self.k)
        power = str(k).replace("-", "m").replace("/", "_")
        return f"{names[self.j]}_{names[self.i]}_pow_{power}"

    def values(self, X: np.ndarray) -> np.ndarray:
        """(N,) values of x_j * x_i^k on the original rows X (N, d)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return X[:, self.j] * X[:, self.i] ** self.k

    def expr(self, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
        """x_j * x_i^k in the original symbols."""
        return symbols[self.j] * symbols[self.i] ** sympy.nsimplify(self.k)


Column = int | PairVariable | PowerVariable


@dataclass(frozen=True)
class Part:
    """One sub-problem: X (n, len(columns)) -> y (n,); columns name what each X column is
    (an original column index or a PairVariable)."""

    columns: tuple[Column, ...]
    X: np.ndarray
    y: np.ndarray
    #: y holds the oracle's values (a slice at a reference point, which the data cannot
    #: give), not the data's own: it carries the oracle's error
    from_oracle: bool = True
    #: the oracle's error on y, as a multiple of its error on one value (an affine part's
    #: slope divides a difference of two values by the range's width)
    error_gain: float = 1.0

    def names(self, names: Sequence[str]) -> list[str]:
        """Variable names for solving this part, from the original variables' names."""
        return [names[c] if isinstance(c, int) else c.name(names) for c in self.columns]


@dataclass(frozen=True)
class Decomposition:
    """A passed test turned into parts; ref (d,) is the frozen point, f_ref = f(ref) and
    constant = c (offset-product) carry what `recombine` needs."""

    test: str
    parts: tuple[Part, ...]
    ref: np.ndarray | None = None
    f_ref: float = 0.0
    constant: float = 0.0
    #: a homogeneous pair's (i, j, k, sign): the part is y / |x_j|^k, the whole |x_j|^k times
    #: it, written (sign * x_j)^k where x_j keeps one sign on the data (sign 0: it does not)
    degree: tuple[int, int, float, int] | None = None
    #: an affine split's (j, a): f = g + (x_j - a) * h with parts g, h
    affine: tuple[int, float] | None = None


def _rows(X: np.ndarray | None, lo: np.ndarray, hi: np.ndarray, n: int,
          rng: np.random.Generator) -> np.ndarray:
    """The given data rows (N, d), or n fresh points in the box."""
    if X is None:
        return sample_box(lo, hi, n, rng)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(lo):
        raise ValueError(f"X must be (N, {len(lo)}), got shape {X.shape}")
    return X


def _reference(oracle: Oracle, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator,
               c: float | None, X: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The frozen point of a split. Without data rows X: the box centre (c None: any point
    does), else the candidate (centre or random point) with the largest |f(ref) - c|. With
    rows: their coordinate-wise median (c None), else the row at `REF_QUANTILE` of
    |f(ref) - c| among random rows."""
    centre = (lo + hi) / 2 if X is None else np.median(X, axis=0)
    if c is None:
        return centre, float(query(oracle, centre[None])[0])
    if X is None:
        cand = np.vstack([centre, sample_box(lo, hi, N_REF_CANDIDATES - 1, rng)])
    else:
        cand = X[rng.choice(len(X), min(N_REF_CANDIDATES, len(X)), replace=False)]
    f = query(oracle, cand)
    away = np.where(np.isfinite(f), np.abs(f - c), -1.0)
    if X is None:
        k = int(np.argmax(away))
    else:
        ok = np.flatnonzero(away > 0)
        if len(ok) == 0:
            k = 0
        else:
            target = np.quantile(away[ok], REF_QUANTILE)
            k = int(ok[np.argmin(np.abs(away[ok] - target))])
    if away[k] <= 0:
        raise ValueError("the oracle equals the product's offset everywhere tried; there is "
                         "no reference point to divide by")
    return cand[k], float(f[k])


def split_parts(oracle: Oracle, split, lo, hi, rng: np.random.Generator, *,
                test: str = "additive", constant: float | None = None, X=None,
                n: int = 1000) -> Decomposition:
    """The two slices g(x_A) = f(x_A, ref_B), h(x_B) = f(ref_A, x_B) of a split test.

    X: rows (N, d) whose A (and B) columns are used (the data's distribution); otherwise n
    fresh points in the box. The reference point: see `_reference` (from the rows where given).
    """
    if test not in SPLIT_TESTS:
        raise ValueError(f"split_parts needs one of {SPLIT_TESTS}, got {test!r}")
    lo, hi = check_box(lo, hi)
    A, B = list(split[0]), list(split[1])
    if sorted(A + B) != list(range(len(lo))):
        raise ValueError(f"split {split} must cover columns 0..{len(lo) - 1} once each")
    c = {"additive": None, "multiplicative": 0.0}.get(test, constant)
    if test == "offset_product" and c is None:
        raise ValueError("an offset-product split needs its constant (SeparabilityResult.constant)")
    rows = _rows(X, lo, hi, n, rng)
    ref, f_ref = _reference(oracle, lo, hi, rng, c, None if X is None else rows)
    parts = []
    for group in (A, B):
        Z = np.tile(ref, (len(rows), 1))
        Z[:, group] = rows[:, group]
        parts.append(Part(tuple(group), rows[:, group].copy(), query(oracle, Z)))
    return Decomposition(test, tuple(parts), ref=ref, f_ref=f_ref,
                         constant=float(c) if c is not None else 0.0)


def symmetry_part(oracle: Oracle, pair, kind: str, lo, hi, rng: np.random.Generator, *,
                  X=None, y=None, n: int = 1000, degree: float = 0.0) -> Decomposition:
    """One part with the pair (i, j) replaced by u = combine(kind, x_i, x_j) (last column):
    X_new = [other columns, u], y = f(rows). Given the data's own y at the rows X, the part
    keeps it: a symmetry needs no slice, so the part is the data, free of the oracle's
    error. A homogeneous pair of degree k divides y by x_j^k (the part is F in
    f = x_j^k F(rest, x_i / x_j))."""
    if kind not in PAIR_TESTS:
        raise ValueError(f"symmetry_part needs one of {PAIR_TESTS}, got {kind!r}")
    return _pairs_part(oracle, [PairVariable(kind, *pair)], lo, hi, rng, X=X, y=y, n=n,
                       degree=degree)


def pairs_part(oracle: Oracle, results: Sequence[SeparabilityResult], lo, hi,
               rng: np.random.Generator, *, X=None, y=None, n: int = 1000) -> Decomposition:
    """One part with several disjoint pairs each replaced by its combination (the last
    columns, in the order given). Each passed symmetry says f is constant along its pair's
    level sets (or, for a homogeneous pair, scales as x_j^k along them); pairs sharing no
    variable move independently, so f is x_j^k times a function of all the combinations at
    once: a sum of three products is then a sum in three inputs, where one pair at a time
    would need three networks, each on a smaller share of the budget. At most one pair may
    be homogeneous."""
    if not results or any(r.test not in PAIR_TESTS or r.pair is None for r in results):
        raise ValueError(f"pairs_part needs pair symmetries of kinds {PAIR_TESTS}")
    used = [v for r in results for v in r.pair]
    if len(set(used)) != len(used):
        raise ValueError(f"pairs must share no variable, got {[r.pair for r in results]}")
    scaled = [r for r in results if r.test == "homogeneous"]
    if len(scaled) > 1:
        raise ValueError("at most one homogeneous pair can be merged with others")
    # the homogeneous pair first: its degree rescales y (`_pairs_part`)
    ordered = scaled + [r for r in results if r.test != "homogeneous"]
    return _pairs_part(oracle, [PairVariable(r.test, *r.pair) for r in ordered], lo, hi, rng,
                       X=X, y=y, n=n, degree=(scaled[0].degree or 0.0) if scaled else 0.0)


def disjoint_pairs(passed: Sequence[SeparabilityResult],
                   accept: Callable[[list[SeparabilityResult], SeparabilityResult], bool]
                   | None = None) -> list[SeparabilityResult]:
    """The pair symmetries among `passed` (ranked) that merge into one part: in rank order,
    each that shares no variable with those taken (at most one of them homogeneous) and that
    `accept(taken, pair)` accepts (default: all)."""
    taken: list[SeparabilityResult] = []
    used: set[int] = set()
    for r in passed:
        if r.test not in PAIR_TESTS or r.pair is None or used & set(r.pair):
            continue
        if r.test == "homogeneous" and any(t.test == "homogeneous" for t in taken):
            continue
        if accept is None or accept(taken, r):
            taken.append(r)
            used |= set(r.pair)
    return taken


def _pairs_part(oracle: Oracle, pairs: Sequence[PairVariable], lo, hi,
                rng: np.random.Generator, *, X=None, y=None, n: int = 1000,
                degree: float = 0.0) -> Decomposition:
    """The part of `symmetry_part` / `pairs_part`; a homogeneous pair (of `degree`) comes
    first in `pairs`."""
    lo, hi = check_box(lo, hi)
    rows = _rows(X, lo, hi, n, rng)
    merged = {k for u in pairs for k in (u.i, u.j)}
    rest = [k for k in range(len(lo)) if k not in merged]
    Xn = np.column_stack([rows[:, rest]] + [u.values(rows) for u in pairs])
    homogeneous, scale = None, 1.0
    if pairs[0].kind == "homogeneous":
        i, j = pairs[0].i, pairs[0].j
        xj = rows[:, j]
        sign = 1 if np.all(xj > 0) else -1 if np.all(xj < 0) else 0
        homogeneous = (i, j, float(degree), sign)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            scale = np.abs(xj) ** degree
    columns = tuple(rest) + tuple(pairs)
    kind = "+".join(u.kind for u in pairs)
    if y is not None and X is not None:
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.shape != (len(rows),):
            raise ValueError(f"y must hold one value per row of X ({len(rows)}), got {y.shape}")
        part = Part(columns, Xn, y / scale, from_oracle=False)
    else:
        part = Part(columns, Xn, query(oracle, rows) / scale)
    return Decomposition(kind, (part,), degree=homogeneous)


def affine_parts(oracle: Oracle, j: int, lo, hi, rng: np.random.Generator, *, X=None,
                 n: int = 1000, support: Support | None = None) -> Decomposition:
    """The intercept g and slope h of f = g(x_rest) + (x_j - a) * h(x_rest), two parts in the
    other inputs: per row (of X, or n fresh points), the least-squares line through f at
    `AFFINE_LINE_POINTS` values spanning x_j's range (only those inside `support` where
    given); a = 0 where 0 is within `AFFINE_REACH` range widths, else the range's centre.
    Rows without a line (too few points inside the support, or not finite) are left out."""
    lo, hi = check_box(lo, hi)
    if not 0 <= j < len(lo) or len(lo) < 2 or hi[j] <= lo[j]:
        raise ValueError(f"an affine split needs an input that varies, of at least two; got "
                         f"column {j} of {len(lo)}")
    rows = _rows(X, lo, hi, n, rng)
    width = hi[j] - lo[j]
    near = lo[j] - AFFINE_REACH * width <= 0.0 <= hi[j] + AFFINE_REACH * width
    a = 0.0 if near else float((lo[j] + hi[j]) / 2)
    g, h, rms, span = affine_lines(oracle, rows, j, lo[j], hi[j], AFFINE_LINE_POINTS, support,
                                   at=a)
    ok = np.isfinite(g) & np.isfinite(h) & np.isfinite(rms)
    if ok.any():
        # a network's error has spikes (a spline stretch no row pinned down): the rows whose
        # points stray from their line far more than the typical row's carry them; drop those
        typical = float(np.median(rms[ok]))
        scale = float(np.max(np.abs(g[ok]))) + float(np.max(np.abs(h[ok]))) * width
        ok &= rms <= LINE_OUTLIER * typical + 1e-12 * scale
    if ok.sum() < 2:
        raise ValueError("too few rows have a line along x_j for an affine split")
    rest = tuple(k for k in range(len(lo)) if k != j)
    Xr = rows[ok][:, list(rest)]
    # the network's error is smooth along x_j, so a line's ends carry it undiminished: the
    # slope errs by about sqrt(2) errors per span of the points used, the intercept more the
    # farther a lies (RMS over the rows)
    mid, inv = (lo[j] + hi[j]) / 2, 1.0 / span[ok]
    gains = (float(np.sqrt(1 + 4 * np.mean(((mid - a) * inv) ** 2))),
             float(np.sqrt(2 * np.mean(inv ** 2))))
    parts = tuple(Part(rest, Xr.copy(), c[ok], error_gain=gain) for c, gain in zip((g, h), gains))
    return Decomposition(AFFINE, parts, affine=(j, a))


def shear_part(result: SeparabilityResult, X: np.ndarray, y: np.ndarray) -> Decomposition:
    """The one part of a passed shear test: the data's own rows X (N, d), y (N,) with x_j
    replaced by x_j * x_i^k (same column order), so no oracle error enters it."""
    if result.test != SHEAR or result.pair is None or result.degree is None:
        raise ValueError(f"shear_part needs a shear result with a pair and a power, got {result}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(f"a shear part needs the data's rows X (N, d) and y (N,), got shapes "
                         f"{X.shape} and {y.shape}")
    i, j = result.pair
    if not np.all(X[:, i] > 0):
        raise ValueError(f"a shear needs column {i} > 0 on every row")
    new = PowerVariable(i, j, float(result.degree))
    columns = tuple(new if c == j else c for c in range(X.shape[1]))
    Xn = X.copy()
    Xn[:, j] = new.values(X)
    return Decomposition(SHEAR, (Part(columns, Xn, y.copy(), from_oracle=False),))


def decompose(oracle: Oracle, result: SeparabilityResult | Sequence[SeparabilityResult], lo, hi,
              rng: np.random.Generator, *, X=None, y=None, n: int = 1000,
              support: Support | None = None) -> Decomposition:
    """The sub-problems of a (passed) test result, or of several disjoint pair results (a
    sequence): `split_parts`, `affine_parts`, `shear_part` (the data's rows X, y) or
    `pairs_part` (which keeps the data's y where given: see `symmetry_part`); `support` keeps
    the affine lines to the data's region."""
    if not isinstance(result, SeparabilityResult):
        return pairs_part(oracle, result, lo, hi, rng, X=X, y=y, n=n)
    if result.test == SHEAR:
        if X is None or y is None:
            raise ValueError("a shear part is solved on the data's rows: pass X and y")
        return shear_part(result, X, y)
    if result.test == AFFINE:
        return affine_parts(oracle, result.variable, lo, hi, rng, X=X, n=n, support=support)
    if result.split is not None:
        return split_parts(oracle, result.split, lo, hi, rng, test=result.test,
                           constant=result.constant, X=X, n=n)
    return pairs_part(oracle, [result], lo, hi, rng, X=X, y=y, n=n)


def _in_original_symbols(part: Part, expr: sympy.Expr,
                         symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """Rewrite a part's formula, written in `part.names`, in the original symbols (matched by
    name, so the part's symbols may carry other assumptions)."""
    names = [str(s) for s in symbols]
    target = {name: (symbols[c] if isinstance(c, int) else c.expr(symbols))
              for name, c in zip(part.names(names), part.columns)}
    expr = sympy.sympify(expr)
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in target)
    if unknown:
        raise ValueError(f"a part's formula uses {unknown}, not among its variables "
                         f"{sorted(target)}")
    return expr.xreplace({s: target[str(s)] for s in expr.free_symbols})


def recombine(decomposition: Decomposition, exprs: Sequence[sympy.Expr],
              symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """The whole formula in `symbols` (one per original column) from the parts' formulas,
    each written in the names `Part.names([str(s) for s in symbols])` gives."""
    dec = decomposition
    if len(exprs) != len(dec.parts):
        raise ValueError(f"{dec.test} has {len(dec.parts)} parts, got {len(exprs)} formulas")
    e = [_in_original_symbols(p, x, symbols) for p, x in zip(dec.parts, exprs)]
    if dec.affine is not None:
        j, a = dec.affine
        return e[0] + (symbols[j] - sympy.nsimplify(a)) * e[1]
    if dec.degree is not None:
        i, j, k, sign = dec.degree
        base = sign * symbols[j] if sign else sympy.Abs(symbols[j])
        return base ** sympy.nsimplify(k) * e[0]
    if dec.test == SHEAR or all(kind in PAIR_TESTS for kind in dec.test.split("+")):
        return e[0]
    f_ref, c = sympy.Float(dec.f_ref), sympy.Float(dec.constant)
    if dec.test == "additive":
        return e[0] + e[1] - f_ref
    if dec.test == "multiplicative":
        return e[0] * e[1] / f_ref
    return c + (e[0] - c) * (e[1] - c) / (f_ref - c)
