"""Attribution scores (KAN 2.0, propagated back from the outputs) and pruning."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .network import KAN
from .train import fit
from .validation import check_xy


@dataclass
class Attribution:
    """node[l]: (n_nodes_l,) importance of each node; edge[l]: (I_l, O_l) of each edge."""

    node: list[torch.Tensor]
    edge: list[torch.Tensor]


def _subnode_scores(model: KAN, l: int, node_score: torch.Tensor) -> torch.Tensor:
    """Spread node scores of layer l over its sub-nodes (a product node's inputs share its score)."""
    n_sum, _ = model.width[l]
    return torch.cat([node_score[:n_sum],
                      node_score[n_sum:].repeat_interleave(model.mult_arity)])


@torch.no_grad()
def attribution(model: KAN, X: torch.Tensor, eps: float = 1e-4) -> Attribution:
    """Importance of every node and edge on samples X (B, n_in).

    An edge's score is its activation's standard deviation relative to that of the sub-node
    it feeds, times that sub-node's score; a node's score sums its outgoing edges' scores.
    Output nodes score 1.
    """
    tr = model.trace(X.to(model.device, model.dtype))
    L = len(model.layers)
    node = [torch.empty(0)] * (L + 1)
    edge = [torch.empty(0)] * L
    node[L] = torch.ones(model.n_out, dtype=model.dtype, device=model.device)
    for l in reversed(range(L)):
        sub = _subnode_scores(model, l + 1, node[l + 1])
        scale = tr.subnodes[l].std(dim=0) + eps
        edge[l] = tr.acts[l].std(dim=0) / scale[None, :] * sub[None, :]
        node[l] = edge[l].sum(dim=1)
    return Attribution(node, edge)


def _kept_subnodes(model: KAN, l: int, keep_nodes: torch.Tensor) -> torch.Tensor:
    """Sub-node indices of layer l that belong to the kept nodes."""
    n_sum, _ = model.width[l]
    idx = []
    for j in keep_nodes.tolist():
        if j < n_sum:
            idx.append(j)
        else:
            m = j - n_sum
            idx.extend(n_sum + m * model.mult_arity + r for r in range(model.mult_arity))
    return torch.tensor(idx, dtype=torch.long)


@torch.no_grad()
def prune(model: KAN, X: torch.Tensor, node_th: float = 1e-2, edge_th: float = 3e-2,
          prune_inputs: bool = False) -> KAN:
    """Return a smaller copy of `model` without unimportant nodes and edges.

    Hidden nodes (and with `prune_inputs`, inputs) scoring <= node_th are removed; surviving
    edges scoring <= edge_th are masked. `input_ids` records which original inputs survive.
    Outputs always stay.
    """
    X = X.to(model.device, model.dtype)
    att = attribution(model, X)
    L = len(model.layers)
    keep: list[torch.Tensor] = []
    for l in range(L + 1):
        n_nodes = sum(model.width[l])
        if l == L or (l == 0 and not prune_inputs):
            keep.append(torch.arange(n_nodes))
            continue
        alive = att.node[l] > node_th
        if l > 0:  # a hidden node with no important incoming edge only carries a constant
            n_sum, _ = model.width[l]
            inc = (att.edge[l - 1] > edge_th).any(dim=0)
            # A product is constant only when every factor is: one varying factor keeps it.
            inc_nodes = torch.cat([inc[:n_sum], inc[n_sum:].reshape(-1, model.mult_arity).any(1)])
            alive &= inc_nodes
        kept = torch.nonzero(alive.cpu()).flatten()
        if len(kept) == 0:  # never disconnect the network: keep its most important node
            kept = att.node[l].argmax().reshape(1).cpu()
        keep.append(kept)
    return _rebuild(model, X, keep, [e > edge_th for e in att.edge])


@torch.no_grad()
def remove_node(model: KAN, X: torch.Tensor, layer: int, node: int) -> KAN:
    """A copy of `model` without hidden node `node` of layer `layer` (1 <= layer < depth).

    Its outgoing edges hand their mean value on X to the sub-nodes they fed, as in `prune`.
    """
    if not 0 < layer < len(model.layers):
        raise ValueError(f"layer must be a hidden layer (1..{len(model.layers) - 1}), got {layer}")
    n_nodes = sum(model.width[layer])
    if not 0 <= node < n_nodes or n_nodes == 1:
        raise ValueError(f"cannot remove node {node} of hidden layer {layer} ({n_nodes} nodes)")
    X = X.to(model.device, model.dtype)
    keep = [torch.arange(sum(w)) for w in model.width]
    keep[layer] = keep[layer][keep[layer] != node]
    return _rebuild(model, X, keep, [torch.ones_like(lay.mask, dtype=torch.bool)
                                     for lay in model.layers])


def _rebuild(model: KAN, X: torch.Tensor, keep: list[torch.Tensor],
             edge_ok: list[torch.Tensor]) -> KAN:
    """The network restricted to the nodes `keep[l]` of every layer, edges where
    `edge_ok[l]` (I_l, O_l) is False masked; removed edges fold their mean on X into the bias
    of the sub-node they fed."""
    tr = model.trace(X)
    width = []
    for l, kept in enumerate(keep):
        n_sum = model.width[l][0]
        width.append((int((kept < n_sum).sum()), int((kept >= n_sum).sum())))
    new = KAN(width, grid=model.layers[0].grid_size, k=model.k, mult_arity=model.mult_arity,
              grid_range=model.grid_range, noise_scale=model.noise_scale, seed=model.seed,
              dtype=model.dtype, device=model.device,
              input_ids=[model.input_ids[i] for i in keep[0].tolist()])
    for l, (old_layer, new_layer) in enumerate(zip(model.layers, new.layers)):
        rows = keep[l].to(model.device)
        cols = _kept_subnodes(model, l + 1, keep[l + 1]).to(model.device)
        _copy_edges(old_layer, new_layer, rows, cols)
        # Removed edges (masked, or leaving a removed node) hand their mean value to the
        # sub-node they fed: a sum or a product's factor keeps its constant part, so the
        # pruned network computes what the original did up to the removed edges' variation.
        keep_edge = torch.zeros_like(old_layer.mask, dtype=torch.bool)
        keep_edge[rows] = edge_ok[l][rows]
        new_layer.mask *= keep_edge[rows][:, cols].to(new_layer.mask.dtype)
        dropped = (~keep_edge & (old_layer.mask > 0)).to(model.dtype)
        folded = (tr.acts[l].mean(dim=0) * dropped).sum(dim=0)  # (O_l,)
        new_layer.bias.data = (old_layer.bias + folded)[cols].clone()
    return new


def shrink(model: KAN, X, y, *, X_val=None, y_val=None, tol: float = 10.0, steps: int = 20,
           max_trials: int = 3, deadline: float | None = None, seed: int = 0) -> KAN:
    """Greedy, loss-guided node removal, for after thresholded pruning.

    Sparsity training plus `prune` leaves, depending on the seed, helper nodes carrying a few
    percent of the output that another node could carry. Each round removes, one at a time,
    each of the `max_trials` least important hidden nodes (by attribution), retrains every
    candidate `steps` LBFGS steps and keeps the best one if its loss (validation if given)
    is within `tol` times the best loss seen so far; a coarse grid fits a single node worse
    than two, so tol allows for that, and measuring against the best loss keeps removals
    from compounding. Stops when no candidate qualifies, or at `deadline` (a
    `time.perf_counter()` value). Returns the smallest accepted network.
    """
    X, y = check_xy(X, y, model.n_in, model.n_out, dtype=model.dtype, device=model.device)
    Xs, ys = (X, y) if X_val is None else check_xy(X_val, y_val, model.n_in, model.n_out,
                                                   dtype=model.dtype, device=model.device)

    def loss(m: KAN) -> float:
        with torch.no_grad():
            return float(torch.mean((m(Xs) - ys) ** 2))

    # A loss at round-off level (relative to the target's variance) counts as exact.
    floor = float(torch.var(ys)) * 64 * torch.finfo(model.dtype).eps
    best = loss(model)
    while deadline is None or time.perf_counter() < deadline:
        att = attribution(model, X)
        candidates = sorted((float(score), l, j) for l in range(1, len(model.layers))
                            if sum(model.width[l]) > 1 for j, score in enumerate(att.node[l]))
        trials = []
        for _, l, j in candidates[:max_trials]:
            trial = remove_node(model, X, l, j)
            fit(trial, X, y, steps=steps, seed=seed, progress=False, deadline=deadline)
            trials.append((loss(trial), len(trials), trial))
        if not trials or min(trials)[0] > max(tol * best, floor):
            return model
        trial_loss, _, model = min(trials)
        best = min(best, trial_loss)
    return model


def _copy_edges(src, dst, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """Copy the (rows x cols) block of edges of layer `src` into layer `dst`."""
    dst.grid = src.grid[rows].clone()
    dst.grid_size = src.grid_size
    dst.coef = torch.nn.Parameter(src.coef[rows][:, cols].clone())
    for name in ("w_base", "w_sp", "sym_params"):
        getattr(dst, name).data = getattr(src, name)[rows][:, cols].clone()
    dst.mask = src.mask[rows][:, cols].clone()
    dst.sym_mask = src.sym_mask[rows][:, cols].clone()
    r_map = {int(r): a for a, r in enumerate(rows.tolist())}
    c_map = {int(c): b for b, c in enumerate(cols.tolist())}
    dst.symbolic = {(r_map[i], c_map[j]): e for (i, j), e in src.symbolic.items()
                    if i in r_map and j in c_map}
