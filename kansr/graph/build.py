"""The graph stage: a (pruned) KAN becomes a networkx DAG that users can read, draw and edit.

Nodes (ids are tuples, attribute ``kind``):
    ("in", i)           input i, attribute ``name`` (the user's variable) and ``column``
                        (its index among the original inputs)
    ("sum", l, j)       sum node j of layer l (hidden), or sub-node feeding a product node;
                        sum nodes and outputs carry ``bias`` (added to their incoming sum)
    ("mult", l, m)      product node m of layer l: multiplies its incoming ``wire`` edges
    ("out", j)          output j
Edges:
    kind="activation"   one per live KAN edge, attributes ``layer``, ``i``, ``j`` (indices in
                        the network), ``x`` and ``y`` (the samples it saw and its values,
                        1-D numpy arrays), ``importance``, and ``formula`` (None until matched;
                        then a sympy expression in the placeholder symbol ``EDGE_VAR``)
    kind="wire"         a product node's sub-node feeding it (no function)
"""

from __future__ import annotations

from typing import Hashable, Sequence

import networkx as nx
import numpy as np
import sympy
import torch

from ..kan import KAN, attribution

EDGE_VAR = sympy.Symbol("x")
Node = tuple


def _node_id(model: KAN, l: int, j: int) -> Node:
    """Id of node j in layer l (0 = inputs, L = outputs)."""
    L = len(model.layers)
    if l == 0:
        return ("in", j)
    if l == L:
        return ("out", j)
    n_sum, _ = model.width[l]
    return ("sum", l, j) if j < n_sum else ("mult", l, j - n_sum)


def _subnode_id(model: KAN, l: int, s: int) -> Node:
    """Id of the node an edge into sub-node s of layer l lands on."""
    j, factor = model.subnode_owner(l, s)
    if factor is None:
        return _node_id(model, l, j)
    return ("sum", l, f"{j - model.width[l][0]}.{factor}")  # a product node's own sub-node


@torch.no_grad()
def network_to_graph(model: KAN, X, variable_names: Sequence[str] | None = None,
                     output_names: Sequence[str] | None = None, max_samples: int = 2000,
                     seed: int = 0) -> nx.DiGraph:
    """Build the DAG of `model` with each live edge's samples taken on X (B, n_in).

    X is in the network's own (already scaled) input units. At most `max_samples` rows are
    kept per edge (a seeded subsample) to bound memory and matching time.
    """
    # np.asarray would refuse a CUDA tensor: tensors go to the network's device as they are
    X = torch.as_tensor(X if torch.is_tensor(X) else np.asarray(X), dtype=model.dtype,
                        device=model.device)
    if len(X) > max_samples:
        idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:max_samples]
        X = X[idx.to(X.device)]
    names = list(variable_names) if variable_names is not None else \
        [f"x{c}" for c in model.input_ids]
    if len(names) != model.n_in:
        raise ValueError(f"{len(names)} variable names for a network with {model.n_in} inputs")
    out_names = list(output_names) if output_names is not None else \
        [f"y{j}" for j in range(model.n_out)]
    tr = model.trace(X)
    att = attribution(model, X)
    G = nx.DiGraph()
    L = len(model.layers)
    for i, name in enumerate(names):
        G.add_node(("in", i), kind="input", name=name, column=model.input_ids[i], layer=0)
    for l in range(1, L + 1):
        n_sum, n_mult = model.width[l]
        for j in range(n_sum + n_mult):
            node = _node_id(model, l, j)
            kind = "output" if l == L else ("sum" if j < n_sum else "mult")
            G.add_node(node, kind=kind, layer=l, name=out_names[j] if l == L else None)
            if kind == "mult":
                for r in range(model.mult_arity):
                    sub = ("sum", l, f"{j - n_sum}.{r}")
                    G.add_node(sub, kind="sum", layer=l, name=None)
                    G.add_edge(sub, node, kind="wire")
    for l in range(len(model.layers)):
        live = model.live_edges(l)
        xin = tr.inputs[l].cpu().numpy().astype(np.float64)
        acts = tr.acts[l].cpu().numpy().astype(np.float64)
        for i, s in live:
            src = _node_id(model, l, i)
            if src not in G:
                continue
            G.add_edge(src, _subnode_id(model, l + 1, s), kind="activation", layer=l, i=i, j=s,
                       x=xin[:, i].copy(), y=acts[:, i, s].copy(),
                       importance=float(att.edge[l][i, s]), formula=None, candidates=[],
                       symbolic=model.symbolic_edge(l, i, s) is not None)
    set_biases(G, model)
    _drop_dead_nodes(G)
    return G


def set_biases(G: nx.DiGraph, model: KAN) -> None:
    """Store each sub-node's bias (constants folded in by pruning) as node attribute ``bias``."""
    for l, layer in enumerate(model.layers):
        for s, b in enumerate(layer.bias.detach().cpu().tolist()):
            node = _subnode_id(model, l + 1, s)
            if node in G:
                G.nodes[node]["bias"] = float(b)


def _drop_dead_nodes(G: nx.DiGraph) -> None:
    """Remove hidden nodes that no longer connect an input to an output."""
    while True:
        dead = [n for n, d in G.nodes(data=True) if d["kind"] in ("sum", "mult")
                and (G.in_degree(n) == 0 or G.out_degree(n) == 0)]
        if not dead:
            return
        G.remove_nodes_from(dead)


def activation_edges(G: nx.DiGraph) -> list[tuple[Hashable, Hashable, dict]]:
    """Activation edges ordered by layer, then by importance (most important first)."""
    edges = [(u, v, d) for u, v, d in G.edges(data=True) if d["kind"] == "activation"]
    return sorted(edges, key=lambda e: (e[2]["layer"], -e[2]["importance"]))
