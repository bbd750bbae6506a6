"""Diagram of a KAN: nodes per layer, every live edge drawn with an inset of its activation.

Inputs sit at the bottom, outputs at the top. An edge's opacity is its attribution score
(`prune.attribution`), so unimportant edges fade; masked (pruned) edges are not drawn. Sum
nodes are circles; a product node is a square fed by its `mult_arity` sub-nodes (small dots).
matplotlib is an optional dependency (extra ``plot``) and is imported only when plotting.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from .network import KAN
from .prune import attribution

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_SUB_DROP = 0.22  # how far below a product node its sub-nodes sit (layer units)


def _pyplot():
    """Import matplotlib with the Agg backend, or explain how to get it."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("kansr.kan.plot needs matplotlib: pip install 'kansr[plot]'") from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _node_x(n: int) -> np.ndarray:
    """Horizontal positions in (0, 1) of n evenly spaced nodes, shape (n,)."""
    return (np.arange(n) + 0.5) / n


def _subnode_xy(model: KAN, l: int) -> np.ndarray:
    """Positions (n_sub, 2) of layer l's sub-nodes, where incoming edges end."""
    n_sum, n_mult = model.width[l]
    xs = _node_x(n_sum + n_mult)
    spread = 0.35 / (n_sum + n_mult)
    pts = [(xs[j], l) for j in range(n_sum)]
    offsets = np.linspace(-spread, spread, model.mult_arity)
    for m in range(n_mult):
        pts.extend((xs[n_sum + m] + o, l - _SUB_DROP) for o in offsets)
    return np.asarray(pts, dtype=float)


def _edge_alpha(score: float, beta: float) -> float:
    """Opacity in [0.05, 1] growing with the edge's attribution score."""
    return float(np.clip(np.tanh(beta * score), 0.05, 1.0))


def _draw_nodes(ax, model: KAN, variable_names: Sequence[str], output_names: Sequence[str]) -> None:
    """Markers for every node and sub-node, plus input and output labels."""
    L = len(model.layers)
    for l, (n_sum, n_mult) in enumerate(model.width):
        xs = _node_x(n_sum + n_mult)
        ax.scatter(xs[:n_sum], np.full(n_sum, l), s=160, c="white", edgecolors="black", zorder=3)
        if n_mult:
            ax.scatter(xs[n_sum:], np.full(n_mult, l), s=200, marker="s", c="#f4c27a",
                       edgecolors="black", zorder=3)
            for m in range(n_mult):
                ax.text(xs[n_sum + m], l, "×", ha="center", va="center", fontsize=10, zorder=4)
            sub = _subnode_xy(model, l)[n_sum:]
            ax.scatter(sub[:, 0], sub[:, 1], s=25, c="black", zorder=3)
            for m in range(n_mult):
                for s in sub[m * model.mult_arity : (m + 1) * model.mult_arity]:
                    ax.plot([s[0], xs[n_sum + m]], [s[1], l], c="black", lw=0.8, zorder=2)
    for x, name in zip(_node_x(model.n_in), variable_names):
        ax.text(x, -0.18, name, ha="center", va="top", fontsize=11)
    for x, name in zip(_node_x(model.n_out), output_names):
        ax.text(x, L + 0.15, name, ha="center", va="bottom", fontsize=11)


def _draw_edge(fig, ax, start: np.ndarray, end: np.ndarray, xin: np.ndarray, act: np.ndarray,
               alpha: float, inset: tuple[float, float], t: float = 0.5,
               label: str | None = None) -> None:
    """One edge: a line from start to end with an inset of act against xin at fraction t,
    captioned with `label` (its matched formula) when given."""
    ax.plot([start[0], end[0]], [start[1], end[1]], c="black", lw=1.0, alpha=alpha, zorder=1)
    mid = start + t * (end - start)
    fx, fy = fig.transFigure.inverted().transform(ax.transData.transform(mid))
    w, h = inset
    sub = fig.add_axes((fx - w / 2, fy - h / 2, w, h))
    order = np.argsort(xin)
    sub.plot(xin[order], act[order], c="tab:blue", lw=1.2, alpha=alpha)
    sub.set_xticks([])
    sub.set_yticks([])
    sub.patch.set_alpha(0.85 * alpha)
    for spine in sub.spines.values():
        spine.set_alpha(alpha)
    if label:
        sub.set_title(label, fontsize=6, pad=1.5, alpha=max(alpha, 0.5))


def plot(
    model: KAN,
    X,
    path: str | Path | None = None,
    *,
    variable_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    beta: float = 3.0,
    max_samples: int = 1000,
    scale: float = 1.0,
    title: str | None = None,
    edge_labels: Mapping[tuple[int, int, int], str] | None = None,
) -> "Figure":
    """Draw `model` evaluated on samples X (N, n_in); save to `path` when one is given.

    Each live edge shows its activation (sorted inputs vs values from `model.trace`) with
    opacity tanh(beta * attribution score), captioned with ``edge_labels[(layer, i, j)]``
    where given (e.g. the edge's matched formula). Returns the matplotlib Figure (not shown, not
    closed: call ``plt.close(fig)`` when done).
    """
    plt = _pyplot()
    X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X)
    X = X.to(model.device, model.dtype)
    if X.ndim != 2 or X.shape[1] != model.n_in:
        raise ValueError(f"X must have shape (N, {model.n_in}), got {tuple(X.shape)}")
    X = X[:max_samples]
    names = list(variable_names) if variable_names is not None else \
        [f"x{model.input_ids[i]}" for i in range(model.n_in)]
    outs = list(output_names) if output_names is not None else [f"y{j}" for j in range(model.n_out)]
    if len(names) != model.n_in or len(outs) != model.n_out:
        raise ValueError(f"need {model.n_in} variable names and {model.n_out} output names, "
                         f"got {len(names)} and {len(outs)}")
    with torch.no_grad():
        tr = model.trace(X)
    att = attribution(model, X)

    L = len(model.layers)
    widest = max(sum(w) for w in model.width)
    fig = plt.figure(figsize=(scale * max(3.0, 1.6 * widest), scale * 2.4 * L + 1.0))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.45, L + 0.45)
    ax.axis("off")
    if title:
        ax.text(0.02, L + 0.35, title, fontsize=11, va="top")
    _draw_nodes(ax, model, names, outs)
    inset = (0.55 * scale / fig.get_figwidth(), 0.55 * scale / fig.get_figheight())
    for l, layer in enumerate(model.layers):
        starts = np.stack([_node_x(model._n_nodes(l)), np.full(model._n_nodes(l), float(l))], 1)
        ends = _subnode_xy(model, l + 1)
        xin = tr.inputs[l].cpu().numpy()
        acts = tr.acts[l].cpu().numpy()
        scores = att.edge[l].cpu().numpy()
        n_sub = len(ends)
        for i, j in zip(*np.nonzero(layer.mask.cpu().numpy())):
            t = 0.5 if n_sub == 1 else 0.3 + 0.4 * j / (n_sub - 1)  # stagger crossing insets
            _draw_edge(fig, ax, starts[i], ends[j], xin[:, i], acts[:, i, j],
                       _edge_alpha(float(scores[i, j]), beta), inset, t,
                       (edge_labels or {}).get((l, int(i), int(j))))
    if path is not None:
        fig.savefig(path, dpi=120)
        log.info("saved KAN diagram to %s", path)
    return fig
