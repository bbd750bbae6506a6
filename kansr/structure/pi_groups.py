"""Buckingham-pi dimensional reduction: dimensionless groups and an output prefactor.

:func:`buckingham_pi` turns the units of n inputs and of the output into a
:class:`DimensionalReduction`: k = n - rank dimensionless groups (integer monomials of the
inputs) and a prefactor monomial carrying the output's units, so that
``y = prefactor(x) * f(pi_1, ..., pi_k)``. The exact linear algebra runs on fractions.

>>> red = buckingham_pi(["m0", "v", "c"], ["kg", "m/s", "m/s"], "kg")
>>> red.groups, red.prefactor
((v/c,), m0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import sympy as sp

from kansr.structure.units import FEYNMAN_BASES, SI_BASES, Dimension, UnitLike, as_dimension


def _solve(columns: Sequence[Sequence[Fraction]], target: Sequence[Fraction]) -> list[Fraction] | None:
    """Exact solution c of sum_j c_j columns[j] = target (columns independent), else None."""
    n_rows, n_cols = len(target), len(columns)
    rows = [[columns[j][i] for j in range(n_cols)] + [target[i]] for i in range(n_rows)]
    pivots, r = [], 0
    for c in range(n_cols):
        p = next((i for i in range(r, n_rows) if rows[i][c] != 0), None)
        if p is None:
            return None  # dependent columns
        rows[r], rows[p] = rows[p], rows[r]
        rows[r] = [v / rows[r][c] for v in rows[r]]
        for i in range(n_rows):
            if i != r and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        pivots.append(c)
        r += 1
    if any(rows[i][-1] != 0 for i in range(r, n_rows)):
        return None  # target outside the span
    return [rows[i][-1] for i in range(n_cols)]


def _integer(vector: Sequence[Fraction]) -> tuple[int, ...]:
    """The primitive integer multiple of a rational vector (same direction)."""
    lcm = math.lcm(*(v.denominator for v in vector))
    ints = [int(v * lcm) for v in vector]
    g = math.gcd(*ints) or 1
    return tuple(i // g for i in ints)


def _group_cost(vector: Sequence[int]) -> tuple[int, int, int]:
    """(variables used, largest |exponent|, sum of |exponents|): smaller is simpler."""
    used = [abs(v) for v in vector if v]
    return len(used), max(used, default=0), sum(used)


def _format_units(names: Sequence[str], units: Sequence[UnitLike], dims: Sequence[Dimension]) -> str:
    return ", ".join(f"{n} [{u if isinstance(u, str) else d}]" for n, u, d in zip(names, units, dims))


@dataclass(frozen=True)
class DimensionalReduction:
    """The result of :func:`buckingham_pi`: ``y = prefactor(x) * f(pi_1(x), ..., pi_k(x))``.

    ``group_exponents[g][i]`` is the (integer) exponent of input i in group g;
    ``prefactor_exponents[i]`` the (rational) exponent of input i in the prefactor. A group
    that is a single dimensionless input keeps that input's symbol; others are ``pi1, pi2, ...``.
    """

    names: tuple[str, ...]
    symbols: tuple[sp.Symbol, ...]
    group_exponents: tuple[tuple[int, ...], ...]
    prefactor_exponents: tuple[Fraction, ...]
    group_symbols: tuple[sp.Symbol, ...]
    references: tuple[str, ...] = ()

    @property
    def n_groups(self) -> int:
        """Number of dimensionless groups k."""
        return len(self.group_exponents)

    @property
    def group_names(self) -> tuple[str, ...]:
        """Names of the group symbols (the reduced problem's variable names)."""
        return tuple(s.name for s in self.group_symbols)

    def _monomial(self, exponents: Sequence[Fraction | int]) -> sp.Expr:
        return sp.Mul(*(s ** sp.Rational(e.numerator, e.denominator) if isinstance(e, Fraction)
                        else s ** e for s, e in zip(self.symbols, exponents) if e))

    @property
    def groups(self) -> tuple[sp.Expr, ...]:
        """The groups as sympy monomials of the original symbols, e.g. ``(v/c,)``."""
        return tuple(self._monomial(g) for g in self.group_exponents)

    @property
    def prefactor(self) -> sp.Expr:
        """The monomial carrying the output's units (``1`` for a dimensionless output)."""
        return self._monomial(self.prefactor_exponents)

    def _values(self, X: np.ndarray, exponents: Sequence[Fraction | int]) -> np.ndarray:
        out = np.ones(X.shape[0])
        for i, e in enumerate(exponents):
            if not e:
                continue
            col = X[:, i]
            if Fraction(e).denominator == 1:
                out = out * col ** float(e)
            elif np.any(col <= 0):
                raise ValueError(f"input {self.names[i]!r} has exponent {e} in the dimensional "
                                 "reduction but takes values <= 0; it must be positive")
            else:
                out = out * col ** float(e)
        return out

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.names):
            raise ValueError(f"X must have shape (n_samples, {len(self.names)}) for inputs "
                             f"{self.names}; got {X.shape}")
        return X

    def transform_inputs(self, X: np.ndarray) -> np.ndarray:
        """Group values, shape (n_samples, n_groups), from inputs of shape (n_samples, n_inputs)."""
        X = self._check(X)
        return np.column_stack([self._values(X, g) for g in self.group_exponents]) \
            if self.group_exponents else np.empty((X.shape[0], 0))

    def prefactor_values(self, X: np.ndarray) -> np.ndarray:
        """Prefactor values, shape (n_samples,)."""
        return self._values(self._check(X), self.prefactor_exponents)

    def transform(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X_pi, y_pi)`` with ``y_pi = y / prefactor(X)``."""
        return self.transform_inputs(X), np.asarray(y, dtype=float) / self.prefactor_values(X)

    def inverse_target(self, X: np.ndarray, y_pi: np.ndarray) -> np.ndarray:
        """Back to the original target: ``y = y_pi * prefactor(X)``."""
        return np.asarray(y_pi, dtype=float) * self.prefactor_values(X)

    def to_original(self, expr: sp.Expr) -> sp.Expr:
        """Map a formula in the group symbols back exactly: ``prefactor * expr(pi -> groups)``."""
        expr = sp.sympify(expr)
        mapping = {s: g for s, g in zip(self.group_symbols, self.groups)}
        by_name = {s.name: s for s in self.group_symbols}
        # accept look-alike symbols (same name, other assumptions) from other stages
        extra = {s: by_name[s.name] for s in expr.free_symbols
                 if isinstance(s, sp.Symbol) and s.name in by_name and s not in mapping}
        return self.prefactor * expr.xreplace(extra).xreplace(mapping)


def _preference(names: Sequence[str], scales: Sequence[float] | None) -> list[tuple[float, int]]:
    """Reference preference of each input: larger typical scale, then later position, wins."""
    if scales is None:
        return [(0.0, i) for i in range(len(names))]
    if len(scales) != len(names):
        raise ValueError(f"scales has {len(scales)} entries for {len(names)} inputs")
    return [(math.log(abs(float(s))) if s else -math.inf, i) for i, s in enumerate(scales)]


def buckingham_pi(
    names: Sequence[str],
    input_units: Sequence[UnitLike],
    output_unit: UnitLike,
    *,
    scales: Sequence[float] | None = None,
    bases: Sequence[str] = FEYNMAN_BASES,
    positive: bool = True,
) -> DimensionalReduction:
    """Dimensionless groups and an output prefactor for inputs ``names`` with ``input_units``.

    How the basis is chosen (deterministic):

    1. Every dimensionless input is its own group.
    2. The other inputs are split into r = rank *reference* inputs (a basis of the dimension
       matrix's column space) and the rest; each remaining input x_j gives one group
       ``x_j^q / (monomial of references)``, with the exponents made integer and coprime and
       x_j's exponent q > 0 (so x_j is the numerator, as v in v/c).
    3. Among all reference sets, the one whose groups are simplest wins: fewest variables in
       total, then smallest largest exponent, then smallest sum of |exponents|; a tie goes to
       the set whose references have the largest typical ``scales`` (so a ratio of
       like-dimensioned inputs is below 1: v/c for v < c); without scales, or on equal scales,
       to the inputs listed later.
    4. The prefactor is the monomial with the output's units over the fewest inputs, then
       integer exponents, smallest exponents, fewest inputs that appear in a group (inputs no
       group needs, such as m0 in m0/sqrt(1 - v^2/c^2), come first), references first.

    ``scales``: typical magnitudes of the inputs (e.g. ``np.median(np.abs(X), axis=0)``).
    ``bases``: base units of exponent vectors given as plain sequences.
    Raises ValueError, naming the units, when the output's units cannot be formed from the
    inputs' units.
    """
    names = tuple(names)
    if len(input_units) != len(names):
        raise ValueError(f"{len(input_units)} input units for {len(names)} inputs {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"input names must be distinct: {names}")
    dims = [as_dimension(u, bases) for u in input_units]
    out = as_dimension(output_unit, bases)
    n = len(names)
    cols = [d.exponents for d in dims]
    matrix = sp.Matrix(len(SI_BASES), n, lambda i, j: sp.Rational(cols[j][i].numerator,
                                                                  cols[j][i].denominator))
    rank = matrix.rank() if n else 0
    if _solve_any(cols, out.exponents) is None:
        carried = {b for d in dims for b, e in zip(SI_BASES, d.exponents) if e}
        lonely = [b for b, e in zip(SI_BASES, out.exponents) if e and b not in carried]
        hint = f"; no input carries {', '.join(lonely)}" if lonely else ""
        raise ValueError(f"inconsistent units: the output unit {output_unit!r} [{out}] cannot be "
                         f"formed from the input units {_format_units(names, input_units, dims)}"
                         f"{hint}")
    pref = _preference(names, scales)
    free = [j for j in range(n) if not dims[j].dimensionless]
    best: tuple | None = None
    for refs in itertools.combinations(free, rank):
        ref_cols = [cols[j] for j in refs]
        groups, ok = [], True
        for j in free:
            if j in refs:
                continue
            coef = _solve(ref_cols, cols[j])
            if coef is None:
                ok = False
                break
            vec = [Fraction(0)] * n
            vec[j] = Fraction(1)
            for r, c in zip(refs, coef):
                vec[r] -= c
            groups.append((j, _integer(vec)))
        if not ok or (rank and _solve(ref_cols, [Fraction(0)] * len(SI_BASES)) is None):
            continue
        costs = [_group_cost(g) for _, g in groups]
        key = (sum(c[0] for c in costs), sum(c[1] for c in costs), sum(c[2] for c in costs),
               [tuple(-v for v in p) for p in sorted((pref[j] for j in refs), reverse=True)])
        if best is None or key < best[0]:
            best = (key, refs, groups)
    assert best is not None, "a column basis always exists"
    _, refs, groups = best
    single = [(j, tuple(int(i == j) for i in range(n))) for j in range(n) if dims[j].dimensionless]
    all_groups = [g for _, g in sorted(single + groups)]  # in the order of each group's own input
    null_dim = len(matrix.nullspace()) if n else 0
    assert len(all_groups) == null_dim, "groups must span the null space"
    prefactor = _prefactor(cols, out, free, refs, all_groups, pref)
    return _build(names, all_groups, prefactor, refs, positive)


def _solve_any(cols: Sequence[Sequence[Fraction]], target: Sequence[Fraction]) -> list[Fraction] | None:
    """Some solution of sum_j c_j cols[j] = target (cols may be dependent), else None."""
    basis: list[int] = []
    for j in range(len(cols)):
        if _solve([cols[i] for i in basis + [j]], [Fraction(0)] * len(target)) is not None:
            basis.append(j)
    return _solve([cols[i] for i in basis], target) if basis else (
        [] if not any(target) else None)


def _prefactor(cols, out: Dimension, free: list[int], refs: Sequence[int],
               groups: Sequence[Sequence[int]], pref: Sequence[tuple[float, int]]) -> list[Fraction]:
    """Simplest rational exponent vector with the output's dimension (see buckingham_pi)."""
    n = len(cols)
    if out.dimensionless:
        return [Fraction(0)] * n
    in_groups = [any(g[i] for g in groups) for i in range(n)]
    for size in range(1, len(free) + 1):
        found = []
        for subset in itertools.combinations(free, size):
            coef = _solve([cols[j] for j in subset], out.exponents)
            if coef is None or any(c == 0 for c in coef):
                continue
            key = (sum(c.denominator > 1 for c in coef), max(abs(c) for c in coef),
                   sum(abs(c) for c in coef), sum(in_groups[j] for j in subset),
                   sum(j not in refs for j in subset),
                   sorted((tuple(-v for v in pref[j]) for j in subset)))
            found.append((key, subset, coef))
        if found:
            _, subset, coef = min(found, key=lambda t: t[0])
            vec = [Fraction(0)] * n
            for j, c in zip(subset, coef):
                vec[j] = c
            return vec
    raise AssertionError("consistency was checked before")


def _build(names: tuple[str, ...], groups: Sequence[tuple[int, ...]], prefactor: Sequence[Fraction],
           refs: Sequence[int], positive: bool) -> DimensionalReduction:
    assumptions = {"positive": True} if positive else {}
    symbols = tuple(sp.Symbol(name, **assumptions) for name in names)
    taken = set(names)
    group_symbols, k = [], 0
    for g in groups:
        used = [i for i, v in enumerate(g) if v]
        if len(used) == 1 and g[used[0]] == 1:
            group_symbols.append(symbols[used[0]])
            continue
        k += 1
        name = f"pi{k}"
        while name in taken:
            name = "_" + name
        taken.add(name)
        group_symbols.append(sp.Symbol(name, **assumptions))
    return DimensionalReduction(names, symbols, tuple(tuple(g) for g in groups),
                                tuple(prefactor), tuple(group_symbols), tuple(names[j] for j in refs))
