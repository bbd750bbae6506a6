"""Choose each edge's formula by what it does to the whole network's error.

Edges are visited layer by layer, most important first. For every edge the library's best
candidates (plus the fallback engine's when no primitive explains the edge) are tried in
turn: the edge is fixed to c*f(a*x+b)+d in a copy of the network, the rest of the network is
fine-tuned around it, and the candidate with the best trade-off between the network's error
and the candidate's complexity is kept. At the end every edge is symbolic and the network's
symbolic parameters are the formula's constants.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import sympy
import torch

from ..fallback import FallbackEngine
from ..graph import EDGE_VAR, set_biases
from ..kan import KAN, fit
from ..match.composite import match_composite, match_nested
from ..match.edge import CONST_NAME, match_edge
from ..match.library import Library
from ..match.varpro import zero_spread

log = logging.getLogger(__name__)

# A trained spline edge matches its true primitive only to about this (1 - R^2): x^2 with a
# huge offset or tan near a pole fit a straight line "better" below it. Ties go to simplicity.
EDGE_FLOOR = 1e-7
# A best primitive whose unexplained variance exceeds the edge floor this many times over is
# a look-alike candidate: compositions of two primitives are tried as well.
LOOKALIKE_MARGIN = 100.0


@dataclass
class EdgeOption:
    """A candidate for one edge: the network computes c * f(a * x + b) + d."""

    name: str
    f: sympy.Expr
    params: tuple[float, float, float, float]
    complexity: int
    edge_r2: float
    loss: float = math.nan  # whole-network MSE after fixing this option and fine-tuning

    def formula(self, params: tuple[float, float, float, float] | None = None) -> sympy.Expr:
        """c * f(a * x + b) + d in EDGE_VAR with the given (or own) parameters."""
        a, b, c, d = (float(p) for p in (params or self.params))
        inner = sympy.Float(a) * EDGE_VAR + sympy.Float(b)
        return sympy.Float(c) * self.f.subs(EDGE_VAR, inner) + sympy.Float(d)


@dataclass
class EdgeRecord:
    """What was tried on one edge and what was kept."""

    layer: int
    i: int
    j: int
    options: list[EdgeOption] = field(default_factory=list)
    chosen: int = 0


def edge_options(x: np.ndarray, y: np.ndarray, library: Library,
                 fallback: FallbackEngine | None, *, top_k: int = 3,
                 fallback_below_r2: float = 0.9999, compose: bool = True,
                 x_map: tuple[float, float] = (0.0, 1.0),
                 err_floor: float = 1e-10) -> list[EdgeOption]:
    """Candidates for samples (x, y) of one edge.

    The library's best; when none explains the edge (R^2 below `fallback_below_r2`), also
    compositions f(A g(x) + B) of two primitives (`compose`; g acts on m + s * x with
    (m, s) = `x_map`, the user's units for a first-layer edge, or on a x + b taken from
    the best direct fits) and, if those do not explain
    it either, the fallback engine's candidates. Unexplained variance below `err_floor`
    counts as zero when ranking (the edge is a spline: it is only so exact).
    """
    if zero_spread(x):
        # The edge's input node is constant on the data (its own inputs were pruned or are
        # constant): the edge is its value there, a constant. (Raised before, and lost the
        # whole network's formula: Feynman II.11.3.)
        return [EdgeOption(CONST_NAME, sympy.Integer(0), (0.0, 0.0, 0.0, float(np.mean(y))),
                           0, 1.0)]
    fits = match_edge(x, y, library, top_k=top_k, err_floor=err_floor)
    opts = [EdgeOption(f.name, f.primitive.expr if f.primitive is not None else sympy.Integer(0),
                       (f.a, f.b, f.c, f.d), f.complexity, f.r2) for f in fits]
    best_r2 = fits[0].r2
    # Compositions are tried when no primitive explains the edge, and also when the best
    # one explains it far worse than the spline's own accuracy (`err_floor`): a look-alike
    # (exp for 1/sqrt(1 - x^2) on part of its range) clears R^2 = 0.9999 easily.
    if compose and (best_r2 < fallback_below_r2
                    or 1.0 - best_r2 > LOOKALIKE_MARGIN * err_floor):
        nested = match_nested(x, y, fits, library, top_k=2)
        for f in match_composite(x, y, library, x_map=x_map, top_k=2) + nested:
            if f.r2 > best_r2:
                opts.append(EdgeOption(f.name, f.primitive.expr, (1.0, 0.0, f.c, f.d),
                                       f.complexity, f.r2))
        best_r2 = max(o.edge_r2 for o in opts)
    if fallback is not None and best_r2 < fallback_below_r2:
        log.info("edge not explained by the library (best %s, R^2=%.6f): asking %s",
                 fits[0].name, fits[0].r2, fallback.name)
        try:
            cands = fallback.fit(x, y, ["x"])
        except Exception as exc:  # an engine failure must not lose the library's answer
            log.warning("fallback engine %s failed on an edge: %s", fallback.name, exc)
            cands = []
        best_r2 = max(c.r2 for c in cands) if cands else -math.inf
        good = [c for c in cands if c.r2 >= min(best_r2, fits[0].r2)]
        for c in good[:3]:
            expr = c.expr.subs(sympy.Symbol("x"), EDGE_VAR)
            opts.append(EdgeOption(f"{fallback.name}:{expr}", expr, (1.0, 0.0, 1.0, 0.0),
                                   c.complexity, c.r2))
    return opts


def _score(loss: float, var_y: float, complexity: int, weight: float, floor: float) -> float:
    """log10 of the relative error (floored) plus a complexity price (lower is better)."""
    return math.log10(max(loss / var_y, floor)) + weight * complexity


def _mse(model: KAN, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.mean((model(X) - y) ** 2))


def symbolize(model: KAN, X: torch.Tensor, y: torch.Tensor, library: Library,
              fallback: FallbackEngine | None = None, *, top_k: int = 3,
              finetune_steps: int = 5, complexity_weight: float = 0.3,
              error_floor: float = 1e-10, max_samples: int = 1000,
              seed: int = 0, deadline: float | None = None,
              input_maps: list[tuple[float, float]] | None = None,
              ) -> tuple[KAN, list[EdgeRecord]]:
    """Fix every live edge of a copy of `model` to its chosen formula.

    X (N, n_in), y (N, n_out) in the network's units; `input_maps[i]` = (m, s) maps network
    input i to the user's units (m + s * x), where composed edge candidates apply their
    inner function. Returns the symbolic network (its
    `sym_params` hold each edge's a, b, c, d) and a record of the options per edge. Past
    `deadline` (a `time.perf_counter()` value) edges take the library's top-ranked option
    without trials or fine-tuning, so a time budget still yields a formula. Errors below
    `error_floor` or the network's own relative error count as equal: complexity decides.
    """
    model = copy.deepcopy(model)
    var_y = float(torch.var(y)) or 1.0
    gen = torch.Generator().manual_seed(seed)
    sub = torch.randperm(len(X), generator=gen)[:max_samples]
    # Trials fine-tune and score on the subsample too: the final constants are refitted on
    # all the data later, and a trial per candidate per edge is the stage's main cost.
    X, y = X[sub], y[sub]
    # Candidates cannot be told apart below the network's own error: a tan near its pole
    # or a sin at a tiny argument mimics 1/x or x to that level. Below it, simplicity rules.
    floor = max(error_floor, _mse(model, X, y) / var_y)
    records: list[EdgeRecord] = []
    for l in range(len(model.layers)):
        todo = model.live_edges(l, spline_only=True)
        for _ in range(len(todo)):
            tr = model.trace(X)
            acts, xin = tr.acts[l].detach(), tr.inputs[l].detach()
            # most important remaining edge first: its choice shapes what the others see
            i, j = max((e for e in todo if model.symbolic_edge(l, *e) is None),
                       key=lambda e: float(acts[:, e[0], e[1]].std()))
            x_np = xin[:, i].double().cpu().numpy()
            y_np = acts[:, i, j].double().cpu().numpy()
            left = math.inf if deadline is None else deadline - time.perf_counter()
            out_of_time = left <= 0
            # the engine's own limit is soft (an in-process search stops between
            # generations; slower on a loaded machine): only start it with time to spare
            engine = fallback if left > 2 * (getattr(fallback, "time_limit", None) or 0.0) else None
            x_map = input_maps[i] if (l == 0 and input_maps) else (0.0, 1.0)
            record = EdgeRecord(l, i, j, edge_options(x_np, y_np, library, engine,
                                                      top_k=top_k, x_map=x_map,
                                                      compose=not out_of_time,
                                                      err_floor=max(EDGE_FLOOR, floor)))
            trials = []
            for opt in record.options[:1] if out_of_time else record.options:
                trial = model if out_of_time else copy.deepcopy(model)
                trial.layers[l].fix_edge(i, j, opt.f, opt.params)
                if finetune_steps and not out_of_time:
                    # below the floor every loss scores alike: tuning further changes nothing
                    fit(trial, X, y, steps=finetune_steps, update_grid=False, progress=False,
                        min_rows_per_param=0, loss_tol=floor * var_y)
                opt.loss = _mse(trial, X, y)
                if not math.isfinite(opt.loss):
                    opt.loss = math.inf
                trials.append(trial)
            scores = [_score(o.loss, var_y, o.complexity, complexity_weight, floor)
                      for o in record.options[: len(trials)]]
            record.chosen = int(np.argmin(scores))
            log.debug("layer %d edge (%d, %d) options: %s", l, i, j,
                      ", ".join(f"{o.name} (c={o.complexity}, rel. MSE {o.loss / var_y:.3g})"
                                for o in record.options[: len(trials)]))
            model = trials[record.chosen]
            kept = record.options[record.chosen]
            log.info("layer %d edge (%d, %d): %s (edge R^2 %.6f, network rel. MSE %.3g)",
                     l, i, j, kept.name, kept.edge_r2, kept.loss / var_y)
            if kept.name == "const":
                log.info("edge (%d, %d) of layer %d carries only a constant: kept as that "
                         "constant, not dropped", i, j, l)
            records.append(record)
    return model, records


def alternatives(records: list[EdgeRecord], *, max_ratio: float = 1e3,
                 limit: int = 3) -> list[tuple[int, int]]:
    """(record index, option index) pairs worth a whole-formula comparison.

    An option qualifies when its network error was within `max_ratio` of the kept option's:
    near-ties on the network (tanh vs exp in a tail, say) are settled by refitting whole
    formulas on the data, where the true law is exact and the look-alike is not. Options
    simpler than the kept one come first, then the closest in error.
    """
    pairs = []
    for r, rec in enumerate(records):
        kept = rec.options[rec.chosen]
        for k, opt in enumerate(rec.options):
            ratio = opt.loss / max(kept.loss, 1e-300)
            if k != rec.chosen and opt.name != "const" and ratio <= max_ratio:
                pairs.append((opt.complexity >= kept.complexity, ratio, r, k))
    return [(r, k) for *_, r, k in sorted(pairs)[:limit]]


def swap_edge(model: KAN, records: list[EdgeRecord], r: int, k: int, X: torch.Tensor,
              y: torch.Tensor, finetune_steps: int = 5) -> tuple[KAN, list[EdgeRecord]]:
    """Copy of a symbolic `model` with edge `records[r]` switched to its option k, re-tuned."""
    model = copy.deepcopy(model)
    rec = records[r]
    opt = rec.options[k]
    model.layers[rec.layer].fix_edge(rec.i, rec.j, opt.f, opt.params)
    if finetune_steps:
        fit(model, X, y, steps=finetune_steps, update_grid=False, progress=False,
            min_rows_per_param=0)
    new = copy.copy(records)
    new[r] = EdgeRecord(rec.layer, rec.i, rec.j, rec.options, k)
    return model, new


def annotate_graph(G: nx.DiGraph, model: KAN, records: list[EdgeRecord]) -> nx.DiGraph:
    """Copy of G whose activation edges carry the chosen formula and the options tried."""
    G = G.copy()
    set_biases(G, model)
    by_edge = {(r.layer, r.i, r.j): r for r in records}
    for _, _, e in G.edges(data=True):
        if e["kind"] != "activation":
            continue
        r = by_edge.get((e["layer"], e["i"], e["j"]))
        sym = model.symbolic_edge(e["layer"], e["i"], e["j"])
        if sym is None:
            continue
        params = model.edge_params(e["layer"], e["i"], e["j"])
        if r is None:  # fixed before symbolize (a product's linear output edge, say)
            f = sympy.sympify(sym.expr, locals={"x": EDGE_VAR})
            e["formula"] = EdgeOption(sym.expr, f, params, 0, math.nan).formula()
            e["candidates"] = []
            continue
        kept = r.options[r.chosen]
        e["formula"] = kept.formula(params)
        e["candidates"] = [{"name": o.name, "complexity": o.complexity, "edge_r2": o.edge_r2,
                            "network_mse": o.loss, "chosen": k == r.chosen}
                           for k, o in enumerate(r.options)]
    return G
