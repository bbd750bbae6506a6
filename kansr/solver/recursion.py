"""Recursive separation: the trained network as an oracle for structure tests (additive,
multiplicative, offset-product splits; difference/sum/product/ratio pair symmetries; shears;
lines in one input); when
one passes, each part is solved by `solve` itself on data generated from the network, in a
share of the budget, and the parts recombined into one formula refitted on the data. Pair
symmetries and power-law factors are also read off the data alone, before any network
(`data_pairs`, `power_factors`), and every reduction of the data is checked on them
(`ReductionCheck`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import sympy
import torch

from ..compose.front import select_best
from ..structure.decompose import decompose, disjoint_pairs, pairs_part, recombine
from ..structure.separability import (PAIR_TESTS, SeparabilityResult, Support, relevance_tests,
                                      separability_tests)
from .budget import Budget
from .formulas import ExactRule, near_exact, refit_and_polish
from .noise import (estimate_noise, local_elasticities, local_slopes, local_smoother,
                    relative_noise)
from .scaling import Scaling
from .shapes import TrainedNetwork

log = logging.getLogger(__name__)

#: Sub-problems below this depth may split again (a law of 6 variables splits twice).
MAX_DEPTH = 3
#: Share of what is left of the budget the parts of one split get together.
PARTS_SHARE = 0.6
#: ... and the one part of a pair symmetry tried before a one-node network is read.
PAIR_ONLY_SHARE = 0.25
#: ... and the one-input part of the data's pairs on quiet data (`data_pair_formulas`).
QUIET_ONE_INPUT_SHARE = 0.5
#: The one-input part the data's pairs leave on quiet data (the law itself, on the data's
#: own values) gets at least this many seconds of the whole search, however deep it sits:
#: matching one input directly is a fixed cost of 1-8 s (the library, then ratios of one
#: primitive), and the nested shares of four data reductions left Planck's x^3/(exp(x) - 1)
#: 1.5 s, where a look-alike won. (On noisy data the networks' path keeps its time: see
#: `SCREEN_QUIET_NOISE`.)
ONE_INPUT_PART_S = 8.0
#: Rows of the data the parts are generated on (the oracle's values there).
PART_ROWS = 2000
#: Passed structures tried in turn while none gives the law (a wrong first pick, e.g. a
#: ratio written c/v where v/c gives the simple piece, leaves time for the next) ...
MAX_STRUCTURES = 2
#: ... as long as this share of the budget is not yet spent.
RETRY_BEFORE = 0.8
#: The oracle's relative error used as the tests' tolerance is at least this (a network that
#: fits to 1e-12 still differs from the law by more than round-off between samples).
MIN_TOL = 1e-6


@dataclass
class Split:
    """A node of the decomposition tree: which test split the problem (several disjoint
    pair symmetries applied together are joined by "+", e.g. "product+product"), and the
    parts' own trees (None where a part was solved without splitting)."""

    test: str
    variables: list[str]
    margin: float
    formula: str = ""
    parts: list["Split | None"] = field(default_factory=list)
    part_variables: list[list[str]] = field(default_factory=list)


def network_oracle(net: TrainedNetwork, scaling: Scaling) -> Callable[[np.ndarray], np.ndarray]:
    """The network as f(X): (N, d) in the problem's units -> (N,)."""
    model = net.model

    def oracle(X: np.ndarray) -> np.ndarray:
        Z = torch.as_tensor(scaling.x(np.asarray(X, dtype=np.float64))[:, model.input_ids],
                            dtype=model.dtype, device=model.device)
        with torch.no_grad():
            out = model(Z)[:, 0].cpu().numpy().astype(np.float64)
        return scaling.y_back(out)

    return oracle


#: A pair symmetry's part is the data's own rows in fewer columns. Where y is a function of
#: them, the local noise estimate (`estimate_noise`: what local fits leave, noise and
#: curvature) stays or falls, as neighbours come closer; a symmetry the law lacks leaves
#: variation that no column explains, which the estimate counts as noise. So a pair passes
#: on the data when its part's estimate (a share of the part's variance) is within this
#: factor of its parent's. Measured on the Feynman data (all 341 true pair symmetries of the
#: laws, four false ones per law, 10,000 rows): true ones at most 1.39 times their parent's
#: (95 % below 0.71 noise-free, 0.96 at 1 % noise), false ones above 1.5 but for 3 of 396
#: (5 at 1 % noise). The network's own tests pass nearly every pair once it fits only to
#: a few 1e-3 (a 6-input law), so this check on the data is what tells them apart.
PAIR_NOISE_RATIO = 1.5
#: ... plus this much (relative variance): on a law the local fits reproduce to round-off
#: (a plane) both estimates are round-off; a false symmetry leaves far more (at least 9e-5
#: of the variance in that measurement).
PAIR_NOISE_ATOL = 1e-10


def local_noise(X: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """`estimate_noise` as a share of var(y); inf where X or y is not finite."""
    with np.errstate(all="ignore"):
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            return float("inf")
        return relative_noise(estimate_noise(X, y, seed), y)


def no_noisier(reduced: float, before: float) -> bool:
    """A reduction's local noise (`local_noise`) is within `PAIR_NOISE_RATIO` of before."""
    return reduced <= PAIR_NOISE_RATIO * before + PAIR_NOISE_ATOL


class ReductionCheck:
    """Reductions of the data X (N, d), y (N,) checked on the data: disjoint pair symmetries
    merged into one part, and columns dropped (see `PAIR_NOISE_RATIO`)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, seed: int = 0,
                 noise: float | None = None):
        """`noise`: the data's own `local_noise`, where the caller has it already."""
        self.X, self.y, self.seed = X, y, seed
        self._parts: dict[tuple, tuple[float, np.ndarray]] = (
            {} if noise is None else {(): (noise, y)})
        #: merged pair reductions already solved as a part (`reduction_key`): a later look
        #: on a network skips them
        self.tried: set[frozenset] = set()

    def _part(self, pairs: Sequence[SeparabilityResult]) -> tuple[float, np.ndarray]:
        """(`local_noise`, y) of the part that merges `pairs` (none: the data)."""
        key = tuple((r.test, r.pair, r.degree) for r in pairs)
        if key not in self._parts:
            X, y = self.X, self.y
            if pairs:
                part = pairs_part(None, list(pairs), X.min(axis=0), X.max(axis=0),
                                  np.random.default_rng(self.seed), X=X, y=y).parts[0]
                X, y = part.X, part.y
            self._parts[key] = (local_noise(X, y, self.seed), y)
        return self._parts[key]

    def noise(self, pairs: Sequence[SeparabilityResult]) -> float:
        """`local_noise` of the part that merges `pairs` (none: the data)."""
        return self._part(pairs)[0]

    def passes(self, taken: Sequence[SeparabilityResult], result: SeparabilityResult) -> bool:
        """Does adding the pair `result` to the disjoint pairs `taken` keep y a function of
        the part's columns? A homogeneous pair divides y by |x_j|^k, and the noise with it:
        the part's estimate is held to the noise before, carried through that division (on
        1 % noise a true homogeneous pair's part read 4.6 times the data's relative noise)."""
        (before, y0), (after, y1) = self._part(taken), self._part(list(taken) + [result])
        with np.errstate(all="ignore"):
            carried = float(np.mean((y1 / y0) ** 2) * np.var(y0) / np.var(y1))
        if not np.isfinite(carried):
            carried = 1.0
        return no_noisier(after, before * carried)

    def keeps(self, columns: Sequence[int]) -> bool:
        """Is y still a function of the data's `columns` alone (the others dropped)? The same
        rule: a column the law uses leaves variation the others do not explain."""
        return no_noisier(local_noise(self.X[:, list(columns)], self.y, self.seed),
                          self.noise([]))


def reduction_key(pairs: SeparabilityResult | Sequence[SeparabilityResult]) -> frozenset:
    """The same reduction however a test wrote it: x_i - x_j or x_j - x_i (x_i + x_j, x_i x_j).
    A ratio's or a homogeneous pair's orientation counts: F(x_i/x_j) and F(x_j/x_i) are
    different parts (the normal density is easy in theta/sigma, hard in sigma/theta)."""
    pairs = [pairs] if isinstance(pairs, SeparabilityResult) else pairs
    return frozenset((r.test, tuple(r.pair) if r.test in ("ratio", "homogeneous")
                      else frozenset(r.pair)) for r in pairs)


#: Pair symmetries read off the data before any network: where y = F(rest, u(x_i, x_j)) the
#: local slopes s = dy/dx satisfy s_i + s_j = 0 (u = x_i - x_j), s_i = s_j (x_i + x_j),
#: x_i s_i = x_j s_j (x_i x_j), x_i s_i + x_j s_j = k y (x_i / x_j, homogeneous of degree
#: k). A pair is a candidate where the median of |violation| / (sum of the terms' sizes)
#: over the rows is at most this. Measured on the Feynman data (10,000 rows, local fits at
#: 2,000 of them): true products and ratios at most 0.27 (95 % below 0.19) noise-free, 0.73
#: (0.34) at 1 % noise; of 2,050 false pairs 6 % come below 0.2. The candidates then face
#: the data check (`ReductionCheck`), which tells them apart.
SLOPE_SCREEN = 0.2
#: Rows the slopes are fitted at.
SLOPE_ROWS = 2000
#: Candidates checked on the data, at most (each check is one local noise estimate: 0.02 s
#: on 10,000 rows in three inputs, 0.2 s in eight).
MAX_SCREENED = 12
#: Above this noise (relative variance) a false pair's variation can hide under the noise
#: and the data check cannot refuse it: the networks' tests decide there.
SCREEN_MAX_NOISE = 1e-3
#: ... and above this one (where curvature on noise-free data and 1 % noise overlap) its part
#: gets `PAIR_ONLY_SHARE` of the budget: at 1 % noise the networks' path found laws the
#: parts missed (the part's one-variable look-alikes pass within the noise).
SCREEN_QUIET_NOISE = 1e-5


def _violation(a: np.ndarray, b: np.ndarray, c: np.ndarray | float = 0.0) -> float:
    """Median over rows of |a + b - c| / (|a| + |b| + |c|) (0: the relation holds)."""
    with np.errstate(all="ignore"):
        v = np.abs(a + b - c) / (np.abs(a) + np.abs(b) + np.abs(c))
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else np.inf


def _away_from_zero(x: np.ndarray) -> float:
    """min |x| / max |x| (0: x reaches or crosses zero)."""
    ax = np.abs(x)
    return 0.0 if np.any(x > 0) and np.any(x < 0) else float(ax.min() / (ax.max() or 1.0))


def _divided(i: int, j: int, away: Sequence[float], size: np.ndarray) -> tuple[int, int]:
    """(numerator, denominator) of a ratio (a homogeneous pair's divisor last). A column that
    reaches zero is never the denominator (sigma / (x - mu) would blow up where x - mu crosses
    zero); otherwise the ratio is mostly at most 1, as `symmetry_tests` orients it (v/c, not
    c/v: m c^2 / sqrt(1 - v^2/c^2) is c^2 times a one-variable law of v/c, v^2 times a
    harder one of c/v, whose part took 22 s and failed)."""
    if min(away[i], away[j]) == 0.0:
        return (i, j) if away[j] >= away[i] else (j, i)
    return (i, j) if size[i] <= size[j] else (j, i)


def data_pairs(X: np.ndarray, y: np.ndarray, check: ReductionCheck, seed: int = 0
               ) -> list[SeparabilityResult]:
    """Disjoint pair symmetries of the data, merged into one part (`disjoint_pairs`): the
    local slopes propose them (`SLOPE_SCREEN`), the data check (`ReductionCheck`) keeps the
    ones y stays a function of. Best first; [] where none passes."""
    n, d = X.shape
    if d < 2 or n < 4 * (2 * d + 1):
        return []
    rows, s = local_slopes(X, y, seed, SLOPE_ROWS)
    Xq, yq = X[rows], y[rows]
    away = [_away_from_zero(X[:, k]) for k in range(d)]
    size = np.median(np.abs(X), axis=0)
    found = []
    for i in range(d):
        for j in range(i + 1, d):
            a, b = Xq[:, i] * s[:, i], Xq[:, j] * s[:, j]
            scores = {"difference": _violation(s[:, i], s[:, j]),
                      "sum": _violation(s[:, i], -s[:, j]),
                      "product": _violation(a, -b), "ratio": _violation(a, b)}
            with np.errstate(all="ignore"):
                degree = (a + b) / yq  # Euler: x_i s_i + x_j s_j = k f for degree k
                k = np.median(degree[np.isfinite(degree)]) if np.isfinite(degree).any() else 0.0
            k_snap = POWER_STEP * np.round(k / POWER_STEP) if np.isfinite(k) else 0.0
            if k_snap != 0 and abs(k - k_snap) < POWER_STEP / 5 and abs(k_snap) <= MAX_POWER:
                scores["homogeneous"] = _violation(a, b, k_snap * yq)
            pair = _divided(i, j, away, size)
            for test, score in scores.items():
                if score <= SLOPE_SCREEN:
                    found.append(SeparabilityResult(
                        test, score, SLOPE_SCREEN, pair=pair,
                        degree=float(k_snap) if test == "homogeneous" else None))
    found.sort(key=lambda r: r.score)
    budget = [MAX_SCREENED]

    def accept(taken: list[SeparabilityResult], r: SeparabilityResult) -> bool:
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        return check.passes(taken, r)

    merged = disjoint_pairs(found, accept)
    log.debug("structure: slopes propose %s; the data keep %s",
              [(r.test, r.pair, round(r.score, 3)) for r in found[:8]],
              [(r.test, r.pair) for r in merged])
    return merged


def _further(X: np.ndarray, y: np.ndarray, pairs: list[SeparabilityResult], seed: int) -> int:
    """How many reductions the data show in the part that merges `pairs` (its own pairs and
    power factors; 0 for a part of one input)."""
    part = pairs_part(None, pairs, X.min(axis=0), X.max(axis=0), np.random.default_rng(seed),
                      X=X, y=y).parts[0]
    if part.X.shape[1] < 2:
        return 0
    return (len(data_pairs(part.X, part.y, ReductionCheck(part.X, part.y, seed), seed))
            + len(power_factors(part.X, part.y, seed)))


def _oriented(X: np.ndarray, y: np.ndarray, merged: list[SeparabilityResult], seed: int
              ) -> list[SeparabilityResult]:
    """`merged` with its homogeneous pair divided by the other column where that leaves a
    part the data reduce further. Either column may be the divisor (x_j^k F(x_i/x_j) =
    x_i^k G(x_j/x_i)), and which leaves the simpler part depends on the law: mom tanh(mom B /
    (kb T)) divided by T is (mom/T) tanh((mom/T)(B/kb)), by mom tanh((B/kb) / (T/mom)), a
    function of one ratio (Feynman II.35.21: 66 s and no law, against 1.9 s). Where neither or both
    orientations reduce further, `_divided`'s stays; a column that reaches zero never
    divides."""
    at = next((n for n, r in enumerate(merged) if r.test == "homogeneous"), None)
    if at is None or _away_from_zero(X[:, merged[at].pair[0]]) == 0.0:
        return merged
    flipped = list(merged)
    flipped[at] = replace(merged[at], pair=merged[at].pair[::-1])
    return flipped if _further(X, y, flipped, seed) > _further(X, y, merged, seed) else merged


def data_pair_formulas(X: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol],
                       solve_part: Callable, budget: Budget, seed: int,
                       check: ReductionCheck, noise: float
                       ) -> tuple[list[sympy.Expr], Split | None]:
    """Formulas from the pair symmetries the data show (`data_pairs`), before any network:
    the part (the data's own rows, the pairs' combinations as columns) solved in a share of
    the budget, recombined and refitted on X, y. ([], None) where none passes or the data
    are too noisy to check (`SCREEN_MAX_NOISE`)."""
    if noise > SCREEN_MAX_NOISE:
        return [], None
    merged = _oriented(X, y, data_pairs(X, y, check, seed), seed)
    if not merged or reduction_key(merged) in check.tried:
        return [], None
    check.tried.add(reduction_key(merged))
    # On quiet data a part of one input is matched directly, a fixed cost of 1-3 s (the
    # library, then ratios of one primitive): a quarter of a nested part's budget cut it
    # short (2.2 s left for x/(exp(x) - 1) three pairs deep, and a look-alike won).
    share = (PAIR_ONLY_SHARE if noise > SCREEN_QUIET_NOISE
             else QUIET_ONE_INPUT_SHARE if len(merged) == X.shape[1] - 1 else PARTS_SHARE)
    lo, hi = X.min(axis=0), X.max(axis=0)
    return _solve_structure(X, y, symbols, None, merged, None, lo, hi,
                            np.random.default_rng(seed), solve_part, budget, None, share,
                            ONE_INPUT_PART_S if noise <= SCREEN_QUIET_NOISE else 0.0)


#: A power-law factor's exponent snaps to a multiple of this, within this bound (laws have
#: small rational powers: x^2, 1/x, sqrt(x), x^(3/2)).
POWER_STEP, MAX_POWER = 0.5, 4.0


def power_factors(X: np.ndarray, y: np.ndarray, seed: int = 0, noise: float | None = None
                  ) -> list[tuple[int, float]]:
    """Inputs x_k > 0 that y is a power of times a function of the other inputs, f = x_k^a
    F(rest), found and checked on the data: a is the median local elasticity of y in x_k
    (`local_elasticities`) snapped to a multiple of `POWER_STEP`, and y / x_k^a must stay a
    function of the other columns (`no_noisier`: dividing by a wrong power
    leaves x_k's effect, which the others do not explain). Columns are taken one at a
    time, steadiest elasticity first, those whose elasticity's interquartile range is within
    half a step; at least one column is left. `noise`: the data's `local_noise`, where known.
    Returns [(k, a)]."""
    n, d = X.shape
    if d < 2 or not np.all(y != 0) or n < 4 * (2 * d + 1):
        return []
    with np.errstate(all="ignore"):
        E = local_elasticities(X, y, seed)
    spread = np.full(d, np.inf)
    has = np.all(np.isfinite(E), axis=0)  # the positive columns
    spread[has] = np.quantile(E[:, has], 0.75, axis=0) - np.quantile(E[:, has], 0.25, axis=0)
    # an elasticity whose middle half spans more than half a step is no one power
    order = [k for k in np.argsort(spread) if spread[k] <= POWER_STEP / 2]
    factors: list[tuple[int, float]] = []
    cols, z = list(range(d)), np.asarray(y, dtype=float)
    base = local_noise(X, z, seed) if noise is None else noise
    for k in order:
        a = float(np.clip(np.round(np.median(E[:, k]) / POWER_STEP) * POWER_STEP,
                          -MAX_POWER, MAX_POWER))
        if a == 0.0 or len(cols) == 1:
            continue
        rest = [c for c in cols if c != k]
        z_new = z / X[:, k] ** a
        noise = local_noise(X[:, rest], z_new, seed)
        if no_noisier(noise, base):
            factors.append((int(k), a))
            cols, z, base = rest, z_new, noise
    return factors


#: A part's error floor is at most this share of its variance: a part that barely varies
#: (next to the oracle's error) is nearly constant, and a looser floor would accept anything.
MAX_PART_FLOOR = 1e-2
#: A slice of the network at a frozen point carries more than its average error: the error
#: is smooth and correlated, and a slice does not average it over the other inputs (the line
#: n_0 -> f(n_0, ref) of a network fitted to 9.4e-7 left 1.4 times its share, and the part's
#: search, not calling the line exact, spent 10 s on rational fits and a network).
SLICE_ERROR_GAIN = 2.0


#: A part made of the network's values is explained by any formula within this factor of
#: the network's error (an average; the error is larger in places and correlated, unlike noise)
ORACLE_SLACK = 3.0


def _pick(front, part_y: np.ndarray, oracle_floor: float, noise_floor: float) -> sympy.Expr:
    """The part's formula. On the network's values (oracle_floor > 0) the simplest within
    `ORACLE_SLACK` times the network's error: a description-length rule would reward a
    wiggle fitting that smooth, correlated error (tan(a*m + b) for m); else the solver's own
    rule."""
    if oracle_floor > 0:
        allowed = ORACLE_SLACK * oracle_floor * float(np.var(part_y))
        factor = max(1.5, allowed / max(float(front["loss"].min()), np.finfo(float).tiny))
        return select_best(front, "parsimony", loss_factor=factor)["sympy"]
    return select_best(front, "auto", n_rows=len(part_y), noisy=noise_floor > 0)["sympy"]


def part_error_floor(val_mse: float, y: np.ndarray, part_y: np.ndarray) -> float:
    """The oracle's error on a part, as a share of the part's variance: the network's
    validation relative MSE `val_mse` (of var(y)) is an absolute error variance the part's
    values (slices of the same network) carry too, up to `SLICE_ERROR_GAIN` times."""
    peak = float(np.max(np.abs(y))) or 1.0  # squares of values near 1e300 overflow
    var_part = float(np.var(np.asarray(part_y) / peak))
    if not np.isfinite(val_mse) or not var_part > 0:
        return 0.0
    ratio = float(np.var(np.asarray(y) / peak)) / var_part
    return float(min(SLICE_ERROR_GAIN * max(val_mse, 0.0) * ratio, MAX_PART_FLOOR))


def oracle_tol(net: TrainedNetwork) -> float:
    """The network's relative RMS error, the structure tests' tolerance (at least MIN_TOL)."""
    return max(float(np.sqrt(max(net.val_mse, 0.0))), MIN_TOL)


def irrelevant_columns(net: TrainedNetwork, scaling: Scaling, X: np.ndarray, seed: int
                       ) -> list[int]:
    """Inputs the network's output does not depend on (within its own error): the law
    ignores those columns. Cheap (a few hundred network evaluations per input)."""
    results = relevance_tests(network_oracle(net, scaling), X.min(axis=0), X.max(axis=0),
                              oracle_tol(net), np.random.default_rng(seed))
    return [r.variable for r in results if r.passed]


def ignored_columns(net: TrainedNetwork, scaling: Scaling, check: ReductionCheck, seed: int
                    ) -> list[int]:
    """`irrelevant_columns` (of the data `check.X`) that the data confirm (`check.keeps`): a
    network fitted loosely passes a column whose effect is within its error."""
    X = check.X
    drop = irrelevant_columns(net, scaling, X, seed)
    if 0 < len(drop) < X.shape[1] and not check.keeps(
            [k for k in range(X.shape[1]) if k not in drop]):
        log.info("structure: the network ignores columns %s, the data do not", drop)
        return []
    return drop


def separated_formulas(X: np.ndarray, y: np.ndarray, symbols: Sequence[sympy.Symbol],
                       net: TrainedNetwork, scaling: Scaling, solve_part: Callable,
                       budget: Budget, seed: int, exact: ExactRule = ExactRule(),
                       pairs: str = "all", check: ReductionCheck | None = None
                       ) -> tuple[list[sympy.Expr], Split | None]:
    """Formulas from splitting the problem along the structures the network passes.

    `solve_part(X, y, symbols, budget, error_floor) -> SolveResult` solves one part (the
    solver itself, one level deeper); error_floor is the network's error as a share of the
    part's variance, so that the part's search stops where the network cannot tell better.
    The passed tests are tried in rank order (at most `MAX_STRUCTURES`) until one gives a
    formula that meets `exact` on X, y. `pairs`: "all" tries every passed test; "only" the
    pair symmetries that pass on the data too, merged into one part (a look before reading
    a network; a part of one input gets `PAIR_ONLY_SHARE` of the budget); "rest" all but
    what "only" tried. `check`: the data's `ReductionCheck` (made here if not given).
    Returns the recombined formulas
    (refitted on X, y) and the tree of the first structure that gave the law, else of the
    first tried.
    """
    if pairs not in ("all", "only", "rest"):
        raise ValueError(f"pairs must be 'all', 'only' or 'rest', got {pairs!r}")
    oracle = network_oracle(net, scaling)
    tol = oracle_tol(net)
    lo, hi = X.min(axis=0), X.max(axis=0)
    rng = np.random.default_rng(seed)
    support = Support(X, scaling.x_log)
    # the affine tests draw from their own stream: the parts of the other structures are
    # generated from `rng` as they were before those tests existed
    ranked = separability_tests(oracle, lo, hi, tol, rng, X=X, support=support,
                                affine_rng=np.random.default_rng([seed, 1]),
                                shear_rng=np.random.default_rng([seed, 2]))
    passed = [r for r in ranked if r.passed]
    log.debug("structure: passed %s; closest failed %s",
              [(r.test, r.pair or r.split or r.variable, round(r.margin, 3)) for r in passed],
              [(r.test, r.pair or r.split or r.variable, round(r.margin, 3))
               for r in ranked[len(passed):len(passed) + 4]])
    if not passed and ranked:
        log.info("structure: no test passes (closest: %s at %.3g of its threshold)",
                 ranked[0].test, ranked[0].margin)
    # Disjoint pair symmetries merge into one part first (a sum of three products becomes a
    # sum of three inputs in one step); the top pair alone is the fallback. A pair whose part
    # the data contradict is dropped (`ReductionCheck`).
    check = check if check is not None else ReductionCheck(X, y, seed)
    merged = disjoint_pairs(passed, check.passes)
    candidates = ([merged] if len(merged) > 1 else []) + passed
    share = PARTS_SHARE
    if pairs == "only":
        # a part of one input is matched directly in a second; a wider one trains networks
        candidates = [merged] if merged else []
        share = PAIR_ONLY_SHARE if len(merged) == X.shape[1] - 1 else PARTS_SHARE
    elif pairs == "rest":
        candidates = [r for r in passed if not (len(merged) == 1 and r is merged[0])]
    exprs: list[sympy.Expr] = []
    first: Split | None = None
    n_tried = 0
    for result in candidates:
        if n_tried == MAX_STRUCTURES:
            break
        if isinstance(result, SeparabilityResult) and result.test in PAIR_TESTS \
                and not check.passes([], result):
            log.debug("structure: %s %s fails on the data (local noise %.3g, data's %.3g)",
                      result.test, result.pair, check.noise([result]), check.noise([]))
            continue
        if n_tried and (budget.expired(RETRY_BEFORE) or budget.interrupted):
            break
        key = reduction_key(result) if isinstance(result, list) or \
            result.test in PAIR_TESTS else None
        if key is not None and key in check.tried:
            continue  # solved already (the data's own pair look)
        if key is not None:
            check.tried.add(key)
        n_tried += 1
        found, tree = _solve_structure(X, y, symbols, net, result, oracle, lo, hi, rng,
                                       solve_part, budget, support, share)
        exprs += found
        first = first or tree
        if found and near_exact(found, symbols, X, y, exact):
            return exprs, tree
    return exprs, first


def _second_part_from_data(dec, first: sympy.Expr, names: Sequence[str], y: np.ndarray,
                           floor: float, seed: int) -> tuple[sympy.Expr, np.ndarray] | None:
    """A split's second part on the data's own values, where they beat the oracle's slice:
    with the first part's formula g, y = g h / f(ref) (multiplicative) or g + h - f(ref)
    (additive) leaves h = f(ref) y / g or y - g + f(ref) on the data's rows, free of the
    network's error. g's constants were fitted to the oracle's slice (1.050 - 1.049 w for
    c (1 - w)), so they are refitted first, to make those values as smooth a function of the
    second group as the data allow (the local fits of `estimate_noise` are a linear
    smoother, so that is a least-squares problem). (g refitted, the values) where their
    local noise is below `floor`, the oracle's error on the part (relative); else None."""
    from ..compose.refit import compile_model, parametrize, predict, restore_floats
    from scipy.optimize import least_squares

    part0, part1 = dec.parts
    cols = {n: part0.X[:, j] for j, n in enumerate(part0.names(list(names)))}
    try:
        expr_p, params, theta0 = parametrize(first)
        model = compile_model(expr_p, params)
    except Exception as exc:  # noqa: BLE001 - the oracle's slice still answers
        log.debug("the first part %s cannot be evaluated: %s", first, exc)
        return None
    rows, idx, weights, scale = local_smoother(part1.X, seed)
    f_ref = dec.f_ref

    def values(theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            g = predict(model, cols, theta, len(y))
            return f_ref * y / g if dec.test == "multiplicative" else y - g + f_ref

    def rough(h: np.ndarray) -> np.ndarray:
        """h's local-fit residuals, relative to its spread (0 where h is smooth)."""
        return (scale * h[rows] - np.einsum("mk,mk->m", weights, h[idx])) / (np.std(h) or 1.0)

    def residual(theta: np.ndarray) -> np.ndarray:
        r = rough(values(theta))
        return np.where(np.isfinite(r), r, 1e3)

    theta = theta0
    if len(theta0):
        try:
            with np.errstate(all="ignore"):
                theta = least_squares(residual, theta0, x_scale="jac",
                                      max_nfev=50 * len(theta0)).x
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.debug("refitting the first part on the data failed: %s", exc)
    h = values(theta)
    if not np.all(np.isfinite(h)) or np.ptp(h) == 0:
        return None
    noise = float(np.mean(rough(h) ** 2))
    log.info("structure: the second part from the data has local noise %.3g (the oracle's "
             "slice %.3g)", noise, floor)
    if not noise < floor:
        return None
    return restore_floats(expr_p, params, theta), h


def _solve_structure(X, y, symbols, net: TrainedNetwork | None, result, oracle, lo, hi,
                     rng: np.random.Generator, solve_part: Callable, budget: Budget,
                     support: Support | None = None, share: float = PARTS_SHARE,
                     one_input_s: float = 0.0) -> tuple[list[sympy.Expr], Split]:
    """The parts of one passed test (or of several disjoint pair symmetries together), each
    solved in its share of the budget (a part of one input on the data's own values in at
    least `one_input_s` seconds), recombined and refitted on X, y."""
    names = [s.name for s in symbols]
    pick = rng.permutation(len(X))[:PART_ROWS]
    dec = decompose(oracle, result, lo, hi, rng, X=X[pick], y=y[pick], support=support)
    margin = max(r.margin for r in result) if isinstance(result, list) else result.margin
    log.info("structure: %s (margin %.2g) splits %s into %s", dec.test, margin,
             names, [p.names(names) for p in dec.parts])
    tree = Split(dec.test, names, margin,
                 part_variables=[p.names(names) for p in dec.parts])
    parts_budget = budget.slice(share)
    part_exprs = []
    for k, part in enumerate(dec.parts):
        part_syms = [sympy.Symbol(n) for n in part.names(names)]
        share = 1.0 / (len(dec.parts) - k)  # what the earlier parts left, shared equally
        floor = (part_error_floor(part.error_gain ** 2 * net.val_mse, y, part.y)
                 if part.from_oracle else 0.0)
        target = part.y
        if k == 1 and floor > 0 and dec.test in ("additive", "multiplicative"):
            from_data = _second_part_from_data(dec, part_exprs[0], names, y[pick], floor,
                                               int(rng.integers(2 ** 31)))
            if from_data is not None:
                part_exprs[0], target = from_data
                floor = 0.0
        at_least = one_input_s if part.X.shape[1] == 1 and floor == 0 else 0.0
        sub = solve_part(part.X, target, part_syms, parts_budget.slice(share, at_least), floor)
        part_exprs.append(_pick(sub.front, target, floor, sub.noise_floor))
        log.info("structure: part %d of %s (%s): %s", k + 1, dec.test,
                 ", ".join(part.names(names)), part_exprs[-1])
        tree.parts.append(sub.decomposition)
        if budget.interrupted:
            return [], tree
    whole = recombine(dec, part_exprs, list(symbols))
    log.debug("structure: recombined %s", whole)
    exprs = refit_and_polish(whole, symbols, X, y, budget)
    tree.formula = str(exprs[-1])
    return exprs, tree
