"""Separability and symmetry tests on an oracle (a trained network or a formula).

An oracle is any callable ``f(X) -> y`` taking (N, d) float arrays in the user's units and
returning (N,) values. The tests query it on fresh points inside the data's bounding box
``lo, hi`` (each (d,)) and measure how far f is from a structure (the affine tests, given
the data's rows and `Support`, start from rows and keep to where the data are):

- ``additive``:        f(x_A, x_B) = g(x_A) + h(x_B)        (mixed difference)
- ``multiplicative``:  f(x_A, x_B) = g(x_A) * h(x_B)        (ratio test, no division)
- ``offset_product``:  f(x_A, x_B) = c + g(x_A) * h(x_B)    (rank one after removing c)
- pair symmetries:     f depends on x_i, x_j only through x_i - x_j (``difference``),
                       x_i + x_j (``sum``), x_i * x_j (``product``) or x_i / x_j (``ratio``);
                       ``homogeneous``: f = x_j^k F(x_i / x_j) for a small rational k != 0.
- ``affine``:          f(x) = g(x_rest) + x_j * h(x_rest)     (f is a line in one input)
- ``shear``:           f separates (additively or multiplicatively) between x_i and
                       x_j * x_i^k for a small rational k != 0, where x_i and x_j
                       themselves do not: (1 - a b)/sqrt(1 - a^2) is g(a) h(a b)

Every violation is expressed in units of f's spread (its standard deviation on the box), so it
is comparable with the oracle's own error ``tol`` (validation RMSE / std(y)): a test passes
when its violation is within what that error alone could produce (see the constants below).

    >>> rng = np.random.default_rng(0)
    >>> f = lambda X: X[:, 0] * X[:, 1] + np.sin(X[:, 2])
    >>> best = separability_tests(f, [-1] * 3, [1] * 3, tol=0.0, rng=rng)[0]
    >>> best.test, best.split, best.passed
    ('additive', ((0, 1), (2,)), True)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Oracle = Callable[[np.ndarray], np.ndarray]
Split = tuple[tuple[int, ...], tuple[int, ...]]

SPLIT_TESTS = ("additive", "multiplicative", "offset_product")
PAIR_TESTS = ("difference", "sum", "product", "ratio", "homogeneous")
#: f does not depend on one input at all (the data carry a column the law ignores).
IRRELEVANT = "irrelevant"
#: f is affine in one input, with intercept and slope functions of the others.
AFFINE = "affine"
#: f separates between x_i and x_j * x_i^k (k != 0), not between x_i and x_j.
SHEAR = "shear"
#: The powers k a shear test tries (dimensionless groups differ by such powers of each other:
#: u t/x = (u/c) (c t/x)).
SHEAR_POWERS = (1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
#: A shear test's steps, as shares of each input's log-range: small enough that the four
#: points around a data row stay where the data are.
SHEAR_STEP = 0.05
#: Values of the input an affine test places along its range per sample point.
AFFINE_POINTS = 5
#: Kinds with their own moves; "homogeneous" reuses the ratio's (see `symmetry_tests`).
MOVE_KINDS = ("difference", "sum", "product", "ratio")

# Tolerance floor: an exact formula oracle has tol = 0, but float64 round-off in f (relative
# 1e-16, amplified by cancellation in the differences) must still pass. 1e-6 sits far above
# round-off and far below any real violation a test is meant to catch.
TOL_FLOOR = 1e-6
# Each test combines several oracle values; with independent errors of RMS tol (in units of
# f's spread) its violation has RMS tol times this gain: the mixed difference adds four values
# (sqrt(4) = 2), a symmetry move compares two (sqrt(2)), and the ratio and rank-one residuals
# are normalised so that one value's error counts once (1).
NOISE_GAIN = {"additive": 2.0, "multiplicative": 1.0, "offset_product": 1.0,
              "difference": np.sqrt(2.0), "sum": np.sqrt(2.0), "product": np.sqrt(2.0),
              "ratio": np.sqrt(2.0), "homogeneous": np.sqrt(2.0), IRRELEVANT: np.sqrt(2.0),
              AFFINE: 1.0, SHEAR: 1.0}
# A network's error is not independent noise: it is larger near the box's corners (where the
# mixed points of a test often land) and heavier tailed than Gaussian, hence a safety factor.
# Measured on the tests' networks (relative RMSE 7e-4 to 7e-3): true structures score at most
# 0.31 of the threshold this gives, false ones at least 17 times it.
SAFETY = 4.0
# Order among passed tests. Pair symmetries first: their part is the data itself with one
# variable fewer (no slice of the oracle, so none of its error), where a split's parts are
# the network's values at a frozen reference point. Then the splits, simplest first; the
# offset-product last: its fitted constant c lets a rank-one surface pass where the law is a
# function of one combination (1/sqrt(1 - (v/c)^2) leaves 0.006 of its spread, within the
# threshold of a network fitted to 5e-3). Then a shear (its part is the whole problem again,
# in other coordinates, solved from the data's rows). Affine last: its two parts keep all the
# other inputs each, and on a narrow range many smooth functions are nearly lines.
PRIORITY = {"difference": 0, "sum": 0, "product": 0, "ratio": 0, "homogeneous": 1,
            "additive": 1, "multiplicative": 2, "offset_product": 3, SHEAR: 4, AFFINE: 5}
# Homogeneous pairs, f(x_i e^s, x_j e^s) = e^(k s) f(x), so f = x_j^k F(x_i / x_j): the degree
# k is fitted, then snapped to a multiple of this step (laws have small rational degrees),
# within this bound; k = 0 is the plain ratio symmetry.
DEGREE_STEP, MAX_DEGREE = 0.5, 4.0
# Exhaustive split search up to this many variables (2^(d-1) - 1 splits, 127 at d = 8);
# beyond it candidate splits come from the pairwise interaction graph.
MAX_EXHAUSTIVE_D = 8
# Offset-product: an additive f = g + h is the limit of offset-products as |c| grows
# (g + h = -c + (c + g)(c + h)/c - g h/c: the rank-one residual falls like 1/c), so a free c
# would pass every additive split. c is kept within this many standard deviations of f's mean
# on the grid (or is 0, a plain product). An additive f then leaves a residual of 0.08 of its
# spread when its two parts vary alike, 0.035 when one dominates (measured): above the offset
# threshold for networks fitted to better than about 5e-3 (SAFETY * tol). Where an additive
# split also passes, it ranks first anyway (PRIORITY).
MAX_OFFSET = 5.0
# Product and ratio moves on a column whose box spans 0 keep |x| above this share of the box's
# reach on x's side: scalings toward 0 are unbounded in log space (and f is often singular there).
MIN_MAGNITUDE = 1e-2
# A test whose oracle values are non-finite on more than this share of its samples fails.
MAX_NONFINITE = 0.1
# A pair symmetry's score leaves out this share of its largest violations: a network's error
# is heavy tailed where its rows thin out (moves along a level set reach the thin ends of a
# difference's or a ratio's range), and one such stretch decided the RMS (a true homogeneous
# pair scored 0.2 to 1.7 of its threshold over eight draws); a false symmetry moves f nearly
# everywhere.
SYMMETRY_TRIM = 0.1
# Given the data's support, a test needs all its points inside it on at least this share of
# its samples (else it fails: the network cannot tell there).
MIN_COVERED_ROWS = 0.25


@dataclass(frozen=True)
class SeparabilityResult:
    """Outcome of one test.

    test: one of SPLIT_TESTS or PAIR_TESTS; split: (A, B) column groups for a split test;
    pair: (i, j) for a symmetry; score: RMS violation in units of f's spread; threshold: the
    score a pass allows; constant: the estimated c of an offset-product (else None).
    """

    test: str
    score: float
    threshold: float
    split: Split | None = None
    pair: tuple[int, int] | None = None
    constant: float | None = None
    #: the snapped degree k of a homogeneous pair (f = x_j^k F(x_i / x_j)), or a shear's
    #: power k (x_j becomes x_j * x_i^k), else None
    degree: float | None = None
    #: the input an "irrelevant" or "affine" result is about, else None
    variable: int | None = None

    @property
    def passed(self) -> bool:
        """True when the violation is within the oracle's own error."""
        return bool(self.score <= self.threshold)

    @property
    def margin(self) -> float:
        """score / threshold: below 1 passes; lower is more convincing."""
        return float(self.score / self.threshold)


# ----------------------------------------------------------------------------- helpers
def check_box(lo: Sequence[float], hi: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Validate a bounding box: two (d,) float arrays with lo <= hi, both finite."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if lo.ndim != 1 or lo.shape != hi.shape or not (np.all(np.isfinite(lo))
                                                    and np.all(np.isfinite(hi))):
        raise ValueError(f"lo and hi must be finite (d,) arrays of one length, got shapes "
                         f"{lo.shape} and {hi.shape}")
    if np.any(lo > hi):
        raise ValueError("the box needs lo <= hi in every column; pass X.min(0), X.max(0)")
    return lo, hi


def sample_box(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) points uniform in the box."""
    return lo + (hi - lo) * rng.random((n, len(lo)))


def query(oracle: Oracle, X: np.ndarray) -> np.ndarray:
    """The oracle's (N,) values on X (N, d) as float64; a shape mismatch is an error."""
    y = np.asarray(oracle(X), dtype=np.float64).reshape(-1)
    if y.shape != (len(X),):
        raise ValueError(f"the oracle returned {y.size} values for {len(X)} rows; it must map "
                         "(N, d) inputs to (N,) outputs")
    return y


def _spread(values: np.ndarray) -> float:
    """Standard deviation of the finite values, never 0 (a constant f has nothing to split)."""
    finite = values[np.isfinite(values)]
    spread = float(np.std(finite)) if finite.size else 0.0
    return spread if spread > 0 else 1.0


def _test_points(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator,
                 X: np.ndarray | None) -> np.ndarray:
    """n points to test at: rows of the data X where given (where the network was fitted:
    dimensionless groups fill their box unevenly, and a network fitted to 1e-2 on the data
    was off by 0.2 of the spread on the box), else uniform in the box."""
    if X is None:
        return sample_box(lo, hi, n, rng)
    return np.asarray(X, dtype=np.float64)[rng.integers(len(X), size=n)]


def _rms(violation: np.ndarray, trim: float = 0.0) -> float:
    """RMS of the finite entries, the largest `trim` share of them left out; inf when too
    many are non-finite."""
    ok = np.isfinite(violation)
    if violation.size == 0 or 1 - ok.mean() > MAX_NONFINITE:
        return float("inf")
    v = np.sort(np.abs(violation[ok]))
    return float(np.sqrt(np.mean(v[: max(int(round((1.0 - trim) * len(v))), 1)] ** 2)))


def _threshold(test: str, tol: float) -> float:
    return SAFETY * NOISE_GAIN[test] * max(float(tol), TOL_FLOOR)


def all_splits(d: int) -> list[Split]:
    """Every split of range(d) into two non-empty groups, each once (A holds column 0)."""
    splits = []
    for size in range(1, d):
        for rest in itertools.combinations(range(1, d), size - 1):
            A = (0,) + rest
            splits.append((A, tuple(k for k in range(d) if k not in A)))
    return splits


def _mixed_points(P: np.ndarray, Q: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The points (a, b') and (a', b) for points P = (a, b), Q = (a', b')."""
    A = list(split[0])
    PQ, QP = Q.copy(), P.copy()
    PQ[:, A] = P[:, A]  # (a, b')
    QP[:, A] = Q[:, A]  # (a', b)
    return PQ, QP


def _mixed_values(oracle: Oracle, P: np.ndarray, Q: np.ndarray, split: Split) -> np.ndarray:
    """(4, n) values f(a,b), f(a,b'), f(a',b), f(a',b') for points P = (a,b), Q = (a',b')."""
    PQ, QP = _mixed_points(P, Q, split)
    f = query(oracle, np.concatenate([P, PQ, QP, Q]))
    return f.reshape(4, len(P))


def _covered_share(keep: np.ndarray) -> bool:
    """Enough of a test's points lie in the data's support for its score to count."""
    return bool(keep.mean() >= MIN_COVERED_ROWS)


def _additive_score(f4: np.ndarray, spread: float) -> float:
    """RMS of the mixed difference f(a,b) - f(a,b') - f(a',b) + f(a',b'), per spread."""
    return _rms((f4[0] - f4[1] - f4[2] + f4[3]) / spread)


def _multiplicative_score(f4: np.ndarray, spread: float) -> float:
    """RMS of f(a,b) f(a',b') - f(a,b') f(a',b), each divided by its sensitivity to an error
    of one spread in any one value (spread * |f4|), so a pass means "within tol" wherever f is."""
    residual = f4[0] * f4[3] - f4[1] * f4[2]
    scale = spread * np.sqrt(np.sum(f4 ** 2, axis=0)) + np.finfo(float).tiny
    return _rms(residual / scale)


def _rank_one_residual(F: np.ndarray, c: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Best rank-one fit u v^T of F - c: (sum of the squared residual, u, v)."""
    U, S, Vt = np.linalg.svd(F - c, full_matrices=False)
    return float(np.sum(S[1:] ** 2)), U[:, 0] * S[0], Vt[0]


def offset_constant(F: np.ndarray, iterations: int = 60) -> tuple[float, float]:
    """Fit F (n_a, n_b) ~ c + u v^T; return (c, RMS residual).

    Start from the closed form (F of rank two, c the value making F - c*1*1^T singular within
    the top two singular directions: c = 1 / (beta^T S^-1 alpha) with alpha, beta the ones
    vectors projected on them), then alternate: u v^T = top SVD of F - c, c = mean(F - u v^T)
    (each step lowers the residual), with c kept within MAX_OFFSET spreads of F's mean; c = 0
    (a plain product) is always a candidate too.
    """
    U, S, Vt = np.linalg.svd(F, full_matrices=False)
    alpha, beta = U[:, :2].T @ np.ones(F.shape[0]), Vt[:2] @ np.ones(F.shape[1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        denom = float(beta @ (alpha / S[:2])) if S[1] > 0 else np.inf
        c = 1.0 / denom if np.isfinite(denom) and denom != 0 else 0.0
    reach = MAX_OFFSET * max(float(F.std()), np.finfo(float).tiny)
    c_lo, c_hi = float(F.mean()) - reach, float(F.mean()) + reach
    c = float(np.clip(c, c_lo, c_hi))
    for _ in range(iterations):
        _, u, v = _rank_one_residual(F, c)
        c_new = float(np.clip(np.mean(F - np.outer(u, v)), c_lo, c_hi))
        if abs(c_new - c) <= 1e-13 * (abs(c) + np.abs(F).max()):
            break
        c = c_new
    r, r0 = _rank_one_residual(F, c)[0], _rank_one_residual(F, 0.0)[0]
    if r0 <= r:
        c, r = 0.0, r0
    return c, float(np.sqrt(r / F.size))


# ----------------------------------------------------------------------------- split tests
def split_tests(oracle: Oracle, lo, hi, tol: float, rng: np.random.Generator, *,
                splits: Sequence[Split] | None = None, n_pairs: int = 256,
                grid: int = 20, support: Support | None = None,
                X: np.ndarray | None = None) -> list[SeparabilityResult]:
    """Additive, multiplicative and offset-product tests for each split (A, B).

    splits: default all splits (d <= MAX_EXHAUSTIVE_D) or `candidate_splits` beyond.
    n_pairs random pairs of points feed the mixed-difference and ratio tests; a grid x grid
    matrix F_ij = f(a_i, b_j) the offset-product test. With a `support`, the additive and
    multiplicative tests count only the pairs whose four points all lie inside it (the
    network is wild off the data: groups such as z2/z1 and (x1 - x2)/z1 fill a thin part of
    their box), and fail with fewer than `MIN_COVERED_ROWS` of them. X: the data's rows, drawn
    as the test points (`_test_points`; else uniform in the box).
    """
    lo, hi = check_box(lo, hi)
    d = len(lo)
    if d < 2:
        return []
    if splits is None:
        splits = all_splits(d) if d <= MAX_EXHAUSTIVE_D else candidate_splits(
            oracle, lo, hi, tol, rng, n_pairs=n_pairs)
    P, Q = _test_points(lo, hi, n_pairs, rng, X), _test_points(lo, hi, n_pairs, rng, X)
    spread = _spread(query(oracle, np.concatenate([P, Q])))
    Ga, Gb = sample_box(lo, hi, grid, rng), sample_box(lo, hi, grid, rng)
    inside = (support.covered(P) & support.covered(Q)) if support is not None else None
    results = []
    for split in splits:
        split = (tuple(sorted(split[0])), tuple(sorted(split[1])))
        f4 = _mixed_values(oracle, P, Q, split)
        scores = (_additive_score(f4, spread), _multiplicative_score(f4, spread))
        if inside is not None:
            keep = inside & np.all([support.covered(Z) for Z in _mixed_points(P, Q, split)],
                                   axis=0)
            scores = ((_additive_score(f4[:, keep], spread),
                       _multiplicative_score(f4[:, keep], spread))
                      if _covered_share(keep) else (np.inf, np.inf))
        results.append(SeparabilityResult("additive", scores[0],
                                  _threshold("additive", tol), split=split))
        results.append(SeparabilityResult("multiplicative", scores[1],
                                  _threshold("multiplicative", tol), split=split))
        results.append(_offset_product(oracle, Ga, Gb, split, spread, tol))
    return results


def _offset_product(oracle: Oracle, Ga: np.ndarray, Gb: np.ndarray, split: Split,
                    spread: float, tol: float) -> SeparabilityResult:
    """Offset-product test on the grid F_ij = f(a_i, b_j) built from Ga's A and Gb's B."""
    A = list(split[0])
    n_a, n_b = len(Ga), len(Gb)
    X = np.tile(Gb, (n_a, 1))  # row i * n_b + j: b_j, then a_i written into A's columns
    X[:, A] = np.repeat(Ga[:, A], n_b, axis=0)
    F = query(oracle, X).reshape(n_a, n_b)
    threshold = _threshold("offset_product", tol)
    if np.mean(~np.isfinite(F)) > MAX_NONFINITE:
        return SeparabilityResult("offset_product", float("inf"), threshold, split=split)
    F = np.where(np.isfinite(F), F, np.nanmean(np.where(np.isfinite(F), F, np.nan)))
    c, residual = offset_constant(F)
    return SeparabilityResult("offset_product", residual / spread, threshold, split=split,
                              constant=c)


def interaction_matrix(oracle: Oracle, lo, hi, rng: np.random.Generator, *,
                       n_pairs: int = 128, test: str = "additive") -> np.ndarray:
    """(d, d) pairwise violations: the `test` ("additive" or "multiplicative") for moving
    only x_i and x_j (others fixed per sample), in units of f's spread; diagonal 0."""
    lo, hi = check_box(lo, hi)
    d = len(lo)
    P, Q = sample_box(lo, hi, n_pairs, rng), sample_box(lo, hi, n_pairs, rng)
    spread = _spread(query(oracle, P))
    score = _additive_score if test == "additive" else _multiplicative_score
    M = np.zeros((d, d))
    for i, j in itertools.combinations(range(d), 2):
        Qij = P.copy()
        Qij[:, [i, j]] = Q[:, [i, j]]  # a' = x_i', b' = x_j', the rest shared with P
        M[i, j] = M[j, i] = score(_mixed_values(oracle, P, Qij, ((i,), (j,))), spread)
    return M


def candidate_splits(oracle: Oracle, lo, hi, tol: float, rng: np.random.Generator, *,
                     n_pairs: int = 128) -> list[Split]:
    """Splits worth a full test when d is too large for all of them.

    Variables i, j interact when their pairwise violation fails the test; the connected
    components of that graph (for the additive and the multiplicative test) give the splits
    "one component against the rest", plus every single variable against the rest.
    """
    lo, hi = check_box(lo, hi)
    d = len(lo)
    found = {((k,), tuple(m for m in range(d) if m != k)) for k in range(d)}
    for test in ("additive", "multiplicative"):
        linked = interaction_matrix(oracle, lo, hi, rng, n_pairs=n_pairs, test=test) \
            > _threshold(test, tol)
        for comp in _components(linked):
            if 0 < len(comp) < d:
                rest = tuple(m for m in range(d) if m not in comp)
                found.add((comp, rest) if 0 in comp else (rest, comp))
    return sorted(found, key=lambda s: (len(s[0]), s))


def _components(linked: np.ndarray) -> list[tuple[int, ...]]:
    """Connected components of a boolean adjacency matrix, each sorted."""
    d, seen, comps = len(linked), set(), []
    for start in range(d):
        if start in seen:
            continue
        stack, comp = [start], []
        seen.add(start)
        while stack:
            k = stack.pop()
            comp.append(k)
            for m in np.flatnonzero(linked[k]):
                if int(m) not in seen:
                    seen.add(int(m))
                    stack.append(int(m))
        comps.append(tuple(sorted(comp)))
    return comps


# ----------------------------------------------------------------------------- symmetries
def combine(kind: str, xi, xj):
    """The combination a pair symmetry keeps: xi - xj, xi + xj, xi * xj or xi / xj
    (numpy arrays or sympy expressions alike)."""
    if kind == "difference":
        return xi - xj
    if kind == "sum":
        return xi + xj
    if kind == "product":
        return xi * xj
    if kind in ("ratio", "homogeneous"):
        return xi / xj
    raise ValueError(f"unknown pair symmetry {kind!r}; use one of {PAIR_TESTS}")


def pair_moves(kind: str, X: np.ndarray, i: int, j: int, lo: np.ndarray, hi: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """Move each row of X (N, d) along the level set of combine(kind, x_i, x_j), staying in
    the box, by a random step uniform over the feasible range (for product and ratio: a
    scaling x_i * e^s, x_j * e^-+s that keeps both signs)."""
    Y = X.copy()
    xi, xj = X[:, i], X[:, j]
    if kind in ("difference", "sum"):
        sj = 1.0 if kind == "difference" else -1.0  # x_j moves by sj * t
        t_lo = np.maximum(lo[i] - xi, np.where(sj > 0, lo[j] - xj, xj - hi[j]))
        t_hi = np.minimum(hi[i] - xi, np.where(sj > 0, hi[j] - xj, xj - lo[j]))
        t = t_lo + (t_hi - t_lo) * rng.random(len(X))
        Y[:, i], Y[:, j] = xi + t, xj + sj * t
        return Y
    # in logs: log|x_i| + s and log|x_j| -/+ s stay within each sign's part of the box
    bi, bj = _log_magnitude_bounds(xi, lo[i], hi[i]), _log_magnitude_bounds(xj, lo[j], hi[j])
    li, lj = np.log(np.abs(xi)), np.log(np.abs(xj))
    sj = -1.0 if kind == "product" else 1.0
    s_lo = np.maximum(bi[0] - li, np.where(sj > 0, bj[0] - lj, lj - bj[1]))
    s_hi = np.minimum(bi[1] - li, np.where(sj > 0, bj[1] - lj, lj - bj[0]))
    s = s_lo + (s_hi - s_lo) * rng.random(len(X))
    s = np.where(np.isfinite(s), s, 0.0)  # a coordinate at exactly 0 cannot move
    Y[:, i], Y[:, j] = xi * np.exp(s), xj * np.exp(sj * s)
    return np.clip(Y, lo, hi)  # exp/log round-off may step a hair outside


def _log_magnitude_bounds(x: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the range of log|x'| for x' of x's sign inside [lo, hi]. A box spanning 0
    is cut at MIN_MAGNITUDE of its reach so that moves toward 0 stay finite."""
    reach = np.where(x > 0, hi, -lo)
    near = np.where(x > 0, max(lo, 0.0), max(-hi, 0.0))
    near = np.maximum(near, MIN_MAGNITUDE * reach)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.minimum(near, np.abs(x))), np.log(np.maximum(reach, np.abs(x)))


def _homogeneous(f0: np.ndarray, fY: np.ndarray, s: np.ndarray, spread: float
                 ) -> tuple[float, float]:
    """(snapped degree k, score) of f(moved) = e^(k s) f(x) on ratio moves by s; each residual
    is divided by its sensitivity to the oracle's error in the two values it combines."""
    ok = np.isfinite(f0) & np.isfinite(fY) & (f0 * fY > 0) & (np.abs(s) > 1e-3)
    if ok.sum() < 8:
        return 0.0, float("inf")
    L = np.log(fY[ok] / f0[ok])
    k = float(np.sum(s[ok] * L) / np.sum(s[ok] ** 2))
    k = float(np.clip(np.round(k / DEGREE_STEP) * DEGREE_STEP, -MAX_DEGREE, MAX_DEGREE))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.exp(k * s)
        resid = (fY - scale * f0) / (spread * np.sqrt((1.0 + scale ** 2) / 2.0))
    return k, _rms(resid, SYMMETRY_TRIM)


#: Two inputs whose typical magnitudes are within this factor give both orientations of a
#: ratio (the recursion tries them in turn); otherwise only the smaller over the larger.
ORIENTATION_TIE = 1.5


def _orientations(i: int, j: int, X: np.ndarray) -> list[tuple[int, int]]:
    """(i, j) ordered so that x_i / x_j is mostly at most 1 in magnitude (v/c rather than
    c/v: the laws' one-variable pieces, 1/sqrt(1 - u^2), are written in such ratios); both
    orders, that one first, where the two magnitudes are alike (theta/sigma or sigma/theta)."""
    mi, mj = np.median(np.abs(X[:, i])), np.median(np.abs(X[:, j]))
    first = (j, i) if mi > mj else (i, j)
    tie = min(mi, mj) > 0 and max(mi, mj) <= ORIENTATION_TIE * min(mi, mj)
    return [first, first[::-1]] if tie else [first]


def symmetry_tests(oracle: Oracle, lo, hi, tol: float, rng: np.random.Generator, *,
                   pairs: Sequence[tuple[int, int]] | None = None,
                   kinds: Sequence[str] = PAIR_TESTS,
                   n_points: int = 256, support: Support | None = None,
                   X: np.ndarray | None = None) -> list[SeparabilityResult]:
    """Pair-symmetry tests: f(moved) - f(x) for moves along each combination's level set.

    pairs: default all i < j (ratio and homogeneous pairs oriented by `_orientations`). Scores
    are RMS changes per f's spread. "homogeneous" reuses the ratio's moves (scaling x_i and
    x_j alike by e^s) and fits f's degree k under them; it is reported only for k != 0 (the
    ratio test is k = 0). With a `support`, only moves between points inside it count; X,
    the data's rows, are where the moves start (as in `split_tests`).
    """
    lo, hi = check_box(lo, hi)
    d = len(lo)
    X = _test_points(lo, hi, n_points, rng, X)
    f0 = query(oracle, X)
    spread = _spread(f0)
    inside = support.covered(X) if support is not None else np.ones(len(X), dtype=bool)
    results = []
    for i, j in (pairs if pairs is not None else itertools.combinations(range(d), 2)):
        for kind in kinds:
            if kind not in MOVE_KINDS:
                continue
            Y = pair_moves(kind, X, i, j, lo, hi, rng)
            fY = query(oracle, Y)
            keep = inside & support.covered(Y) if support is not None else inside
            score = (_rms((fY - f0)[keep] / spread, SYMMETRY_TRIM) if _covered_share(keep)
                     else np.inf)
            pairs_kind = _orientations(i, j, X) if kind == "ratio" else [(i, j)]
            results += [SeparabilityResult(kind, score, _threshold(kind, tol), pair=p)
                        for p in pairs_kind]
            if kind == "ratio" and "homogeneous" in kinds and _covered_share(keep):
                with np.errstate(divide="ignore", invalid="ignore"):
                    s = np.log(np.abs(Y[keep, i]) / np.abs(X[keep, i]))
                k, h_score = _homogeneous(f0[keep], fY[keep], s, spread)
                if k != 0.0:
                    results += [SeparabilityResult("homogeneous", h_score,
                                                   _threshold("homogeneous", tol), pair=p,
                                                   degree=k) for p in pairs_kind]
    return results


# ----------------------------------------------------------------------------- all together
def rank_results(results: Sequence[SeparabilityResult]) -> list[SeparabilityResult]:
    """Passed tests first (by PRIORITY, then smallest margin), then the failed
    ones by margin."""
    return sorted(results, key=lambda r: (not r.passed, PRIORITY[r.test] if r.passed else 0,
                                          r.margin))


def relevance_tests(oracle: Oracle, lo, hi, tol: float, rng: np.random.Generator, *,
                    n_points: int = 256) -> list[SeparabilityResult]:
    """Does f depend on x_i at all? For each input, f(x with x_i redrawn in the box) - f(x),
    RMS per f's spread; a pass ("irrelevant") means the change is within the oracle's error:
    the law ignores that column, and the problem has one variable fewer."""
    lo, hi = check_box(lo, hi)
    X = sample_box(lo, hi, n_points, rng)
    f0 = query(oracle, X)
    spread = _spread(f0)
    results = []
    for i in range(len(lo)):
        Y = X.copy()
        Y[:, i] = lo[i] + (hi[i] - lo[i]) * rng.random(n_points)
        score = _rms((query(oracle, Y) - f0) / spread)
        results.append(SeparabilityResult(IRRELEVANT, score, _threshold(IRRELEVANT, tol),
                                          variable=i))
    return results


#: A point is inside the data's support when its nearest data row is at most this many times
#: the data's own typical spacing away (the `SUPPORT_QUANTILE` of each row's distance to its
#: nearest other row, in box-scaled coordinates). Dimensionless groups fill a thin region of
#: their box (v/c and c*t/x cannot both be large), and a network is wild off it.
SUPPORT_FACTOR = 3.0
SUPPORT_QUANTILE = 0.95


class Support:
    """Where the data are: `covered(Z)` says which points (N, d) lie within reach of a row.

    Columns are scaled to [0, 1] on the data's box (logarithms first for `log_columns`, the
    columns a network reads as logs, so that spacing is judged as the network sees it)."""

    def __init__(self, X: np.ndarray, log_columns: np.ndarray | None = None):
        from scipy.spatial import cKDTree

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 3:
            raise ValueError(f"the support needs at least 3 rows (N, d), got shape {X.shape}")
        self._log = (np.zeros(X.shape[1], dtype=bool) if log_columns is None
                     else np.asarray(log_columns, dtype=bool))
        Z = self._raw(X)
        self._lo = Z.min(axis=0)
        self._span = np.where(Z.max(axis=0) > self._lo, Z.max(axis=0) - self._lo, 1.0)
        Z = (Z - self._lo) / self._span
        self._tree = cKDTree(Z)
        spacing, _ = self._tree.query(Z, k=2)
        self.radius = SUPPORT_FACTOR * float(np.quantile(spacing[:, 1], SUPPORT_QUANTILE))

    def _raw(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.where(self._log, np.log(np.where(self._log, X, 1.0)), X)

    def covered(self, X: np.ndarray) -> np.ndarray:
        """(N,) bool: the points within `radius` of a data row."""
        Z = (self._raw(np.asarray(X, dtype=np.float64)) - self._lo) / self._span
        ok = np.all(np.isfinite(Z), axis=1)
        dist = np.full(len(Z), np.inf)
        if ok.any():
            dist[ok], _ = self._tree.query(Z[ok], k=1, distance_upper_bound=self.radius * 1.001)
        return dist <= self.radius


def affine_lines(oracle: Oracle, rows: np.ndarray, j: int, lo: float, hi: float, n_values: int,
                 support: Support | None = None, at: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares lines through f(row with x_j = t) for `n_values` t spanning [lo, hi],
    per row; with a `support`, only the points inside it count (a row needs 3). Returns
    (intercept at x_j = `at` (default the middle), slope, line residual RMS, span of the
    points used) per row, NaN where a row has too few points."""
    t = np.linspace(lo, hi, n_values)
    a = (lo + hi) / 2 if at is None else at
    Z = np.repeat(rows, n_values, axis=0)
    Z[:, j] = np.tile(t, len(rows))
    F = query(oracle, Z).reshape(len(rows), n_values)
    W = np.isfinite(F)
    if support is not None:
        W &= support.covered(Z).reshape(W.shape)
    F = np.where(W, F, 0.0)
    w, s = W.astype(np.float64), t - a
    # weighted normal equations of [1, s] per row, solved in closed form
    n, sx, sxx = w.sum(1), w @ s, w @ s ** 2
    sy, sxy = (w * F).sum(1), (w * F) @ s
    det = n * sxx - sx ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (n * sxy - sx * sy) / det
        intercept = (sy - slope * sx) / n
        resid = np.where(W, F - intercept[:, None] - slope[:, None] * s, 0.0)
        rms = np.sqrt((resid ** 2).sum(1) / (n - 2))
    bad = (n < 3) | ~(det > 0)
    span = np.where(W, t, -np.inf).max(1) - np.where(W, t, np.inf).min(1)
    return tuple(np.where(bad, np.nan, v) for v in (intercept, slope, rms, span))


#: An affine test needs lines on at least this share of its rows (the rest left the support).
MIN_AFFINE_ROWS = 0.25


def affine_tests(oracle: Oracle, lo, hi, tol: float, rng: np.random.Generator, *,
                 n_points: int = 256, X: np.ndarray | None = None,
                 support: Support | None = None) -> list[SeparabilityResult]:
    """Is f a line in x_j, f = g(x_rest) + x_j * h(x_rest)? For each input, the least-squares
    line through f at `AFFINE_POINTS` values spanning x_j's range (the other inputs fixed per
    base point: rows of X where given, else points of the box), and the RMS of what it leaves
    per f's spread (one value's error counts once). With a `support` only the points inside
    it count. (x - u t)/sqrt(1 - u^2/c^2) is a line in t and in x, with no split or pair
    symmetry."""
    lo, hi = check_box(lo, hi)
    d = len(lo)
    if d < 2:
        return []
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        B = X[rng.permutation(len(X))[:n_points]]
    else:
        B = sample_box(lo, hi, n_points, rng)
    spread = _spread(query(oracle, B))
    results = []
    for j in range(d):
        if hi[j] <= lo[j]:
            continue
        _, _, rms, _ = affine_lines(oracle, B, j, lo[j], hi[j], AFFINE_POINTS, support)
        ok = np.isfinite(rms)
        score = (float(np.sqrt(np.mean(rms[ok] ** 2))) / spread
                 if ok.mean() >= MIN_AFFINE_ROWS else float("inf"))
        results.append(SeparabilityResult(AFFINE, score, _threshold(AFFINE, tol), variable=j))
    return results


def _four_points(B: np.ndarray, i: int, j: int, hi_: float, hj: float, k: float
                 ) -> list[np.ndarray]:
    """The corners (++, +-, -+, --) around each row of B in the coordinates
    (log x_i, log|x_j| + k log x_i), steps hi_ and hj."""
    corners = []
    for si in (1.0, -1.0):
        for sj in (1.0, -1.0):
            Z = B.copy()
            Z[:, i] = B[:, i] * np.exp(si * hi_)
            Z[:, j] = B[:, j] * np.exp(sj * hj - k * si * hi_)
            corners.append(Z)
    return corners


def _shear_score(oracle: Oracle, B: np.ndarray, i: int, j: int, hi_: float, hj: float,
                 k: float, spread: float, support: Support | None) -> float:
    """The smaller of the additive and the multiplicative mixed difference over the four
    corners (`_four_points`), RMS per f's spread, one value's error counting once; inf when
    too few rows keep their corners inside the support."""
    corners = _four_points(B, i, j, hi_, hj, k)
    ok = np.ones(len(B), dtype=bool)
    if support is not None:
        for Z in corners:
            ok &= support.covered(Z)
    if ok.mean() < MIN_COVERED_ROWS:
        return float("inf")
    pp, pm, mp, mm = (query(oracle, Z[ok]) for Z in corners)
    additive = (pp + mm - pm - mp) / 2.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.sqrt((pp ** 2 + pm ** 2 + mp ** 2 + mm ** 2) / 4.0)
        multiplicative = (pp * mm - pm * mp) / (2.0 * scale)
    return min(_rms(additive / spread), _rms(multiplicative / spread))


def shear_tests(oracle: Oracle, X: np.ndarray, tol: float, rng: np.random.Generator, *,
                n_points: int = 256, support: Support | None = None
                ) -> list[SeparabilityResult]:
    """Does f separate between x_i and x_j * x_i^k, for a k in `SHEAR_POWERS`, where it does
    not between x_i and x_j (k = 0)? Around data rows (x_i > 0, x_j of one sign), the mixed
    difference of f over four corners `SHEAR_STEP` of each log-range apart in the coordinates
    (log x_i, log|x_j| + k log x_i): zero, up to the oracle's error, exactly when f is
    g(x_i) + h(x_j x_i^k) or g(x_i) h(x_j x_i^k) there. The best k per ordered pair is
    reported when k = 0 fails. A choice of dimensionless groups that hides a product: in
    (u/c, c t/x) the law (1 - u t/x)/sqrt(1 - u^2/c^2) separates once c t/x becomes u t/x."""
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    if d < 2 or len(X) < 3:
        return []
    B = X[rng.permutation(len(X))[:n_points]]
    spread = _spread(query(oracle, B))
    threshold = _threshold(SHEAR, tol)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = np.all(X > 0, axis=0)
        one_sign = positive | np.all(X < 0, axis=0)
        log_range = np.log(np.abs(X).max(axis=0) / np.abs(X).min(axis=0))
    results = []
    for i, j in itertools.permutations(range(d), 2):
        if not (positive[i] and one_sign[j] and log_range[i] > 0 and log_range[j] > 0):
            continue
        hi_, hj = SHEAR_STEP * log_range[i], SHEAR_STEP * log_range[j]
        if _shear_score(oracle, B, i, j, hi_, hj, 0.0, spread, support) <= threshold:
            continue  # the plain split test's case
        score, k = min((_shear_score(oracle, B, i, j, hi_, hj, k, spread, support), k)
                       for k in SHEAR_POWERS)
        if np.isfinite(score):
            results.append(SeparabilityResult(SHEAR, score, threshold, pair=(i, j), degree=k))
    return results


def separability_tests(oracle: Oracle, lo, hi, tol: float, rng: np.random.Generator, *,
                       n_pairs: int = 256, grid: int = 20, X: np.ndarray | None = None,
                       support: Support | None = None,
                       affine_rng: np.random.Generator | None = None,
                       shear_rng: np.random.Generator | None = None
                       ) -> list[SeparabilityResult]:
    """Run every split test, pair symmetry and affine test; return them ranked
    (`rank_results`).
    (`relevance_tests`, which drop a whole column, are the solver's step before these.)

    oracle: (N, d) -> (N,) in the user's units; lo, hi: (d,) data bounding box; tol: the
    oracle's validation RMSE / std(y) (0 for an exact formula); X, support: the data's rows
    and `Support`, which the affine tests keep to (see `affine_tests`), and the shear tests
    need (`shear_tests`, run only where X is given); affine_rng, shear_rng: their own
    generators (default rng), so that they leave the other tests' draws as they were.
    """
    results = split_tests(oracle, lo, hi, tol, rng, n_pairs=n_pairs, grid=grid,
                          support=support, X=X)
    results += symmetry_tests(oracle, lo, hi, tol, rng, n_points=n_pairs, support=support,
                              X=X)
    results += affine_tests(oracle, lo, hi, tol, rng if affine_rng is None else affine_rng,
                            n_points=n_pairs, X=X, support=support)
    if X is not None:
        results += shear_tests(oracle, X, tol, rng if shear_rng is None else shear_rng,
                               n_points=n_pairs, support=support)
    return rank_results(results)
