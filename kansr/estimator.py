"""`KANSR`: the scikit-learn style estimator that runs the whole pipeline.

data -> scale -> train KANs (a few architectures) -> prune -> refine -> graph
     -> match edges / fallback -> choose formulas -> compose -> refit and snap constants
     -> Pareto front of whole formulas -> the pick.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import sympy
import torch
from threadpoolctl import threadpool_limits

from .compose.choose import alternatives, annotate_graph, swap_edge, symbolize
from .compose.constants import (clean_expression, gather_constants, pareto_front,
                              polish_expression, refit_constants, refit_deadline,
                              select_best)
from .compose.formula import graph_to_sympy
from .fallback import get_engine
from .graph import network_to_graph
from .kan.init import additive_fit_error, init_separable_product, product_fit_error
from .kan import KAN, fit, prune
from .match.library import load_library

log = logging.getLogger(__name__)

MIN_ROWS = 10
# Relative MSE below which a formula reproduces the data to float64 round-off: "exact".
EXACT_REL_MSE = 1e-24
# Formulas with more free constants than this are not snapped (each snap refits them all).
MAX_SNAP_CONSTANTS = 24
# Formulas with more free constants than this are not refitted either.
MAX_REFIT_CONSTANTS = 60
POLISH_SHARE = 0.95  # snapping constants stops at this share of max_time
#: Without max_time, refitting and snapping one network's formulas stops after this many
#: seconds: a formula with many constants can otherwise refit for many minutes.
POLISH_BUDGET_S = 120.0
GOOD_VAL_MSE = 1e-7  # a network this close (relative validation MSE) ends the shape search
SCREEN_ROWS = 1000  # rows used to compare restarts of one architecture
# A separable product whose ALS start (linear output edge) is this good keeps that edge an
# exact line: left free, it bends slightly and the factors bend with it into look-alikes
# (n*kb*T/V came out as cos(... tan(...) * sqrt(T + 44.7) ...)).
PRODUCT_LINE_REL_MSE = 1e-5
# ... judged by an ALS fit on this fine grid: on the coarse training grid the splines alone
# miss 1e-5 for a factor such as exp(sin(pi*x)), and the edge was left free to bend.
PRODUCT_LINE_GRID = 20


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


def _as_frame(X, variable_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Validate X (array or DataFrame) into a float64 (N, d) array and its variable names."""
    if isinstance(X, pd.DataFrame):
        bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
               or pd.api.types.is_bool_dtype(X[c])]
        if bad:
            raise TypeError(f"non-numeric columns in X: {bad}; convert or drop them")
        names = [str(c) for c in X.columns] if variable_names is None else list(variable_names)
        arr = X.to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(X)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"X must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (rows, variables), got shape {arr.shape}")
        names = list(variable_names) if variable_names is not None else \
            [f"x{i}" for i in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} variable names for {arr.shape[1]} columns")
    if len(set(names)) != len(names):
        raise ValueError(f"variable names must be unique, got {names}")
    return arr, names


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.nonzero(bad.reshape(len(a), -1).any(axis=1))[0][:5].tolist()
        kind = "NaN" if np.isnan(a).any() else "inf"
        raise ValueError(f"{name} contains {kind} values (first bad rows: {rows}); "
                         "drop or impute them before fitting")


def validate_data(X, y, variable_names: Sequence[str] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Check a training table; returns X (N, d) float64, y (N,) float64 and the names."""
    arr, names = _as_frame(X, variable_names)
    yv = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    if yv.dtype.kind not in "biuf":
        raise TypeError(f"y must be numeric, got dtype {yv.dtype}")
    yv = yv.astype(np.float64)
    if yv.ndim == 2 and yv.shape[1] == 1:
        yv = yv[:, 0]
    if yv.ndim != 1:
        raise ValueError(f"y must be one column (N,) or (N, 1), got shape {yv.shape}")
    if len(arr) != len(yv):
        raise ValueError(f"X has {len(arr)} rows but y has {len(yv)}")
    _check_finite("X", arr)
    _check_finite("y", yv)
    if len(arr) < MIN_ROWS:
        raise ValueError(f"too few rows: {len(arr)} (need at least {MIN_ROWS})")
    if np.ptp(yv) == 0:
        raise ValueError("y is constant: there is no law to discover (the answer is "
                         f"y = {yv[0]!r})")
    flat = [n for n, col in zip(names, arr.T) if np.ptp(col) == 0]
    if flat:
        raise ValueError(f"constant input columns {flat}: drop them (they cannot be told "
                         "apart from a constant)")
    return arr, yv, names


class KANSR:
    """Discover a closed-form law y = f(X) with a Kolmogorov-Arnold Network front end.

    Parameters
    ----------
    width : list or None
        KAN shape, e.g. ``[2, 5, 1]`` or ``[2, (0, 1), 1]`` (``(n_sum, n_mult)`` per layer).
        None tries a few shapes: additive f(sum g_i(x_i)) and separable product
        prod g_i(x_i) (in the order two linear probes of the data favour; the product starts
        from its alternating-least-squares fit), then a mixed sum/product layer that is
        sparsified and pruned. A shape that fits to 1e-7 (relative) ends the search.
    grid, k : coarse grid intervals and spline order. refine : finer grids to continue on.
    steps : LBFGS steps per training phase. lamb : sparsity weight while sparsifying.
    library : None (default library), a TOML path or a `kansr.match.Library`.
    fallback : "auto", "pysr", "operon" or None: engine for edges no primitive explains.
    selection : rule picking one formula from the Pareto front ("best", "accuracy",
        "parsimony"; see `kansr.compose.constants.select_best`).
    random_state : seed; same seed, same result. device, dtype : where the network runs.
    max_time : soft budget in seconds: training stops at half of it (the shapes get 1/2,
        1/4, ... of that half; later ones are skipped), per-edge trials at 80% (edges then
        take their best library match untuned), snapping constants at 95%. Without it,
        refitting and snapping each network's formulas still stops after
        ``POLISH_BUDGET_S`` (120 s).
    max_rows : training rows the networks see (a seeded subsample; constants use all rows).
    n_restarts : initialisations tried per architecture on the coarse grid (best kept).
    n_alternatives : near-tied edge options per network also composed into whole formulas
        and compared on the data (the Pareto front holds them all).
    n_threads : threads of torch and of the BLAS libraries (threadpoolctl) while fitting:
        small networks run fastest on one thread, and two BLAS threads beside another busy
        process made a [4, 16, 16, 1] fit 2.9x slower (8.0 s against 2.8 s); None leaves
        both alone.
    verbose : show progress bars and log each stage.

    Attributes (after fit)
    ----------------------
    equations_ : Pareto front of whole formulas (sympy, error, complexity); best_ : its chosen
        row (see ``selection``). kan_ : the trained network of the best shape. graph_ : the
        symbolic graph of the first network whose symbolic stage ran (None if none did).
        architectures_ : the shapes trained and their validation errors.
    last_resort_ : None, or, when no network gave a finite formula, why. The front then holds
        formulas fitted to the data directly (the fallback engine's and a least-squares
        line), and a warning is logged.
    """

    def __init__(self, width: list | None = None, grid: int = 5, k: int = 3,
                 refine: Sequence[int] = (10, 20), steps: int = 50, lamb: float = 1e-3,
                 node_th: float = 1e-2, edge_th: float = 3e-2, library: Any = None,
                 fallback: str | None = "auto", top_k: int = 3, complexity_weight: float = 0.3,
                 selection: str = "best", random_state: int = 0, device: str = "cpu",
                 dtype: str = "float64", max_time: float | None = None,
                 max_rows: int = 3000, n_restarts: int = 3, n_alternatives: int = 2, n_threads: int | None = 1,
                 verbose: bool = False) -> None:
        self.width = width
        self.grid = grid
        self.k = k
        self.refine = refine
        self.steps = steps
        self.lamb = lamb
        self.node_th = node_th
        self.edge_th = edge_th
        self.library = library
        self.fallback = fallback
        self.top_k = top_k
        self.complexity_weight = complexity_weight
        self.selection = selection
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.max_time = max_time
        self.max_rows = max_rows
        self.n_restarts = n_restarts
        self.n_alternatives = n_alternatives
        self.n_threads = n_threads
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn protocol
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn protocol: clone, grid search)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> "KANSR":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"unknown parameter {key!r} for KANSR")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items()
                   if v != inspect.signature(type(self).__init__).parameters[k].default}
        return f"KANSR({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, variable_names: Sequence[str] | None = None) -> "KANSR":
        """Discover the law behind X (N, d) -> y (N,). DataFrame columns name the variables."""
        threads = torch.get_num_threads()
        blas = contextlib.nullcontext()
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
            # the compiled layers multiply through numpy's/scipy's OpenBLAS, not torch
            blas = threadpool_limits(limits=self.n_threads, user_api="blas")
        try:
            with blas:
                return self._fit(X, y, variable_names)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, X, y, variable_names: Sequence[str] | None) -> "KANSR":
        t0 = self._t0 = time.perf_counter()
        Xa, ya, names = validate_data(X, y, variable_names)
        self.variable_names_ = names
        self.symbols_ = [sympy.Symbol(n) for n in names]
        self.n_features_in_ = Xa.shape[1]
        rng = np.random.default_rng(self.random_state)
        lo, hi = Xa.min(axis=0), Xa.max(axis=0)
        self.x_center_, self.x_scale_ = (hi + lo) / 2, (hi - lo) / 2
        self.y_center_, self.y_scale_ = float(ya.mean()), float(ya.std())
        Xs = (Xa - self.x_center_) / self.x_scale_
        ys = (ya - self.y_center_) / self.y_scale_
        order = rng.permutation(len(Xs))
        n_val = max(int(0.2 * len(Xs)), 1)
        val, train = order[:n_val], order[n_val:][: self.max_rows]
        torch_dtype = torch.float64 if self.dtype == "float64" else torch.float32
        t = lambda a: torch.as_tensor(a, dtype=torch_dtype, device=self.device)  # noqa: E731
        Xt, yt, Xv, yv = t(Xs[train]), t(ys[train, None]), t(Xs[val]), t(ys[val, None])
        library = load_library(self.library)
        engine = get_engine(self.fallback, random_state=self.random_state,
                            time_limit=5.0) if self.fallback else None

        if self.width is not None:
            archs = [Architecture("given", list(self.width), sparsify=self.lamb > 0)]
        else:
            archs = default_architectures(Xa.shape[1])
            if Xa.shape[1] >= 2:
                # Cheap linear probes (milliseconds) decide whether the additive or the
                # separable-product shape trains first: under a time budget, order matters.
                probe = {"additive": additive_fit_error(Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS]),
                         "product": product_fit_error(Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS])}
                log.info("structure probes (relative MSE): %s", probe)
                archs.sort(key=lambda a: probe.get(a.name, math.inf))
        trained = []
        for k_arch, arch in enumerate(archs):
            # Shapes get halving shares of the training half of max_time (1/2, 1/4, ...,
            # the last takes what is left; time one finishes early passes on): the first,
            # most promising shape trains properly, a slow one cannot starve the others.
            share = 1.0 if k_arch == len(archs) - 1 else 1.0 - 0.5 ** (k_arch + 1)
            train_deadline = self._deadline(t0, 0.5 * share)
            if trained and train_deadline is not None and time.perf_counter() > train_deadline:
                log.info("time budget: skipping architecture %s", arch.name)
                break
            model, val_mse = self._train(arch, Xt, yt, Xv, yv, train_deadline)
            log.info("architecture %s -> %s, validation rel. MSE %.3g", arch.name, model, val_mse)
            trained.append((val_mse, arch, model))
            if val_mse < GOOD_VAL_MSE:
                log.info("architecture %s fits to %.3g: later shapes skipped", arch.name, val_mse)
                break  # the shapes are tried simplest first; this one already fits
        # Simplest shape first among those nearly as accurate as the best (within 10x on
        # validation): a separable product that fits almost as well as a mixed layer is far
        # likelier to be the law, and symbolizing it first often ends the search early.
        best_val = min(r[0] for r in trained)
        near = lambda r: r[0] <= 10 * best_val + 1e-14  # noqa: E731
        # stable sort: near-best shapes keep their (simplest-first) order, the rest by error
        trained.sort(key=lambda r: (not near(r), 0.0 if near(r) else r[0]))
        self.architectures_ = pd.DataFrame(
            [{"name": a.name, "width": str(m.width), "val_mse": v} for v, a, m in trained])
        self.kan_ = trained[0][2]

        rows = []
        self.graph_, self.last_resort_ = None, None
        failures: list[str] = []
        for k_arch, (val_mse, arch, model) in enumerate(trained):
            sym_deadline = self._deadline(t0, 0.8)
            if k_arch and sym_deadline is not None and time.perf_counter() > sym_deadline:
                break  # another network's symbolic stage would overrun max_time
            if k_arch and val_mse > 100 * best_val + 1e-10:
                continue  # far worse networks rarely give a better formula
            try:
                graph, exprs = self._symbolic(model, Xt, yt, library, engine, Xa, ya,
                                              val_mse, sym_deadline)
            except Exception as exc:  # one architecture failing must not lose the others
                log.warning("symbolic stage failed for %s: %s", arch.name, exc)
                failures.append(f"{arch.name}: {type(exc).__name__}: {exc}")
                continue
            if self.graph_ is None:  # the first network that got through
                self.graph_ = graph
            rows += [(e, arch.name) for e in exprs]
            if self._near_exact(exprs, Xa, ya):
                break  # the best network already gave an exact-looking law
        self.equations_ = self._front(rows, Xa, ya)
        if self.equations_.empty:
            # A result, not an exception after the whole budget: formulas fitted to the data
            # directly, said loudly. (Seen in the Feynman run: I.18.4, I.50.26.)
            why = ("no formula could be composed from the trained networks" if not rows else
                   "no composed formula evaluates to finite values on the data (e.g. a log "
                   "or sqrt left its domain)")
            if failures:
                why += " (" + "; ".join(failures) + ")"
            log.warning("%s: fitting the data directly (fallback engine, least-squares "
                        "line); the trained network is still in kan_", why)
            self.equations_ = self._front(self._last_resort(Xa, ya, engine), Xa, ya)
            self.last_resort_ = why
        self.best_ = select_best(self.equations_, rule=self.selection)
        self.seconds_ = time.perf_counter() - t0
        return self

    def _deadline(self, t0: float, share: float) -> float | None:
        return None if self.max_time is None else t0 + share * self.max_time

    def _train(self, arch: Architecture, Xt, yt, Xv, yv, deadline: float | None = None
               ) -> tuple[KAN, float]:
        """Sparsify, prune, retrain, refine: returns the network and its validation rel. MSE."""
        common = dict(progress=self.verbose, X_val=Xv, y_val=yv, seed=self.random_state,
                      patience=max(self.steps // 5, 5), loss_tol=1e-14, deadline=deadline)

        def rel_val(m: KAN) -> float:
            with torch.no_grad():
                return float(torch.mean((m(Xv) - yv) ** 2) / torch.var(yv))

        # Small KANs can stall in a poor basin from some initialisations: a few short
        # restarts on the coarse grid, keeping the best, make the result seed-robust.
        starts = []
        # A separable product starts from its alternating-least-squares fit: deterministic,
        # so one start is enough.
        n_starts = 1 if arch.separable else max(self.n_restarts, 1)
        line_ok = arch.separable and product_fit_error(
            Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS], grid=PRODUCT_LINE_GRID) <= PRODUCT_LINE_REL_MSE
        for r in range(n_starts):
            model = KAN(arch.width, grid=self.grid, k=self.k, mult_arity=arch.mult_arity,
                        seed=self.random_state + r, dtype=self.dtype, device=self.device)
            if arch.separable:
                with torch.no_grad():
                    first = model.layers[0]
                    first.mask.zero_()
                    first.mask[:, : first.in_dim].fill_diagonal_(1.0)
                init_separable_product(model, Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS],
                                       fix_line_below=math.inf if line_ok else 0.0)
            # restarts only screen initialisations: a subsample is enough and much cheaper
            fit(model, Xt[:SCREEN_ROWS], yt[:SCREEN_ROWS], steps=max(self.steps // 2, 1),
                lamb=self.lamb if arch.sparsify else 0.0, **common)
            starts.append((rel_val(model), r, model))
        model = min(starts, key=lambda s: s[:2])[2]
        if arch.sparsify:
            fit(model, Xt, yt, steps=self.steps, lamb=self.lamb, **common)
            model = prune(model, Xt, node_th=self.node_th, edge_th=self.edge_th,
                          prune_inputs=True)
        fit(model, Xt, yt, steps=self.steps, **common)
        for g in self.refine:
            model.refine(g, Xt)
            fit(model, Xt, yt, steps=self.steps, update_grid=False, **common)
        return model, rel_val(model)

    def _symbolic(self, model: KAN, Xt, yt, library, engine, Xa, ya, val_mse: float,
                  deadline: float | None = None) -> tuple[nx.DiGraph, list[sympy.Expr]]:
        """Graph, per-edge choice, composition in original units, constants refit and snapped."""
        names = [self.variable_names_[c] for c in model.input_ids]
        graph = network_to_graph(model, Xt, names, seed=self.random_state)
        sym_model, records = symbolize(model, Xt, yt, library, engine, top_k=self.top_k,
                                       complexity_weight=self.complexity_weight,
                                       seed=self.random_state, deadline=deadline,
                                       input_maps=[(float(self.x_center_[c]),
                                                    float(self.x_scale_[c]))
                                                   for c in model.input_ids])
        n_alt = self.n_alternatives
        if deadline is not None and time.perf_counter() > deadline:
            n_alt = 0
        variants = [(sym_model, records)] + [
            swap_edge(sym_model, records, r, k, Xt, yt)
            for r, k in alternatives(records, limit=n_alt)]
        exprs, first_graph = [], None
        polish_deadline = (time.perf_counter() + POLISH_BUDGET_S if self.max_time is None
                           else self._t0 + POLISH_SHARE * self.max_time)
        # Refits keep their best parameters so far once the polishing deadline passes: a
        # formula with many constants can otherwise take minutes on 10,000 rows.
        with refit_deadline(polish_deadline):
            for v_model, v_records in variants:
                g = annotate_graph(graph, v_model, v_records)
                first_graph = first_graph or g
                composed = self._compose(g)
                log.info("composed: %s", composed)
                n_consts = sum(1 for a in sympy.preorder_traversal(composed)
                               if isinstance(a, sympy.Float))
                if n_consts > MAX_REFIT_CONSTANTS or (
                        polish_deadline is not None and time.perf_counter() > polish_deadline):
                    # a sprawling network's formula (refitting it with a symbolic Jacobian
                    # costs minutes, and it is no law anyway), or no time left: keep it as is
                    exprs.append(composed)
                    continue
                try:
                    raw, raw_mse = refit_constants(composed, self.symbols_, Xa, ya)
                except Exception as exc:  # one variant failing must not lose the others
                    log.warning("refitting %s failed: %s", composed, exc)
                    exprs.append(composed)
                    continue
                exprs.append(raw)
                # Snapping refits once per tried value: only worth it (and only bounded in
                # time) for a formula about as good as the network, with few constants.
                good = raw_mse <= max(10 * val_mse, EXACT_REL_MSE) * float(np.var(ya))
                late = deadline is not None and time.perf_counter() > deadline
                if good and n_consts <= MAX_SNAP_CONSTANTS and not late:
                    exprs.append(polish_expression(raw, self.symbols_, Xa, ya,
                                                   deadline=polish_deadline)[0])
                elif good and n_consts <= MAX_SNAP_CONSTANTS:
                    # out of time for snapping: still drop float dust and merge constants
                    exprs.append(gather_constants(clean_expression(raw, simplify=False),
                                                  self.symbols_, Xa, ya))
                if self._near_exact(exprs[-1:], Xa, ya):
                    break  # exact already: the near-tied variants cannot beat it
        return first_graph, exprs

    def _last_resort(self, Xa, ya, engine) -> list[tuple[sympy.Expr, str]]:
        """Formulas fitted to the data directly, for when no network gave a usable one: the
        fallback engine's front (if there is an engine) and the least-squares line, which is
        always finite."""
        rows = []
        if engine is not None:
            try:
                rows += [(c.expr, "fallback") for c in
                         engine.fit(Xa, ya, variable_names=self.variable_names_)]
            except Exception as exc:  # noqa: BLE001 - the line below still answers
                log.warning("fallback engine on the data failed: %s", exc)
        design = np.column_stack([Xa, np.ones(len(Xa))])
        coef = np.linalg.lstsq(design, ya, rcond=None)[0]
        line = sympy.Add(*(sympy.Float(c) * s for c, s in zip(coef, self.symbols_)),
                         sympy.Float(coef[-1]))
        return rows + [(line, "linear")]

    def _compose(self, graph: nx.DiGraph) -> sympy.Expr:
        """The graph's formula in the user's variables and units (input/output scaling undone)."""
        inputs = {}
        for node, d in graph.nodes(data=True):
            if d["kind"] == "input":
                c = d["column"]
                sym = self.symbols_[c]
                inputs[node] = (sym - float(self.x_center_[c])) / float(self.x_scale_[c])
        out = graph_to_sympy(graph, inputs)[("out", 0)]
        return sympy.Float(self.y_scale_) * out + sympy.Float(self.y_center_)

    def _near_exact(self, exprs: list[sympy.Expr], Xa, ya, rel_tol: float = 1e-20) -> bool:
        cols = {s.name: Xa[:, i] for i, s in enumerate(self.symbols_)}
        var = float(np.var(ya))
        for e in exprs:
            pred = self._evaluate(e, cols, len(ya))
            if np.all(np.isfinite(pred)) and np.mean((pred - ya) ** 2) <= rel_tol * var:
                return True
        return False

    def _front(self, rows: list[tuple[sympy.Expr, str]], Xa, ya) -> pd.DataFrame:
        """Pareto front of whole formulas. Errors below float64 round-off of y count as
        equal (exact), so a snapped law is not beaten by a longer one that is 1e-33 better."""
        cols = {s.name: Xa[:, i] for i, s in enumerate(self.symbols_)}
        floor = EXACT_REL_MSE * float(np.var(ya))
        cands = []
        for expr, _ in rows:
            pred = self._evaluate(expr, cols, len(ya))
            mse = float(np.mean((pred - ya) ** 2)) if np.all(np.isfinite(pred)) else math.inf
            cands.append((expr, max(mse, floor)))
        return pareto_front(cands, y=ya)

    # ------------------------------------------------------------------ using the law
    def _check_fitted(self) -> None:
        if not hasattr(self, "best_"):
            raise RuntimeError("this KANSR is not fitted yet: call fit(X, y) first")

    def _evaluate(self, expr: sympy.Expr, cols: dict[str, np.ndarray], n: int) -> np.ndarray:
        fn = sympy.lambdify(self.symbols_, expr, modules="numpy")
        with np.errstate(all="ignore"):
            out = fn(*[cols[s.name] for s in self.symbols_])
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (n,)).copy()

    def sympy(self, index: int | None = None) -> sympy.Expr:
        """The chosen law (or row `index` of `equations_`) as a sympy expression."""
        self._check_fitted()
        return self.best_["sympy"] if index is None else self.equations_.iloc[index]["sympy"]

    def latex(self, index: int | None = None) -> str:
        """The law as LaTeX."""
        return sympy.latex(self.sympy(index))

    def predict(self, X, use: str = "formula") -> np.ndarray:
        """Predictions (N,) from the formula (default) or from the trained network."""
        self._check_fitted()
        arr, _ = _as_frame(X, self.variable_names_ if not isinstance(X, pd.DataFrame) else None)
        if arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {arr.shape[1]} columns, the model was fitted on "
                             f"{self.n_features_in_}")
        _check_finite("X", arr)
        if use == "formula":
            cols = {s.name: arr[:, i] for i, s in enumerate(self.symbols_)}
            return self._evaluate(self.sympy(), cols, len(arr))
        if use == "network":
            Xs = (arr - self.x_center_) / self.x_scale_
            Xs = Xs[:, self.kan_.input_ids]
            with torch.no_grad():
                out = self.kan_(torch.as_tensor(Xs, dtype=self.kan_.dtype, device=self.kan_.device))
            return out[:, 0].cpu().numpy().astype(np.float64) * self.y_scale_ + self.y_center_
        raise ValueError(f"use must be 'formula' or 'network', got {use!r}")

    def score(self, X, y) -> float:
        """R^2 of the formula's predictions."""
        yv = np.asarray(y, dtype=np.float64).reshape(-1)
        pred = self.predict(X)
        return float(1 - np.sum((yv - pred) ** 2) / np.sum((yv - yv.mean()) ** 2))
