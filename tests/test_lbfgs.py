"""kansr's L-BFGS (flat buffers, strong Wolfe) against torch.optim.LBFGS."""

import pytest
import torch

from kansr.kan.lbfgs import LBFGS


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def _counted_closure(opt, x: torch.Tensor) -> tuple:
    """A Rosenbrock closure for `opt` and its call counter (a one-item list)."""
    evals = [0]

    def closure():
        evals[0] += 1
        opt.zero_grad()
        loss = _rosenbrock(x)
        loss.backward()
        return loss

    return closure, evals


def _minimise(cls, start: torch.Tensor, steps: int, **kw) -> tuple[torch.Tensor, int]:
    x = torch.nn.Parameter(start.clone())
    kw = {"history_size": 10, **kw}
    opt = cls([x], lr=1.0, tolerance_grad=1e-32, tolerance_change=1e-32, **kw)
    closure, evals = _counted_closure(opt, x)
    for _ in range(steps):
        opt.step(closure)
    return x.detach(), evals[0]


@pytest.mark.parametrize("n", [2, 10])
def test_reaches_the_rosenbrock_minimum_like_torch(n):
    start = torch.full((n,), -1.2, dtype=torch.float64)
    start[1::2] = 1.0
    ours, ours_evals = _minimise(LBFGS, start, steps=10)
    ref, ref_evals = _minimise(torch.optim.LBFGS, start, steps=10, line_search_fn="strong_wolfe")
    torch.testing.assert_close(ref, torch.ones(n, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours, torch.ones(n, dtype=torch.float64), atol=1e-6, rtol=0)
    if n == 2:  # the same algorithm: on this small problem the very same iterates
        assert ours_evals == ref_evals


def _one_step(cls, lr: float, **kw) -> tuple[int, int]:
    """(closure calls, iterations) of one step on Rosenbrock from (-1.2, 1)."""
    x = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    if cls is torch.optim.LBFGS:
        kw["line_search_fn"] = "strong_wolfe"
    opt = cls([x], lr=lr, tolerance_grad=1e-32, tolerance_change=1e-32, history_size=10, **kw)
    closure, evals = _counted_closure(opt, x)
    opt.step(closure)
    state = opt._lbfgs if cls is LBFGS else opt.state[opt._params[0]]
    return evals[0], state["n_iter"]


def test_max_eval_defaults_to_five_quarters_of_max_iter():
    x = torch.nn.Parameter(torch.zeros(2))
    assert LBFGS([x], max_iter=3).defaults["max_eval"] == 3
    assert LBFGS([x]).defaults["max_eval"] == 25
    assert LBFGS([x], max_iter=3, max_eval=7).defaults["max_eval"] == 7


@pytest.mark.parametrize("lr", [1.0, 1e3])  # 1e3: every first trial overshoots, long searches
@pytest.mark.parametrize("max_iter,max_eval", [(3, None), (1, None), (20, 4), (5, 8), (3, 100)])
def test_a_step_is_max_iter_iterations_and_max_eval_evaluations(lr, max_iter, max_eval):
    """A step stops after max_iter iterations or once max_eval closure calls are spent; the
    line search gets what is left of max_eval, so a step makes at most max_eval + 1 calls
    (the search's first trial point comes on top), exactly as many as torch's."""
    evals, iters = _one_step(LBFGS, lr, max_iter=max_iter, max_eval=max_eval)
    budget = max_eval or max_iter * 5 // 4
    assert 1 <= iters <= max_iter
    assert evals <= budget + 1
    assert iters == max_iter or evals >= budget  # it stopped for one of the two reasons
    assert (evals, iters) == _one_step(torch.optim.LBFGS, lr, max_iter=max_iter,
                                       max_eval=max_eval)


def test_a_generous_eval_budget_runs_all_iterations():
    evals, iters = _one_step(LBFGS, 1.0, max_iter=3, max_eval=100)
    assert iters == 3 and evals > 3  # three line searches beyond the first evaluation


def test_parameters_keep_identity_values_and_gradients():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    params, before = list(model.parameters()), [p.detach().clone() for p in model.parameters()]
    opt = LBFGS(model.parameters(), tolerance_grad=1e-32, tolerance_change=1e-32)
    assert list(model.parameters()) == params  # same Parameter objects...
    for p, b in zip(params, before):
        assert torch.equal(p, b)  # ...same values, now views of one buffer
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(20, 3, dtype=torch.float64, generator=gen)
    y = torch.randn(20, 2, dtype=torch.float64, generator=gen)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        return loss

    opt.step(closure)
    model.weight.grad = None  # someone drops a gradient: the next zero_grad reseats it
    loss = opt.step(closure)
    assert model.weight.grad is not None
    lstsq = torch.linalg.lstsq(torch.cat([X, torch.ones(20, 1, dtype=X.dtype)], 1), y).solution
    torch.testing.assert_close(model.weight.detach(), lstsq[:3].T, atol=1e-8, rtol=0)
    assert float(loss.detach()) > 0


@pytest.mark.parametrize("history", [10, 3])
def test_tensor_bookkeeping_used_off_cpu_gives_the_same_iterates(history):
    """On CUDA the recursion runs on the flat tensors themselves, on CPU in a compiled call
    over ring buffers (history 3: the ring wraps many times); the same iterates."""
    start = torch.full((6,), -1.2, dtype=torch.float64)
    start[1::2] = 1.0
    ours, _ = _minimise(LBFGS, start, steps=3, history_size=history)

    class TensorLBFGS(LBFGS):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._np, self._x, self._g = False, self._flat, self._grad

    other, _ = _minimise(TensorLBFGS, start, steps=3, history_size=history)
    torch.testing.assert_close(other, ours, atol=1e-8, rtol=0)  # dot products round apart
