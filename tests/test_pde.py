"""PDE problems and the physics-informed trainer (kansr.pde)."""

import math

import pytest
import torch

from kansr.baselines import MLP
from kansr.kan import KAN
from kansr.pde import PROBLEMS, ExactSolution, derivatives, l2_error, poisson, solve


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_residual_vanishes_on_exact_solution(name):
    problem = PROBLEMS[name]()
    gen = torch.Generator().manual_seed(0)
    x = problem.sample_interior(400, generator=gen, dtype=torch.float64)
    res = problem.residual(ExactSolution(problem), x)
    assert res.shape == (400,)
    assert res.abs().max().item() < 1e-10


def test_poisson_residual_is_not_trivially_zero():
    problem = poisson()
    x = problem.sample_interior(100, dtype=torch.float64)
    wrong = lambda x: (torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1]))[:, None]
    assert problem.residual(wrong, x).abs().max().item() > 0.1


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_boundary_points_and_values(name):
    problem = PROBLEMS[name]()
    xb = problem.sample_boundary(11, dtype=torch.float64)
    assert xb.shape == (44, 2)
    on_edge = (xb.abs() == 1).any(dim=1)
    assert on_edge.all()
    assert (problem.exact(xb) - problem.boundary(xb)).abs().max().item() < 1e-12


def test_derivatives_of_quadratic():
    x = torch.tensor([[0.3, -0.2], [1.0, 2.0]], dtype=torch.float64)
    u, grad, lap = derivatives(lambda z: z[:, 0] ** 2 + 3 * z[:, 0] * z[:, 1], x)
    assert torch.allclose(grad[:, 0], 2 * x[:, 0] + 3 * x[:, 1])
    assert torch.allclose(lap, torch.full((2,), 2.0, dtype=torch.float64))


def test_exact_solution_has_zero_error():
    problem = poisson()
    rel, rmse = l2_error(ExactSolution(problem), problem)
    assert rel < 1e-12 and rmse < 1e-12


@pytest.mark.parametrize("make", [lambda: KAN([2, 3, 1], grid=3, dtype="float64"),
                                  lambda: MLP([2, 8, 1], dtype="float64")])
def test_solve_lowers_loss(make):
    model = make()
    hist = solve(model, poisson(), steps=3, opt="lbfgs", n_interior=8, n_boundary=8,
                 stop_grid_update_step=2, grid_update_every=1, eval_every=1, n_eval=11)
    assert len(hist.loss) == 3 and hist.loss[-1] < hist.loss[0]
    assert len(hist.l2) == 3 and hist.eval_steps == [1, 2, 3]


def test_solve_continues_history_and_rejects_bad_options():
    model = MLP([2, 4, 1], dtype="float64")
    hist = solve(model, poisson(), steps=2, opt="adam", n_interior=5, n_boundary=5, n_eval=5)
    hist = solve(model, poisson(), steps=2, opt="adam", n_interior=5, n_boundary=5, n_eval=5,
                 interior="random", history=hist)
    assert hist.eval_steps == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        solve(model, poisson(), steps=1, opt="sgd")
    with pytest.raises(ValueError):
        solve(model, poisson(), steps=1, interior="halton")
