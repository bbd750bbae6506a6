"""A KAN of any depth with sum nodes and (KAN 2.0) product nodes.

`width` lists the nodes per layer, e.g. ``[2, 5, 1]`` or ``[2, (1, 1), 1]``: an entry is either
an int (sum nodes only) or ``(n_sum, n_mult)``. A product node multiplies ``mult_arity``
sub-nodes, each of which sums its incoming edges, so x * y is represented exactly.
Layer l maps the n_sum + n_mult node values of layer l to n_sum' + arity * n_mult' sub-nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from . import fused as _fused
from .layer import KANLayer
from .symbolic import SymbolicEdge

WidthSpec = Sequence[int | Sequence[int]]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _width_entry(entry: object) -> tuple[int, int]:
    """One width entry -> (n_sum, n_mult), or ValueError naming the entry."""
    def count(v: object) -> int | None:
        if isinstance(v, bool) or not hasattr(v, "__index__"):  # ints and numpy ints only
            return None
        return int(v.__index__())  # type: ignore[attr-defined]

    pair = (count(entry), 0) if not isinstance(entry, (tuple, list)) else \
        tuple(count(v) for v in entry)
    if len(pair) != 2 or None in pair or min(pair) < 0 or sum(pair) == 0:  # type: ignore[operator]
        raise ValueError(f"bad width entry {entry!r}: use a positive int n or a pair "
                         "(n_sum, n_mult) of non-negative ints")
    return pair  # type: ignore[return-value]


def normalize_width(width: WidthSpec) -> list[tuple[int, int]]:
    """Turn a width spec into [(n_sum, n_mult), ...] and check it."""
    if not isinstance(width, (list, tuple)):
        raise ValueError(f"width must be a list such as [2, 5, 1], got {width!r}")
    if len(width) < 2:
        raise ValueError(f"width needs at least an input and an output layer, got {width!r}")
    out = [_width_entry(entry) for entry in width]
    if out[0][1] or out[-1][1]:
        raise ValueError("input and output layers cannot hold product nodes")
    return out


@dataclass
class Trace:
    """Everything a forward pass saw; returned, never cached on the model.

    inputs[l]: (B, I_l) values entering layer l; acts[l]: (B, I_l, O_l) edge activations;
    subnodes[l]: (B, O_l) sub-node sums; output: (B, n_out).
    """

    inputs: list[torch.Tensor]
    acts: list[torch.Tensor]
    subnodes: list[torch.Tensor]
    output: torch.Tensor


class KAN(nn.Module):
    """Kolmogorov-Arnold Network: learnable B-spline activations on edges, sums and products on nodes."""

    def __init__(
        self,
        width: WidthSpec,
        grid: int = 5,
        k: int = 3,
        *,
        mult_arity: int = 2,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        seed: int = 0,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str = "cpu",
        input_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.width = normalize_width(width)
        if mult_arity < 2:
            raise ValueError("mult_arity must be at least 2")
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
            dtype = _DTYPES[dtype]
        self.k, self.mult_arity, self.seed = k, mult_arity, seed
        self.grid_range, self.noise_scale = tuple(grid_range), noise_scale
        self.input_ids = list(range(self.width[0][0])) if input_ids is None else list(input_ids)
        if len(self.input_ids) != self.width[0][0]:
            raise ValueError("input_ids must list one original index per input")
        gen = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList(
            KANLayer(self._n_nodes(l), self._n_subnodes(l + 1), grid, k, grid_range,
                     noise_scale, gen, dtype)
            for l in range(len(self.width) - 1)
        )
        for l, layer in enumerate(self.layers):
            n_sum, _ = self.width[l + 1]
            layer.init_linear(list(range(n_sum, layer.out_dim)), gen)  # product factors
        self.to(device)

    # ------------------------------------------------------------------ structure
    def _n_nodes(self, l: int) -> int:
        return sum(self.width[l])

    def _n_subnodes(self, l: int) -> int:
        n_sum, n_mult = self.width[l]
        return n_sum + self.mult_arity * n_mult

    @property
    def n_in(self) -> int:
        return self.width[0][0]

    @property
    def n_out(self) -> int:
        return self.width[-1][0]

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].coef.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].coef.device

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (grid sizes live in the state)."""
        return {
            "width": [list(w) for w in self.width], "grid": self.layers[0].grid_size, "k": self.k,
            "mult_arity": self.mult_arity, "grid_range": list(self.grid_range),
            "noise_scale": self.noise_scale, "seed": self.seed,
            "dtype": str(self.dtype).removeprefix("torch."), "input_ids": self.input_ids,
        }

    def n_params(self) -> int:
        """Trainable parameters of live (unmasked) edges, counting splines and scales."""
        return sum(int(l.mask.sum().item()) * (l.grid_size + l.k + 2) for l in self.layers)

    def __repr__(self) -> str:
        shape = [w[0] if not w[1] else w for w in self.width]
        return f"KAN(width={shape}, grid={[l.grid_size for l in self.layers]}, k={self.k})"

    # ------------------------------------------------------------------ topology
    def live_edges(self, l: int, *, spline_only: bool = False) -> list[tuple[int, int]]:
        """(input node i, sub-node j) of every unmasked edge of layer l, in row-major order;
        `spline_only` leaves out edges already fixed to a symbolic function."""
        layer = self.layers[l]
        edges = [(int(i), int(j)) for i, j in torch.nonzero(layer.mask > 0).tolist()]
        return [e for e in edges if not (spline_only and e in layer.symbolic)]

    def subnode_owner(self, l: int, s: int) -> tuple[int, int | None]:
        """The node of layer l (1 = first hidden, L = outputs) that sub-node s feeds, and
        which factor of it it is (None for a sum node)."""
        n_sum, _ = self.width[l]
        if s < n_sum:
            return s, None
        m, r = divmod(s - n_sum, self.mult_arity)
        return n_sum + m, r

    def symbolic_edge(self, l: int, i: int, j: int) -> SymbolicEdge | None:
        """The symbolic function fixed on edge (i, j) of layer l, or None (a spline)."""
        return self.layers[l].symbolic.get((i, j))

    def edge_params(self, l: int, i: int, j: int) -> tuple[float, float, float, float]:
        """(a, b, c, d) of a symbolic edge c * f(a * x + b) + d."""
        return tuple(float(p) for p in self.layers[l].sym_params[i, j].detach().cpu())

    # ------------------------------------------------------------------ forward
    def node_op(self, z: torch.Tensor, l: int) -> torch.Tensor:
        """Sub-node values (B, O_l) of layer l -> node values (B, n_sum + n_mult)."""
        n_sum, n_mult = self.width[l]
        if not n_mult:
            return z
        prods = z[:, n_sum:].reshape(len(z), n_mult, self.mult_arity).prod(dim=-1)
        return torch.cat([z[:, :n_sum], prods], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in) -> (B, n_out).

        Inputs that need no gradient (training on data, inference) take the fused layer op;
        inputs that do (derivatives in x, e.g. physics-informed losses) the autograd one,
        which is differentiable any number of times.
        """
        fused = _fused.ENABLED and not x.requires_grad
        for l, layer in enumerate(self.layers):
            x = self.node_op(layer(x, fused), l + 1)
        return x

    def trace(self, x: torch.Tensor) -> Trace:
        """Forward pass keeping every layer's inputs and per-edge activations (B, I, O)."""
        inputs, acts, subs = [], [], []
        for l, layer in enumerate(self.layers):
            inputs.append(x)
            a = layer.edge_activations(x)
            acts.append(a)
            z = a.sum(dim=1) + layer.bias
            subs.append(z)
            x = self.node_op(z, l + 1)
        return Trace(inputs, acts, subs, x)

    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Values entering each layer, [(B, I_l)], computed without per-edge tensors."""
        out = []
        for l, layer in enumerate(self.layers):
            out.append(x)
            x = self.node_op(layer(x), l + 1)
        return out

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02) -> None:
        """Zoom every layer's knots onto the samples reaching it, preserving the function on
        them (see `KANLayer.update_grid`)."""
        for layer, xin in zip(self.layers, self.layer_inputs(x)):
            layer.update_grid(xin, grid_eps=grid_eps)

    def grid_state(self) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """Copies of every layer's (grid, coef, grid_size), for `set_grid_state`."""
        return [(l.grid.clone(), l.coef.detach().clone(), l.grid_size) for l in self.layers]

    @torch.no_grad()
    def set_grid_state(self, state: list[tuple[torch.Tensor, torch.Tensor, int]]) -> None:
        """Restore grids and spline coefficients saved by `grid_state`."""
        for layer, (grid, coef, size) in zip(self.layers, state):
            layer.grid, layer.grid_size = grid.clone(), size
            layer.coef = nn.Parameter(coef.clone())

    @torch.no_grad()
    def wire_diagonal_inputs(self) -> "KAN":
        """Connect input r only to sub-node r of the first layer (all other first-layer edges
        masked): with one product node of arity n_in it computes prod_r g_r(x_r). In place."""
        first = self.layers[0]
        first.mask.zero_()
        first.mask[:, : first.in_dim].fill_diagonal_(1.0)
        return self

    @torch.no_grad()
    def refine(self, grid: int, x: torch.Tensor) -> "KAN":
        """Coarse-to-fine: give every layer `grid` intervals, preserving the function. In place."""
        for layer, xin in zip(self.layers, self.layer_inputs(x)):
            layer.refine(grid, xin)
        return self

    # ------------------------------------------------------------------ regularisation
    def edge_magnitudes(self, x: torch.Tensor, in_floor: float = 0.1) -> list[torch.Tensor]:
        """Spread-normalised magnitude of every edge on samples x (B, n_in): [(I_l, O_l)].

        |phi_ij| = mean_b |phi_ij(x_bi) - mean phi_ij| / (mean_b |x_bi - mean x_i| + in_floor):
        the activation's spread relative to its input's spread. Constant offsets cost nothing,
        and shrinking a node's values while steepening the edges it feeds does not lower the
        penalty (the floor keeps a nearly constant input from inflating the ratio).
        """
        mags, tr = [], self.trace(x)
        for xin, a in zip(tr.inputs, tr.acts):
            spread_out = (a - a.mean(dim=0, keepdim=True)).abs().mean(dim=0)  # (I, O)
            spread_in = (xin - xin.mean(dim=0, keepdim=True)).abs().mean(dim=0)  # (I,)
            mags.append(spread_out / (spread_in[:, None] + in_floor))
        return mags

    def regularization(self, x: torch.Tensor, l1: float = 1.0, entropy: float = 2.0,
                       in_floor: float = 0.1, eps: float = 1e-12) -> torch.Tensor:
        """KAN-paper sparsity penalty on samples x (B, n_in); a scalar.

        Sum over layers of l1 * |Phi_l|_1 + entropy * S(Phi_l), with |Phi_l|_1 the sum of the
        edge magnitudes (`edge_magnitudes`) and S the entropy of p_ij = |phi_ij| / |Phi_l|_1 over
        the whole layer (arXiv 2404.19756, eq. 2.20). The layer-wide entropy rewards routing
        all of a layer's signal through few edges; a per-node entropy would instead penalise a
        hidden node that combines two inputs, which is exactly what f(g(x) + h(y)) needs.
        Keep x small (a few hundred rows): it forms (B, I, O) tensors for every layer.
        """
        total = x.new_zeros(())
        for mag in self.edge_magnitudes(x, in_floor):
            p = mag / (mag.sum() + eps)
            total = total + l1 * mag.sum() + entropy * -(p * torch.log(p + eps)).sum()
        return total

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write config and state (symbolic edges included) to one file."""
        torch.save({"config": self.config(), "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "KAN":
        """Rebuild a network written by `save`."""
        blob = torch.load(path, map_location=device, weights_only=False)
        model = cls(**blob["config"], device=device)
        model.load_state_dict(blob["state"])
        return model
