"""The solver entry point: a problem (arrays, names, options, budget) in, the Pareto front of
whole formulas out. The estimator calls it; so can any stage that needs to solve a
sub-problem with its own slice of the budget.

    scaling -> train shapes -> formulas from networks -> front (-> direct fit if empty)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import sympy
import torch

from ..expr import evaluate
from ..fallback import FallbackEngine
from ..kan import KAN
from ..kan.init import additive_fit_error, product_fit_error
from ..match.library import Library
from .budget import TRAIN_SHARE, SYMBOLIC_SHARE, Budget, SearchInterrupted
from ..compose.front import select_best
from ..structure.transforms import OutputTransform, applicable_transforms, probe_transforms
from .formulas import MAX_NOISY_EXACT_CONSTANTS, NEAR_EXACT_REL_MSE, ExactRule, \
    SymbolicSettings, direct_formulas, formula_front, near_exact, network_formulas, \
    one_variable_formulas, refit_and_polish
from .noise import KEEP, at_noise_floor, estimate_noise, noise_floor, relative_noise
from .recursion import MAX_DEPTH, MAX_PART_FLOOR, ReductionCheck, Split, data_pair_formulas, \
    ignored_columns, power_factors, separated_formulas
from .scaling import Scaling
from .shapes import SCREEN_ROWS, Architecture, \
    TrainedNetwork, TrainSettings, default_architectures, train_shape

log = logging.getLogger(__name__)

#: Share of the rows held out to validate networks (at least one row).
VALIDATION_SHARE = 0.2
#: A network this close (relative validation MSE) ends the shape search; on noisy data, so
#: does one at or below the estimated noise (it cannot get closer than the noise).
GOOD_VAL_MSE = 1e-7
#: Networks within this factor of the best validation error count as near-best: among them
#: the simplest shape is symbolized first.
NEAR_BEST_RATIO = 10.0
#: Networks worse than this factor of the best are not symbolized at all.
FAR_WORSE_RATIO = 100.0


@dataclass
class Problem:
    """Data of one regression problem: X (N, d) and y (N,) float64, one symbol per column."""

    X: np.ndarray
    y: np.ndarray
    symbols: list[sympy.Symbol]
    #: relative MSE (share of var(y)) by which y is known to differ from the law, e.g. a part
    #: of a split generated from a network: thresholds treat it as noise that is there even
    #: where a network fits these smooth values far better
    error_floor: float = 0.0
    #: y is an output transform's z = T(y) of another problem: no second transform on it
    transformed: bool = False


@dataclass
class SolverOptions:
    """Everything the search needs besides the data and the budget."""

    train: TrainSettings
    symbolic: SymbolicSettings
    library: Library
    engine: FallbackEngine | None
    width: list | None = None
    max_rows: int = 3000


@dataclass
class SolveResult:
    """What a search found: the Pareto front of whole formulas and how it got there."""

    front: pd.DataFrame
    networks: list[TrainedNetwork]
    scaling: Scaling
    graph: nx.DiGraph | None = None
    last_resort: str | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    decomposition: object | None = None  # recursion.Split where a structure test split it
    #: the output transform whose sub-problem was solved, e.g. "1/y" (None: none tried)
    transform: str | None = None
    #: relative MSE the search treated as the noise floor (0.0: the data counted as noise-free)
    noise_floor: float = 0.0

    @property
    def best_network(self) -> KAN | None:
        return self.networks[0].model if self.networks else None

    def architectures(self) -> pd.DataFrame:
        return pd.DataFrame([{"name": n.arch.name, "width": str(n.model.width),
                              "val_mse": n.val_mse} for n in self.networks],
                            columns=["name", "width", "val_mse"])


def _shapes(problem: Problem, opts: SolverOptions, Xt: torch.Tensor, yt: torch.Tensor
            ) -> list[Architecture]:
    if opts.width is not None:
        return [Architecture("given", list(opts.width), sparsify=opts.train.lamb > 0)]
    archs = default_architectures(problem.X.shape[1])
    if problem.X.shape[1] >= 2 and len(Xt) >= 4:
        # Cheap linear probes (milliseconds) decide whether the additive or the
        # separable-product shape trains first: under a time budget, order matters.
        probe = {"additive": additive_fit_error(Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS]),
                 "product": product_fit_error(Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS])}
        log.info("structure probes (relative MSE): %s", probe)
        archs.sort(key=lambda a: probe.get(a.name, math.inf))
    return archs


def train_networks(problem: Problem, opts: SolverOptions, scaling: Scaling, budget: Budget,
                   rng: np.random.Generator, noise_rel: float = 0.0,
                   read_first: Callable[[TrainedNetwork, torch.Tensor, torch.Tensor], bool]
                   | None = None) -> tuple[list[TrainedNetwork], tuple]:
    """Train the shapes on a seeded train/validation split; near-best simplest first.

    `noise_rel`: estimated noise variance / var(y), an upper bound; a network at or below
    it is as good as the data allow (no finer grid, no further shape). `read_first(net, Xt,
    yt)` is offered the best one-node network before a wider shape trains; when it returns
    True (it read the law from it) the wider shapes are skipped."""
    Xs, ys = scaling.x(problem.X), scaling.y(problem.y)
    order = rng.permutation(len(Xs))
    n_val = max(int(VALIDATION_SHARE * len(Xs)), 1)
    val, train = order[:n_val], order[n_val:][: opts.max_rows]
    dtype = torch.float64 if opts.train.dtype == "float64" else torch.float32
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=opts.train.device)  # noqa: E731
    Xt, yt, Xv, yv = t(Xs[train]), t(ys[train, None]), t(Xs[val]), t(ys[val, None])
    archs = _shapes(problem, opts, Xt, yt)
    trained: list[TrainedNetwork] = []
    for k_arch, arch in enumerate(archs):
        # Shapes get halving shares of the training part of max_time (1/2, 1/4, ..., the
        # last takes what is left; time one finishes early passes on): the first, most
        # promising shape trains properly, a slow one cannot starve the others.
        share = 1.0 if k_arch == len(archs) - 1 else 1.0 - 0.5 ** (k_arch + 1)
        if trained and budget.expired(TRAIN_SHARE * share):
            log.info("time budget: skipping architecture %s", arch.name)
            break
        if trained and read_first is not None and not arch.one_node:
            first = min(trained, key=lambda n: n.val_mse)
            read_first, offer = None, read_first  # offered once
            if offer(first, Xt, yt):
                log.info("law found on the %s network: %s and later shapes skipped",
                         first.arch.name, arch.name)
                break
        try:
            net = train_shape(arch, Xt, yt, Xv, yv, opts.train,
                              budget.deadline(TRAIN_SHARE * share), noise_rel=noise_rel)
        except SearchInterrupted:
            budget.interrupt()
            break
        if net is None:
            continue
        log.info("architecture %s -> %s, validation rel. MSE %.3g%s", arch.name, net.model,
                 net.val_mse, f" ({'; '.join(net.notes)})" if net.notes else "")
        trained.append(net)
        if net.interrupted:
            budget.interrupt()
            break
        if net.val_mse < GOOD_VAL_MSE or at_noise_floor(net.val_mse, noise_rel):
            log.info("architecture %s fits to %.3g: later shapes skipped", arch.name, net.val_mse)
            break  # the shapes are tried simplest first; this one already fits
    if trained:
        # Simplest shape first among those nearly as accurate as the best: a separable
        # product that fits almost as well as a mixed layer is far likelier to be the law.
        best = min(n.val_mse for n in trained)
        near = lambda n: n.val_mse <= NEAR_BEST_RATIO * best + 1e-14  # noqa: E731
        trained.sort(key=lambda n: (not near(n), 0.0 if near(n) else n.val_mse))
    return trained, (Xt, yt)


#: An output transform is tried when the probe finds the transformed target this many times
#: more additive (unexplained variance of an additive fit) than y itself ...
TRANSFORM_GAIN = 10.0
#: ... in this share of what is left of the budget; the formula found, undone, is refitted
#: on y in this share of what is left after that (a look-alike's many constants would take
#: the whole budget's polishing time from the search on y itself).
TRANSFORM_SHARE = 0.5
TRANSFORM_REFIT_SHARE = 0.1


def _transformed(problem: Problem, opts: SolverOptions, budget: Budget, seed: int,
                 depth: int) -> tuple[list[sympy.Expr], str | None]:
    """Formulas found for z = T(y) under the output transform the probe ranks first
    (`kansr.structure.transforms`), undone exactly and refitted on y, with the transform's
    name; ([], None) when no transform makes y much more additive. 1/y turns a harmonic
    sum 1/(1/a + 1/b) into a sum, y^2 a norm sqrt(a^2 + b^2) + c, sqrt(y) a square."""
    X, y, symbols = problem.X, problem.y, problem.symbols
    # log y is left out: a product law (what log makes additive) is what the separable
    # product shape already fits directly, exactly and fast
    probes = probe_transforms(X, y, [t for t in applicable_transforms(y) if t.name != "log"],
                              rng=np.random.default_rng(seed))
    identity = next((p.score for p in probes if p.transform.name == "identity"), math.inf)
    best = probes[0] if probes else None
    if best is None or best.transform.name == "identity" \
            or best.score * TRANSFORM_GAIN > identity:
        return [], None
    log.info("output transform %s (additive misfit %.3g, y itself %.3g)", best.transform,
             best.score, identity)
    z = best.transform.forward(y)
    try:
        floor = transformed_floor(best.transform, y, z, problem.error_floor)
        sub = solve(Problem(X, z, symbols, floor, transformed=True), opts,
                    budget.slice(TRANSFORM_SHARE), seed, depth + 1)
    except SearchInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - the untransformed search still answers
        log.warning("output transform %s failed: %s: %s", best.transform,
                    type(exc).__name__, exc)
        return [], str(best.transform)
    if sub.front.empty:
        return [], str(best.transform)
    pick = select_best(sub.front, "auto", n_rows=len(z), noisy=sub.noise_floor > 0)["sympy"]
    return (refit_and_polish(best.transform.inverse(pick), symbols, X, y,
                             budget.slice(TRANSFORM_REFIT_SHARE)),
            str(best.transform))


def transformed_floor(transform: OutputTransform, y: np.ndarray, z: np.ndarray,
                      floor: float) -> float:
    """A known error floor of y (relative MSE, e.g. a split part's network error) carried to
    z = T(y): each value's error scaled by T'(y) (central differences), as a share of var(z),
    capped like a part's floor (`recursion.MAX_PART_FLOOR`)."""
    if floor <= 0:
        return 0.0
    step = 1e-6 * (float(np.std(y)) or 1.0)
    lo, hi = y - step, y + step
    ok = transform.applies(lo) and transform.applies(hi)
    slope = (transform.forward(hi) - transform.forward(lo)) / (2 * step) if ok else None
    var_z = float(np.var(z))
    if slope is None or not var_z > 0 or not np.all(np.isfinite(slope)):
        return floor
    return float(min(floor * float(np.var(y)) * float(np.mean(slope ** 2)) / var_z,
                     MAX_PART_FLOOR))


#: Share of what is left that the first network's symbolic stage may use when the recursion
#: could still run after it (the rest is the recursion's).
FIRST_SYMBOLIC_SHARE = 0.5


def _part_solver(problem: Problem, opts: SolverOptions, seed: int, depth: int) -> Callable:
    """solve_part(X, y, symbols, budget, error_floor) -> SolveResult: a part of a split of
    `problem`, one level deeper."""
    def solve_part(X, y, symbols, part_budget, error_floor=0.0):
        return solve(Problem(X, y, symbols, error_floor), opts, part_budget, seed, depth + 1)

    return solve_part


def _split(problem: Problem, opts: SolverOptions, networks: list[TrainedNetwork],
           scaling: Scaling, budget: Budget, seed: int, depth: int, exact: ExactRule,
           check: ReductionCheck, pairs: str = "all") -> tuple[list, object]:
    """The recursion on the most accurate network (see `recursion.separated_formulas`)."""
    solve_part = _part_solver(problem, opts, seed, depth)
    oracle_net = min(networks, key=lambda n: n.val_mse)
    try:
        return separated_formulas(problem.X, problem.y, problem.symbols, oracle_net, scaling,
                                  solve_part, budget, seed, exact, pairs, check)
    except SearchInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - the unsplit search still answers
        log.warning("recursive separation failed: %s: %s", type(exc).__name__, exc)
        return [], None


#: A sum or product probe within this factor of the noise (relative MSE) counts as a fit.
PLAIN_NOISE_FACTOR = 3.0
#: ... and on noise-free data within this (relative MSE), fitted on this grid. Measured on
#: the Feynman laws of two or more inputs (1,000 rows, log-scaled inputs): the plain products
#: fit to 1.8e-10 at most on grid 40 (2.2e-8 on grid 20), the closest other laws to 1.4e-6
#: (1/(exp(h omega / kT) - 1)) and 7.5e-5; on grid 20 with 1e-5 the former passed as plain and
#: waited 25 s for its one-node network's reading. Costs 0.03-0.4 s (2-9 inputs).
PLAIN_GRID, PLAIN_REL_MSE = 40, 1e-8


def _through_combinations(Xt: torch.Tensor, yt: torch.Tensor, noise_rel: float,
                          depth: int) -> bool:
    """Worth the pair-symmetry look before a one-node network is read: inputs that may act
    through combinations of pairs (x*y, x/y, x - y), not a plain sum or product of
    one-variable functions (those read fast), with a level left to split."""
    return Xt.shape[1] >= 2 and depth < MAX_DEPTH and not _plain_one_node(Xt, yt, noise_rel)


def _plain_one_node(Xt: torch.Tensor, yt: torch.Tensor, noise_rel: float) -> bool:
    """y is a sum, or a product up to a line, of one-variable functions (spline fits on the
    screening rows within `PLAIN_REL_MSE`, or within the noise)."""
    X, y = Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS]
    # at least four rows per coefficient: on fewer a fine grid would fit anything
    grid = max(3, min(PLAIN_GRID, len(X) // (4 * X.shape[1]) - 3))
    return min(additive_fit_error(X, y, grid=grid),
               product_fit_error(X, y, grid=grid)) \
        <= max(PLAIN_REL_MSE, PLAIN_NOISE_FACTOR * noise_rel)


#: Share of what is left that the problem without the columns the law ignores gets.
IRRELEVANT_SHARE = 0.8


def _without_irrelevant(problem: Problem, opts: SolverOptions, networks: list[TrainedNetwork],
                        scaling: Scaling, budget: Budget, seed: int, depth: int,
                        check: ReductionCheck) -> tuple[list[sympy.Expr], Split | None]:
    """The problem solved again without the inputs the best network ignores (the data's own
    rows, one or more columns fewer): its formulas are formulas of the whole problem."""
    best = min(networks, key=lambda n: n.val_mse)
    drop = ignored_columns(best, scaling, check, seed)
    if not drop or len(drop) == problem.X.shape[1]:
        return [], None
    keep = [k for k in range(problem.X.shape[1]) if k not in drop]
    names = [s.name for s in problem.symbols]
    log.info("structure: the law ignores %s; solving in %s", [names[k] for k in drop],
             [names[k] for k in keep])
    sub = solve(Problem(problem.X[:, keep], problem.y, [problem.symbols[k] for k in keep],
                        problem.error_floor, problem.transformed), opts,
                budget.slice(IRRELEVANT_SHARE), seed, depth + 1)
    tree = Split("irrelevant", names, 0.0, parts=[sub.decomposition],
                 part_variables=[[names[k] for k in keep]])
    found = list(sub.front["sympy"]) if not sub.front.empty else []
    if found:
        tree.formula = str(found[-1])
    return found, tree


def _unless_interrupted(budget: Budget, run: Callable[[], tuple[list, object]]
                        ) -> tuple[list, object]:
    """run() (a smaller problem's formulas and what it records), or ([], None) after a
    first Ctrl-C, which it marks on the budget: the search then wraps up with what it has."""
    try:
        return run()
    except SearchInterrupted:
        budget.interrupt()
        return [], None


def _settles(found: list[sympy.Expr], symbols, X: np.ndarray, y: np.ndarray,
             noise_rel: float) -> float | None:
    """Does a smaller problem's `found` end the search? Its noise floor if so (0.0 for a
    formula exact to round-off: the data are noise-free), else None."""
    if near_exact(found, symbols, X, y):
        return 0.0
    noisy = noise_floor(noise_rel)
    if noisy and any(near_exact([e], symbols, X, y, exact_rule(noisy, True))
                     and _misfit_is_noise(e, symbols, X, y) for e in found):
        return noisy
    return None


#: A formula at the noise level ends the search early only where its misfit looks like
#: noise: the local fits through neighbouring rows leave at least this share of the
#: residuals' variance. A look-alike's misfit is smooth, and the fits explain it: on
#: noise-free data whose steep curvature the local estimate read as noise (3e-5), a sine of
#: a cubic in place of x/(e^x - 1) ended the search (Feynman III.4.33).
NOISE_LIKE_SHARE = 0.5


def _misfit_is_noise(expr: sympy.Expr, symbols, X: np.ndarray, y: np.ndarray) -> bool:
    """Do y - expr(X) look like independent noise (see `NOISE_LIKE_SHARE`)?"""
    with np.errstate(all="ignore"):
        r = y - evaluate(expr, symbols, X)
    if not np.all(np.isfinite(r)) or np.var(r) == 0:
        return False
    return relative_noise(estimate_noise(X, r), r) >= NOISE_LIKE_SHARE


#: Share of the budget the problem without its power-law factors gets.
POWER_SHARE = 0.8


def _without_power_factors(problem: Problem, opts: SolverOptions, budget: Budget, seed: int,
                           depth: int, check: ReductionCheck
                           ) -> tuple[list[sympy.Expr], Split | None]:
    """The problem solved again without the inputs y is a power of (f = x_k^a F(rest),
    `power_factors`, checked on the data): y / prod x_k^a on the data's own rows in the
    other columns, its formulas times prod x_k^a."""
    factors = power_factors(problem.X, problem.y, seed, check.noise([]))
    if not factors:
        return [], None
    drop = [k for k, _ in factors]
    keep = [k for k in range(problem.X.shape[1]) if k not in drop]
    monomial = sympy.Mul(*[problem.symbols[k] ** sympy.nsimplify(a) for k, a in factors])
    scale = np.prod([problem.X[:, k] ** a for k, a in factors], axis=0)
    names = [s.name for s in problem.symbols]
    log.info("structure: y = %s * F(%s)", monomial, ", ".join(names[k] for k in keep))
    sub = solve(Problem(problem.X[:, keep], problem.y / scale,
                        [problem.symbols[k] for k in keep], problem.error_floor,
                        problem.transformed), opts, budget.slice(POWER_SHARE), seed, depth)
    found = [monomial * e for e in sub.front["sympy"]] if not sub.front.empty else []
    tree = Split("power", names, 0.0, parts=[sub.decomposition],
                 part_variables=[[names[k] for k in keep]])
    if found:
        tree.formula = str(found[-1])
    return found, tree


#: On noisy data a formula within this factor of the noise floor ends the search early (the
#: floor is itself an estimate, good to a few per cent).
NOISE_EXACT_RATIO = 1.1


def exact_rule(floor: float, data_noisy: bool = False) -> ExactRule:
    """When a formula ends the search early: round-off on noise-free data, the floor (the
    noise, or the network's error a split-off part carries) otherwise, since no formula can
    be told from the law below it; on noisy data with few fitted constants."""
    return ExactRule(max(NEAR_EXACT_REL_MSE, NOISE_EXACT_RATIO * floor),
                     MAX_NOISY_EXACT_CONSTANTS if data_noisy else None)


#: On noise-free data a one-node network this close (relative validation MSE) is read
#: before a wider shape trains: a law read from it to round-off needs no wider network
#: (the mixed shape took 5 of 9 s where the separable product gave asin(n sin(theta)))...
EARLY_READ_MSE = 1e-4
#: ... in this share of what is left of the budget.
EARLY_READ_SHARE = 0.3


@dataclass
class _EarlyRead:
    """What `read_first` read from a one-node network before the wider shapes trained."""

    #: the network read (None: none was), its graph, and every formula found
    net: TrainedNetwork | None = None
    graph: nx.DiGraph | None = None
    exprs: list[sympy.Expr] = field(default_factory=list)
    exact: bool = False
    #: the network the pair symmetries were tried on (two inputs), and their tree
    pairs_net: TrainedNetwork | None = None
    #: the network every structure test was tried on after its reading
    split_net: TrainedNetwork | None = None
    tree: object | None = None


def _early_reader(problem: Problem, opts: SolverOptions, scaling: Scaling, budget: Budget,
                  seed: int, depth: int, noise_rel: float, early: _EarlyRead,
                  check: ReductionCheck) -> Callable:
    """`train_networks`' read_first: reads a close one-node network of noise-free data into
    `early`, and says whether the law came out exact to round-off."""
    X, y, symbols = problem.X, problem.y, problem.symbols

    def read_first(net: TrainedNetwork, Xt: torch.Tensor, yt: torch.Tensor) -> bool:
        if (net.val_mse > EARLY_READ_MSE or problem.error_floor > 0
                or noise_floor(noise_rel, net.val_mse) > 0 or budget.interrupted):
            return False
        rule = exact_rule(0.0)
        try:
            if _through_combinations(Xt, yt, noise_rel, depth):  # as `solve` does below
                found, early.tree = _split(problem, opts, [net], scaling, budget, seed, depth,
                                           rule, check, pairs="only")
                early.pairs_net = net
                early.exprs += found
                if near_exact(found, symbols, X, y, rule):
                    early.exact = True
                    return True
            graph, found = network_formulas(
                net.model, Xt, yt, X, y, symbols, scaling, opts.library, opts.engine,
                net.val_mse, opts.symbolic, budget.slice(EARLY_READ_SHARE), rule)
        except SearchInterrupted:
            budget.interrupt()
            return True
        except Exception as exc:  # noqa: BLE001 - the wider shapes still train
            log.warning("symbolic stage failed for %s: %s", net.arch.name, exc)
            return False
        early.net, early.graph = net, graph
        early.exprs += found
        early.exact = near_exact(found, symbols, X, y, rule)
        if not early.exact and depth < MAX_DEPTH and not problem.transformed:
            # The network fits but its edges did not read exactly: its structures (a product
            # network's factors) become parts, each matched directly, more strongly than an
            # edge is read (exp(-1/x) came out as tanh(log x) on the edge, exactly as a
            # part), before a wider shape trains (a mixed one took 6 s, only to pass the
            # same split). Not under an output transform, which is tried for the simple law
            # it promises: there the parts of a sum of squares came out as cosines and took
            # the time the search on y itself needed (Feynman I.8.14 with units).
            found, tree = _unless_interrupted(budget, lambda: _split(
                problem, opts, [net], scaling, budget, seed, depth, rule, check,
                pairs="rest" if early.pairs_net is net else "all"))
            early.split_net = net
            early.exprs += found
            if near_exact(found, symbols, X, y, rule):
                early.tree, early.exact = tree, True
        return early.exact or budget.interrupted

    return read_first


def solve(problem: Problem, opts: SolverOptions, budget: Budget, seed: int = 0,
          depth: int = 0) -> SolveResult:
    """Search for the law behind `problem`: the Pareto front of whole formulas.

    Never raises for a search that found nothing usable: the front then holds formulas
    fitted to the data directly and `last_resort` says why. A first Ctrl-C during the
    search (`SearchInterrupted`, see `budget.soft_interrupts`) ends it with what is done.
    """
    X, y, symbols = problem.X, problem.y, problem.symbols
    scaling = Scaling.fit(X, y, log_inputs=X.shape[1] > 1)
    rng = np.random.default_rng(seed)
    # one input: curvature between neighbours is negligible, average every residual
    data_noise = relative_noise(estimate_noise(X, y, seed, keep=1.0 if X.shape[1] == 1
                                               else KEEP), y)
    noise_rel = max(data_noise, problem.error_floor)
    # reductions of these rows are checked against the data's own local noise, computed once
    # (with one input it is averaged differently, and nothing reduces)
    check = ReductionCheck(X, y, seed, noise=data_noise if X.shape[1] > 1 else None)
    exprs: list[sympy.Expr] = []
    if np.ptp(y) == 0:  # a part of a split can be constant
        return SolveResult(formula_front([sympy.Float(float(y[0]))], symbols, X, y), [],
                           scaling)
    if X.shape[1] == 1 and opts.width is None:
        # with one input the local fits are nearly unbiased: their estimate is the floor
        floor = max(noise_floor(noise_rel), problem.error_floor)
        try:  # the rows themselves are the one edge: matched directly, often exactly
            data_floor = noise_floor(data_noise)
            rule = exact_rule(floor, data_floor > 0)
            exprs += one_variable_formulas(X, y, symbols, scaling, opts.library,
                                           opts.symbolic, budget, rule,
                                           exact_rule(problem.error_floor).rel_tol,
                                           data_floor)
        except SearchInterrupted:
            budget.interrupt()
        if near_exact(exprs, symbols, X, y, rule):
            log.info("one-variable law matched directly: no network trained")
            return SolveResult(formula_front(exprs, symbols, X, y), [], scaling,
                               interrupted=budget.interrupted, noise_floor=floor)
    decomposition = None
    screen = np.random.default_rng(seed).permutation(len(X))[:SCREEN_ROWS]
    # (with the noise estimate, I.9.18's 9 inputs passed as a plain product)
    # (a part's network is nobody's model: there plain products take the power factors too)
    combined = X.shape[1] >= 2 and opts.width is None and (depth > 0 or not _plain_one_node(
        torch.as_tensor(scaling.x(X[screen])), torch.as_tensor(scaling.y(y[screen])[:, None]),
        0.0))
    if combined:
        # Inputs the law is a power of: the smaller problem on the same rows comes first
        # (G*m1*m2/r^2 leaves the distance alone; a network of all inputs must fit every
        # factor). Not where y is a plain product or sum of one-variable functions: the
        # one-node network reads those fast, and gives the fitted model its network.
        found, decomposition = _unless_interrupted(budget, lambda: _without_power_factors(
            problem, opts, budget, seed, depth, check))
        exprs += found
        settled = _settles(found, symbols, X, y, noise_rel)
        if settled is not None:
            return SolveResult(formula_front(exprs, symbols, X, y), [], scaling,
                               interrupted=budget.interrupted, noise_floor=settled,
                               decomposition=decomposition)
        if decomposition is not None:
            budget = budget.slice(1.0)  # what the smaller problem left, in the usual shares
    transform = None
    if combined and depth < MAX_DEPTH:
        # Pair symmetries the data show (x*y, x/y, x - y; found from local slopes, checked
        # on the data): the smaller problem comes before any network or output transform.
        # Found on a network, they waited for a wide mixed shape (11-13 s on three to five
        # inputs) to fit; after a transform, the part of one input had 2 s left.
        found, tree = _unless_interrupted(budget, lambda: data_pair_formulas(
            X, y, symbols, _part_solver(problem, opts, seed, depth), budget, seed, check,
            data_noise))
        exprs += found
        # only a law exact to round-off ends the search here: on noisy data the part is one
        # variable sooner, where a look-alike within the noise passes (cot(u/22) for the 1/u
        # of Coulomb's law at 1 % noise); it then competes with what the networks give
        if near_exact(found, symbols, X, y):
            log.info("law found through the data's pair symmetries: no network trained")
            return SolveResult(formula_front(exprs, symbols, X, y), [], scaling,
                               interrupted=budget.interrupted, noise_floor=0.0,
                               decomposition=tree)
        if tree is not None:
            decomposition = tree
            budget = budget.slice(1.0)
    if not problem.transformed and X.shape[1] >= 2 and opts.width is None:
        # A transform the cheap probe strongly favours is solved first, in half the budget:
        # the networks on y itself would spend it fitting a look-alike. A split's part gets
        # one too: sqrt(u^2 + (w - 1)^2) left by a difference symmetry is a sum after y^2.
        found, transform = _unless_interrupted(budget, lambda: _transformed(
            problem, opts, budget, seed, depth))
        exprs += found
        settled = _settles(found, symbols, X, y, noise_rel)
        if settled is not None:
            log.info("law found under the output transform %s", transform)
            return SolveResult(formula_front(exprs, symbols, X, y), [], scaling,
                               interrupted=budget.interrupted, noise_floor=settled,
                               transform=transform)
        if transform is not None:
            # the search on y itself: what the transform left, in its usual shares (its
            # stages' deadlines are shares of the budget, most of them past by now)
            budget = budget.slice(1.0)
    early = _EarlyRead()
    read_first = (_early_reader(problem, opts, scaling, budget, seed, depth, noise_rel, early,
                                check)
                  if X.shape[1] >= 2 and opts.width is None else None)
    networks, (Xt, yt) = train_networks(problem, opts, scaling, budget, rng, noise_rel,
                                        read_first)
    exprs += early.exprs
    if early.exact:
        log.info("law found before the wider shapes trained: they are not")
        return SolveResult(formula_front(exprs, symbols, X, y), networks, scaling,
                           graph=early.graph, interrupted=budget.interrupted,
                           decomposition=early.tree, transform=transform)
    best_val = min((n.val_mse for n in networks), default=math.inf)
    floor = max(noise_floor(noise_rel, best_val), problem.error_floor)
    log.info("noise: local estimate %.3g, best network %.3g (relative MSE) -> floor %.3g",
             noise_rel, best_val, floor)
    tol = exact_rule(floor, noise_floor(data_noise, best_val) > 0)
    result = SolveResult(pd.DataFrame(), networks, scaling, noise_floor=floor,
                         decomposition=early.tree or decomposition, transform=transform)
    failures: list[str] = []
    pairs_looked = False  # the pairs-only look ran on the most accurate network
    can_split = depth < MAX_DEPTH and X.shape[1] >= 2 and bool(networks)
    if can_split:
        # An input the law ignores: the smaller problem on the same rows comes first (a
        # network reads an idle input as noise to fit, with look-alike terms).
        found, tree = _unless_interrupted(budget, lambda: _without_irrelevant(
            problem, opts, networks, scaling, budget, seed, depth, check))
        exprs += found
        result.decomposition = tree or result.decomposition
        if near_exact(found, symbols, X, y, tol):
            result.front = formula_front(exprs, symbols, X, y)
            result.interrupted = budget.interrupted
            return result
    if can_split and not networks[0].arch.one_node:
        # Structure before search: the best network is a wide mixed shape, whose reading
        # takes most of the budget and rarely gives the law; a structure it passes makes
        # smaller problems the one-node shapes read exactly.
        can_split = False
        exprs_split, tree = _unless_interrupted(budget, lambda: _split(
            problem, opts, networks, scaling, budget, seed, depth, tol, check))
        result.decomposition = tree or result.decomposition  # keep an earlier drop's tree
        exprs += exprs_split
        if near_exact(exprs_split, symbols, X, y, tol) or budget.interrupted \
                or problem.transformed:
            # (a transform is tried for the simple law it promises; where its target needs
            # a mixed network that no structure splits, reading that network is what the
            # search on y itself does too, with the time this one would take from it)
            networks_to_read: list[TrainedNetwork] = []
        else:
            networks_to_read = networks
    else:
        networks_to_read = networks
        # (not where the early read tried them on the network `_split` takes as its oracle)
        look = can_split and _through_combinations(Xt, yt, noise_rel, depth)
        pairs_looked = look and min(networks, key=lambda n: n.val_mse) is early.pairs_net
        if look and not pairs_looked:
            # Inputs that act through pair combinations (x*y, x/y, x - y), each checked on
            # the data: the smaller problem comes first. Two inputs leave one, matched directly
            # in a second, where reading a one-node network's outer edge (3u/(3 - u) of
            # u = x*y) can take half the budget; more leave a problem of fewer inputs, which
            # the networks fit better than the whole (a 6-input law fitted to only 1e-3
            # passes nearly every network test). (A plain sum or product of one-variable
            # functions reads fast, and gives the network's graph.)
            pairs_looked = True
            found, tree = _unless_interrupted(budget, lambda: _split(
                problem, opts, networks, scaling, budget, seed, depth, tol, check,
                pairs="only"))
            exprs += found
            if tree is not None:
                result.decomposition = tree
            if near_exact(found, symbols, X, y, tol) or budget.interrupted:
                networks_to_read = []
    for k, net in enumerate(networks_to_read):
        if k and (budget.expired(SYMBOLIC_SHARE)
                  or net.val_mse > FAR_WORSE_RATIO * best_val + 1e-10):
            continue  # out of time, or a far worse network that rarely gives a better formula
        # the first network leaves time for the recursion after it
        stage_budget = budget.slice(FIRST_SYMBOLIC_SHARE) if can_split and k == 0 else budget
        try:
            graph, found = ((early.graph, []) if net is early.net else  # read already
                            network_formulas(net.model, Xt, yt, X, y, symbols, scaling,
                                             opts.library, opts.engine, net.val_mse,
                                             opts.symbolic, stage_budget, tol))
        except SearchInterrupted:
            budget.interrupt()
            break
        except Exception as exc:  # noqa: BLE001 - one architecture failing must not lose the others
            log.warning("symbolic stage failed for %s: %s", net.arch.name, exc)
            failures.append(f"{net.arch.name}: {type(exc).__name__}: {exc}")
            continue
        result.graph = result.graph if result.graph is not None else graph
        exprs += found
        if near_exact(found, symbols, X, y, tol):
            break  # the best network already gave an exact-looking law
        if k == 0 and can_split and not budget.expired(SYMBOLIC_SHARE) \
                and min(networks, key=lambda n: n.val_mse) is not early.split_net:
            try:
                found, tree = _split(problem, opts, networks, scaling, budget, seed, depth,
                                     tol, check, pairs="rest" if pairs_looked else "all")
                result.decomposition = tree or result.decomposition
            except SearchInterrupted:
                budget.interrupt()
                break
            exprs += found
            if near_exact(found, symbols, X, y, tol):
                break
    result.front = formula_front(exprs, symbols, X, y)
    if result.front.empty:
        # A result, not an exception after the whole budget: formulas fitted to the data
        # directly, said loudly. (Seen in the Feynman run: I.18.4, I.50.26.)
        why = ("the search was interrupted before any formula was composed"
               if budget.interrupted and not exprs else
               "no network could be trained on so few rows" if not networks else
               "no formula could be composed from the trained networks" if not exprs else
               "no composed formula evaluates to finite values on the data (e.g. a log "
               "or sqrt left its domain)")
        if failures:
            why += " (" + "; ".join(failures) + ")"
        if problem.transformed:
            # the caller's search on y itself answers; a direct fit of T(y) would only take
            # its time
            log.info("%s under the output transform", why)
            result.last_resort = why
            result.interrupted = budget.interrupted
            return result
        log.warning("%s: fitting the data directly", why)
        engine = None if budget.interrupted else opts.engine
        result.front = formula_front(direct_formulas(X, y, symbols, engine), symbols, X, y)
        result.last_resort = why
    result.interrupted = budget.interrupted
    return result
