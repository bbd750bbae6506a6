"""Physics-informed solving of 2-D boundary-value problems with any torch network.

A `Problem` bundles a residual (computed from the network by autograd), Dirichlet boundary
values and the exact solution on a box domain. `solve` minimises

    loss = alpha * mean(residual(x_interior)^2) + mean((u(x_boundary) - g(x_boundary))^2)

with LBFGS or Adam, for a `kansr.kan.KAN` or any baseline in `kansr.baselines`, optionally
adapting a KAN's grids to the interior points during the first steps.

Problems shipped (all on [-1, 1]^2 with u = g on the boundary):

* `poisson()`: u_xx + u_yy = f, u = 0 on the boundary,
  f = -pi^2 (1 + 4 y^2) sin(pi x) sin(pi y^2) + 2 pi sin(pi x) cos(pi y^2),
  exact u = sin(pi x) sin(pi y^2)  (the KAN paper's example).
* `allen_cahn(eps)`: stationary Allen-Cahn eps^2 (u_xx + u_yy) + u - u^3 = f, u = 0 on the
  boundary, manufactured exact u = sin(pi x) sin(pi y), so
  f = (1 - 2 pi^2 eps^2) u - u^3. With eps = 0.5 the linearised operator
  -(eps^2 Laplacian + 1 - 3u^2) is positive definite (eps^2 * pi^2 / 2 > 1), so the
  solution is locally unique.
* `darcy()`: Darcy flow -div(a grad u) = f with a(x, y) = 1 + x^2 + y^2, u = 0 on the
  boundary, manufactured exact u = sin(pi x) sin(pi y), so
  f = 2 pi^2 a u - 2 pi (x cos(pi x) sin(pi y) + y sin(pi x) cos(pi y)).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .baselines import Baseline

log = logging.getLogger(__name__)

Field = Callable[[torch.Tensor], torch.Tensor]  # (B, 2) -> (B,)
Residual = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # model, (B, 2) -> (B,)

PI = math.pi

__all__ = ["Problem", "SolveHistory", "derivatives", "poisson", "allen_cahn", "darcy",
           "PROBLEMS", "solve", "l2_error", "ExactSolution"]


# ---------------------------------------------------------------------- autograd helpers
def derivatives(model: nn.Module | Field, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                     torch.Tensor]:
    """u, grad u and Laplacian of a scalar field by autograd, kept differentiable.

    x: (B, d) -> u (B,), grad (B, d), lap (B,). `model` returns (B, 1) or (B,).
    """
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    u = model(x).reshape(len(x))
    grad = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    lap = torch.zeros_like(u)
    for i in range(x.shape[1]):
        lap = lap + torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i]
    return u, grad, lap


# ---------------------------------------------------------------------- problem definition
@dataclass
class Problem:
    """A Dirichlet problem on the box `domain` = ((x_lo, x_hi), (y_lo, y_hi)).

    residual(model, x): (B, 2) -> (B,) PDE residual, zero for the exact solution.
    boundary(x): (B, 2) -> (B,) Dirichlet values g. exact(x): (B, 2) -> (B,) true u.
    """

    name: str
    residual: Residual
    boundary: Field
    exact: Field
    domain: tuple[tuple[float, float], ...] = ((-1.0, 1.0), (-1.0, 1.0))
    equation: str = ""

    @property
    def dim(self) -> int:
        return len(self.domain)

    def _bounds(self, dtype: torch.dtype, device: torch.device | str) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
        b = torch.tensor(self.domain, dtype=dtype, device=device)
        return b[:, 0], b[:, 1]

    def sample_interior(self, n: int, *, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                        ) -> torch.Tensor:
        """n uniform random interior points, (n, dim)."""
        lo, hi = self._bounds(dtype, device)
        u = torch.rand(n, self.dim, generator=generator, dtype=dtype).to(device)
        return lo + (hi - lo) * u

    def grid_interior(self, n_side: int, *, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> torch.Tensor:
        """Tensor-product mesh of n_side points per axis, endpoints included, (n_side^dim, dim)."""
        lo, hi = self._bounds(dtype, device)
        axes = [torch.linspace(0, 1, n_side, dtype=dtype, device=device) * (h - l) + l
                for l, h in zip(lo.tolist(), hi.tolist())]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, self.dim)

    def sample_boundary(self, n_per_side: int, *, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> torch.Tensor:
        """Evenly spaced points on each of the 2 * dim faces, (2 * dim * n_per_side, dim)."""
        if self.dim != 2:
            raise NotImplementedError("boundary sampling is written for 2-D domains")
        lo, hi = self._bounds(dtype, device)
        t = torch.linspace(0, 1, n_per_side, dtype=dtype, device=device)
        faces = []
        for axis in range(self.dim):
            for side in (lo[axis], hi[axis]):
                other = 1 - axis
                pts = torch.empty(n_per_side, self.dim, dtype=dtype, device=device)
                pts[:, other] = lo[other] + (hi[other] - lo[other]) * t
                pts[:, axis] = side
                faces.append(pts)
        return torch.cat(faces)


class ExactSolution(nn.Module):
    """Wrap a problem's exact u as a module (B, 2) -> (B, 1), e.g. to check its residual."""

    def __init__(self, problem: Problem) -> None:
        super().__init__()
        self.problem = problem

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.problem.exact(x)[:, None]


def _sin_sin(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(PI * x[:, 0]) * torch.sin(PI * x[:, 1])


def _zero(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(x), dtype=x.dtype, device=x.device)


def poisson() -> Problem:
    """The KAN paper's Poisson problem; see the module docstring."""

    def exact(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(PI * x[:, 0]) * torch.sin(PI * x[:, 1] ** 2)

    def source(x: torch.Tensor) -> torch.Tensor:
        X, Y = x[:, 0], x[:, 1]
        return (-PI**2 * (1 + 4 * Y**2) * torch.sin(PI * X) * torch.sin(PI * Y**2)
                + 2 * PI * torch.sin(PI * X) * torch.cos(PI * Y**2))

    def residual(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        _, _, lap = derivatives(model, x)
        return lap - source(x)

    return Problem("poisson", residual, _zero, exact,
                   equation="u_xx + u_yy = -pi^2 (1 + 4y^2) sin(pi x) sin(pi y^2) "
                            "+ 2 pi sin(pi x) cos(pi y^2); u = sin(pi x) sin(pi y^2)")


def allen_cahn(eps: float = 0.5) -> Problem:
    """Stationary Allen-Cahn with a manufactured solution; see the module docstring."""

    def source(x: torch.Tensor) -> torch.Tensor:
        u = _sin_sin(x)
        return (1 - 2 * PI**2 * eps**2) * u - u**3

    def residual(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        u, _, lap = derivatives(model, x)
        return eps**2 * lap + u - u**3 - source(x)

    return Problem("allen_cahn", residual, _zero, _sin_sin,
                   equation=f"{eps:g}^2 (u_xx + u_yy) + u - u^3 = f; u = sin(pi x) sin(pi y)")


def darcy() -> Problem:
    """Darcy flow with a smooth permeability and a manufactured solution; see the module docstring."""

    def permeability(x: torch.Tensor) -> torch.Tensor:
        return 1 + x[:, 0] ** 2 + x[:, 1] ** 2

    def source(x: torch.Tensor) -> torch.Tensor:
        X, Y = x[:, 0], x[:, 1]
        return (2 * PI**2 * permeability(x) * _sin_sin(x)
                - 2 * PI * (X * torch.cos(PI * X) * torch.sin(PI * Y)
                            + Y * torch.sin(PI * X) * torch.cos(PI * Y)))

    def residual(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        _, grad, lap = derivatives(model, x)
        a = permeability(x)
        grad_a_dot_grad_u = 2 * x[:, 0] * grad[:, 0] + 2 * x[:, 1] * grad[:, 1]
        return -(a * lap + grad_a_dot_grad_u) - source(x)

    return Problem("darcy", residual, _zero, _sin_sin,
                   equation="-div((1 + x^2 + y^2) grad u) = f; u = sin(pi x) sin(pi y)")


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "poisson": poisson, "allen_cahn": allen_cahn, "darcy": darcy,
}


# ---------------------------------------------------------------------- training
@dataclass
class SolveHistory:
    """Per-step losses and, every `eval_every` steps, errors against the exact solution."""

    loss: list[float] = field(default_factory=list)
    pde_loss: list[float] = field(default_factory=list)
    bc_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)  # relative L2 error
    rmse: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's parameters (float64 on CPU when it has none)."""
    p = next(model.parameters(), None)
    return (torch.float64, torch.device("cpu")) if p is None else (p.dtype, p.device)


@torch.no_grad()
def l2_error(model: nn.Module, problem: Problem, n_side: int = 101) -> tuple[float, float]:
    """(relative L2 error, RMSE) of the model against the exact u on an n_side^2 mesh."""
    dtype, device = _model_dtype_device(model)
    x = problem.grid_interior(n_side, dtype=dtype, device=device)
    err = model(x).reshape(-1) - problem.exact(x)
    ref = problem.exact(x)
    rmse = float(err.pow(2).mean().sqrt())
    return float(err.norm() / ref.norm().clamp_min(1e-30)), rmse


def _optimizer(model: nn.Module, opt: str, lr: float | None) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if opt == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr or 1.0, history_size=10, max_iter=20,
                                 line_search_fn="strong_wolfe", tolerance_grad=1e-32,
                                 tolerance_change=1e-32)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr or 1e-3)
    raise ValueError(f"opt must be 'lbfgs' or 'adam', got {opt!r}")


def solve(
    model: nn.Module,
    problem: Problem,
    *,
    steps: int = 50,
    opt: str = "lbfgs",
    lr: float | None = None,
    n_interior: int = 31,
    n_boundary: int = 51,
    interior: str = "mesh",
    alpha: float = 0.01,
    grid_update_every: int = 5,
    stop_grid_update_step: int = 0,
    eval_every: int = 1,
    n_eval: int = 101,
    seed: int = 0,
    history: SolveHistory | None = None,
) -> SolveHistory:
    """Physics-informed training of `model` (B, 2) -> (B, 1) on `problem`, in place.

    Interior points: an n_interior x n_interior mesh (interior="mesh") or n_interior^2 uniform
    random points (interior="random"); boundary: n_boundary points per face. The loss is
    alpha * mean(residual^2) + mean((u - g)^2) on the boundary. A model with `update_grid`
    (a KAN) has its grids adapted to the interior points every `grid_update_every` steps while
    step < stop_grid_update_step (0 disables). Pass `history` to continue a record (e.g. after
    a KAN grid refinement): eval steps then count on from its last entry.
    """
    opt = opt.lower()
    dtype, device = _model_dtype_device(model)
    gen = torch.Generator().manual_seed(seed)
    if interior == "mesh":
        x_in = problem.grid_interior(n_interior, dtype=dtype, device=device)
    elif interior == "random":
        x_in = problem.sample_interior(n_interior**2, generator=gen, dtype=dtype, device=device)
    else:
        raise ValueError(f"interior must be 'mesh' or 'random', got {interior!r}")
    x_bc = problem.sample_boundary(n_boundary, dtype=dtype, device=device)
    g_bc = problem.boundary(x_bc)
    hist = history or SolveHistory()
    offset = len(hist.loss)
    optimizer = _optimizer(model, opt, lr)
    can_regrid = callable(getattr(model, "update_grid", None)) and not isinstance(model, Baseline)
    t0 = time.perf_counter()
    for step in range(steps):
        if can_regrid and step < stop_grid_update_step and step % grid_update_every == 0:
            model.update_grid(x_in)
            optimizer = _optimizer(model, opt, lr)  # the KAN replaced its coefficient tensors
        record: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            pde = problem.residual(model, x_in).pow(2).mean()
            bc = (model(x_bc).reshape(-1) - g_bc).pow(2).mean()
            loss = alpha * pde + bc
            loss.backward()
            record.update(pde=pde.detach(), bc=bc.detach(), loss=loss.detach())
            return loss

        optimizer.step(closure)
        hist.loss.append(float(record["loss"]))
        hist.pde_loss.append(float(record["pde"]))
        hist.bc_loss.append(float(record["bc"]))
        if not math.isfinite(hist.loss[-1]):
            log.warning("%s: loss is %s at step %d; stopping", problem.name, hist.loss[-1], step)
            break
        if eval_every and ((step + 1) % eval_every == 0 or step == steps - 1):
            l2, rmse = l2_error(model, problem, n_eval)
            hist.eval_steps.append(offset + step + 1)
            hist.l2.append(l2)
            hist.rmse.append(rmse)
            log.debug("%s step %d: loss %.3e pde %.3e bc %.3e L2 %.3e", problem.name,
                      offset + step + 1, hist.loss[-1], hist.pde_loss[-1], hist.bc_loss[-1], l2)
    hist.seconds += time.perf_counter() - t0
    return hist
