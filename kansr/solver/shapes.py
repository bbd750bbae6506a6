"""Network shapes the search tries, and training one shape on the data.

Training a shape: a few restarts screened on a subsample (trained together, `fit_batched`), then (if sparsified) the sparsity
fit and pruning, a plain fit, and refinement onto finer grids. The grid is sized to the data:
a shape whose parameters the rows cannot pin down trains on a coarser grid, and is skipped
(None) only when even the coarsest grid is too large.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import torch

from ..kan import KAN, fit, fit_batched, prune
from ..kan.init import init_separable_product, product_fit_error
from .budget import SearchInterrupted
from .noise import at_noise_floor

log = logging.getLogger(__name__)

SCREEN_ROWS = 1000  # rows used to compare restarts of one architecture
# A separable product whose ALS start (linear output edge) is this good keeps that edge an
# exact line: left free, it bends slightly and the factors bend with it into look-alikes
# (n*kb*T/V came out as cos(... tan(...) * sqrt(T + 44.7) ...)).
PRODUCT_LINE_REL_MSE = 1e-5
# ... judged by an ALS fit on this fine grid: on the coarse training grid the splines alone
# miss 1e-5 for a factor such as exp(sin(pi*x)), and the edge was left free to bend.
PRODUCT_LINE_GRID = 20
#: Training rows needed per network parameter (`kansr.kan.fit` refuses fewer).
ROWS_PER_PARAM = 0.5


@dataclass
class Architecture:
    """A network shape to try.

    `width` as KAN accepts it; `mult_arity` of its product nodes; `separable` wires input r
    only to sub-node r of the first layer (so a product node computes prod_r g_r(x_r));
    `sparsify` trains with the sparsity penalty and prunes before refining.
    """

    name: str
    width: list
    mult_arity: int = 2
    separable: bool = False
    sparsify: bool = True

    @property
    def one_node(self) -> bool:
        """Every hidden layer is one node (a sum or a product): the formula is read one
        input's edge at a time, f(sum_i g_i(x_i)) or prod_i g_i(x_i), quickly and often
        exactly; a wider mixed shape's reading is slow and rarely the law by itself."""
        return all((sum(w) if isinstance(w, (tuple, list)) else w) == 1
                   for w in self.width[1:-1])


@dataclass
class TrainSettings:
    """How one shape is trained (the estimator's parameters of the same names)."""

    grid: int = 5
    k: int = 3
    refine: tuple[int, ...] = (10, 20)
    steps: int = 50
    lamb: float = 1e-3
    node_th: float = 1e-2
    edge_th: float = 3e-2
    n_restarts: int = 3
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    progress: bool = False


@dataclass
class TrainedNetwork:
    """A trained shape: the network, its validation relative MSE, and whether training was
    cut short by Ctrl-C."""

    arch: Architecture
    model: KAN
    val_mse: float
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def default_architectures(n_in: int) -> list[Architecture]:
    """Shapes tried when the user gives no width.

    Most physical laws are an outer function of a sum, f(sum_i g_i(x_i)), or a separable
    product prod_i g_i(x_i): both are tried with that structure fixed (nothing to prune, so
    nothing for sparsification to get wrong); a mixed sum/product layer, sparsified and
    pruned, covers the rest.
    """
    if n_in == 1:
        return [Architecture("single", [1, 1], sparsify=False),
                Architecture("composed", [1, 1, 1], sparsify=False)]
    archs = [Architecture("additive", [n_in, 1, 1], sparsify=False),
             Architecture("product", [n_in, (0, 1), 1], mult_arity=n_in, separable=True,
                          sparsify=False)]
    if n_in > 2:
        archs.append(Architecture("mixed", [n_in, (n_in, 2), (1, 1), 1]))
    else:
        archs.append(Architecture("mixed", [n_in, (2, 1), 1]))
    return archs


def _build(arch: Architecture, grid: int, s: TrainSettings, seed: int) -> KAN:
    model = KAN(arch.width, grid=grid, k=s.k, mult_arity=arch.mult_arity, seed=seed,
                dtype=s.dtype, device=s.device)
    if arch.separable:
        model.wire_diagonal_inputs()
    return model


def fitting_grid(arch: Architecture, s: TrainSettings, n_rows: int) -> int | None:
    """The finest grid <= s.grid whose network the rows can pin down (None: none can)."""
    for grid in range(s.grid, 0, -1):
        n_params = _build(arch, grid, s, 0).n_params()
        if n_rows >= max(ROWS_PER_PARAM * n_params, 2):
            return grid
    return None


def train_shape(arch: Architecture, Xt: torch.Tensor, yt: torch.Tensor, Xv: torch.Tensor,
                yv: torch.Tensor, s: TrainSettings, deadline: float | None = None,
                noise_rel: float = 0.0) -> TrainedNetwork | None:
    """Sparsify, prune, retrain, refine; None when the data are too few for this shape.

    Xt (N, d), yt (N, 1) in network units; Xv, yv the validation rows. Refinement stops
    once the validation error reaches the estimated noise (`noise_rel`, relative to the
    variance of y) or gets worse on a finer grid (the coarser network is kept). The first Ctrl-C
    (`SearchInterrupted`) ends training and returns the network as it is (its best state).
    """
    grid = fitting_grid(arch, s, len(Xt))
    if grid is None:
        log.info("shape %s skipped: %d training rows are too few for its coarsest grid",
                 arch.name, len(Xt))
        return None
    notes = [] if grid == s.grid else [f"grid {grid} (the data are too few for {s.grid})"]
    common = dict(progress=s.progress, X_val=Xv, y_val=yv, seed=s.seed,
                  patience=max(s.steps // 5, 5), loss_tol=1e-14, deadline=deadline,
                  min_rows_per_param=ROWS_PER_PARAM)

    def rel_val(m: KAN) -> float:
        with torch.no_grad():
            return float(torch.mean((m(Xv) - yv) ** 2) / torch.var(yv, correction=0))

    model = None
    try:
        # Small KANs can stall in a poor basin from some initialisations: a few short
        # restarts on the coarse grid, keeping the best, make the result seed-robust.
        # A separable product starts from its alternating-least-squares fit: deterministic,
        # so one start is enough.
        n_starts = 1 if arch.separable else max(s.n_restarts, 1)
        screen_x, screen_y = Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS]
        line_ok = arch.separable and product_fit_error(
            screen_x, screen_y, grid=PRODUCT_LINE_GRID) <= PRODUCT_LINE_REL_MSE
        candidates = [_build(arch, grid, s, s.seed + r) for r in range(n_starts)]
        if arch.separable:
            init_separable_product(candidates[0], screen_x, screen_y,
                                   fix_line_below=math.inf if line_ok else 0.0)
        model = candidates[0]
        # restarts only screen initialisations: a subsample is enough and much cheaper, and
        # all of them train at once (`fit_batched`: one compiled pass per evaluation)
        screen = dict(common, steps=max(s.steps // 2, 1), lamb=s.lamb if arch.sparsify else 0.0)
        if n_starts > 1:
            fit_batched(candidates, screen_x, screen_y, **screen)
        else:
            fit(model, screen_x, screen_y, **screen)
        model = min(candidates, key=rel_val)  # the first of equals: the lowest seed
        if arch.sparsify:
            fit(model, Xt, yt, steps=s.steps, lamb=s.lamb, **common)
            # inputs stay (their unimportant edges are masked): the caller's rows keep every
            # column, and an input the law ignores is the relevance test's to drop (a pruned
            # input made the next fit fail on Feynman II.38.3 with units at 1 % noise)
            model = prune(model, Xt, node_th=s.node_th, edge_th=s.edge_th)
        fit(model, Xt, yt, steps=s.steps, **common)
        current = rel_val(model)
        for g in s.refine:
            if at_noise_floor(current, noise_rel):
                notes.append(f"refinement stopped at the noise floor ({current:.3g})")
                break
            finer = copy.deepcopy(model).refine(g, Xt)
            if len(Xt) < ROWS_PER_PARAM * finer.n_params():
                notes.append(f"refinement to grid {g} skipped (too few rows)")
                break
            fit(finer, Xt, yt, steps=s.steps, update_grid=False, **common)
            if rel_val(finer) > current:
                # a finer grid that validates worse fits noise (or failed to train)
                notes.append(f"grid {g} validated worse: the coarser network is kept")
                break
            model, current = finer, rel_val(finer)
    except SearchInterrupted:
        if model is None:
            raise
        return TrainedNetwork(arch, model, rel_val(model), interrupted=True, notes=notes)
    return TrainedNetwork(arch, model, rel_val(model), notes=notes)
