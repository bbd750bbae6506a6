"""Compose a graph whose activation edges carry formulas into sympy expressions."""

from __future__ import annotations

from typing import Hashable, Mapping

import networkx as nx
import sympy

from ..graph import EDGE_VAR


def graph_to_sympy(G: nx.DiGraph, inputs: Mapping[Hashable, sympy.Expr] | None = None
                   ) -> dict[Hashable, sympy.Expr]:
    """Expression of every output node, keyed by node id (("out", j)).

    `inputs` maps input node ids to the expression standing for them (default: a Symbol
    named after the input's ``name``); pass e.g. ``(x - c) / s`` to undo input scaling.
    Every activation edge must carry a ``formula`` (sympy, in ``EDGE_VAR``); sum and output
    nodes add their ``bias``.
    """
    value: dict[Hashable, sympy.Expr] = {}
    for node in nx.topological_sort(G):
        data = G.nodes[node]
        if data["kind"] == "input":
            value[node] = (inputs or {}).get(node, sympy.Symbol(data["name"]))
            continue
        terms = []
        for src, _, e in G.in_edges(node, data=True):
            if e["kind"] == "wire":
                terms.append(value[src])
                continue
            if e.get("formula") is None:
                raise ValueError(f"edge {src} -> {node} has no formula yet; match it first")
            terms.append(e["formula"].subs(EDGE_VAR, value[src]))
        if data["kind"] == "mult":
            value[node] = sympy.Mul(*terms)
        else:
            value[node] = sympy.Add(*terms) + sympy.Float(data.get("bias", 0.0))
    return {n: value[n] for n, d in G.nodes(data=True) if d["kind"] == "output"}
