"""Batched training (`kansr.kan.fit_batched`): each network trains as if alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kansr.kan import KAN, fit, fit_batched
from kansr.kan.batched import BatchedMSE, compiled_path

numba = pytest.importorskip("numba", reason="the batched kernels are compiled with numba")


def _data(n: int = 400, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.sin(2 * X[:, :1]) + X[:, 1:2] ** 2
    return X, y


def _nets(width, R: int, arity: int = 2) -> list[KAN]:
    return [KAN(width, grid=5, mult_arity=arity, seed=s, dtype="float64") for s in range(R)]


@pytest.mark.parametrize("width,arity", [([2, 5, 1], 2), ([3, (0, 1), 1], 3),
                                         ([3, (2, 1), (1, 1), 1], 2)])
def test_losses_and_gradients_equal_autograd(width, arity):
    X, _ = _data(d=width[0])
    y = X[:, :1] * X[:, -1:] + torch.cos(X[:, :1])
    nets = _nets(width, 3, arity)
    refs = copy.deepcopy(nets)
    batch = BatchedMSE(nets)
    batch.add_rows("train", X, y)
    active = np.ones(3, dtype=bool)
    batch.zero_grad(active)
    losses = batch(active)
    for r, ref in enumerate(refs):
        Xg = X.clone().requires_grad_(True)  # autograd (unfused) path through every layer
        loss = torch.mean((ref(Xg) - y) ** 2)
        params = [getattr(l, n) for l in ref.layers for n in ("coef", "w_sp", "w_base", "bias")]
        grads = torch.autograd.grad(loss, params)
        mine = [getattr(l, n).grad for l in nets[r].layers
                for n in ("coef", "w_sp", "w_base", "bias")]
        assert losses[r] == pytest.approx(float(loss.detach()), rel=1e-12)
        for g, m in zip(grads, mine):
            torch.testing.assert_close(m, g, rtol=1e-9, atol=1e-12)
    batch.release()


@pytest.mark.parametrize("width,arity", [([2, 5, 1], 2), ([3, (2, 1), (1, 1), 1], 2)])
def test_penalty_equals_each_networks_own(width, arity):
    X, y = _data(d=width[0])
    y = X[:, :1] * X[:, -1:]
    nets = _nets(width, 3, arity)
    for net in nets[1:]:  # networks on different grids
        net.update_grid(X[: 50 * int(net.seed + 1)])
    refs = copy.deepcopy(nets)
    batch = BatchedMSE(nets)
    active = np.array([True, False, True])
    batch.zero_grad(np.ones(3, dtype=bool))
    values = batch.regularization(X.expand(3, *X.shape), 1.0, 2.0, active, scale=0.5)
    for r, ref in enumerate(refs):
        reg = ref.regularization(X)
        assert values[r] == pytest.approx(float(reg.detach()), rel=1e-10)
        params = [getattr(l, n) for l in ref.layers for n in ("coef", "w_sp", "w_base", "bias")]
        grads = torch.autograd.grad(reg, params, allow_unused=True)  # the output bias is free
        grads = [torch.zeros_like(q) if g is None else g for g, q in zip(grads, params)]
        mine = [getattr(l, n).grad for l in nets[r].layers
                for n in ("coef", "w_sp", "w_base", "bias")]
        for g, m in zip(grads, mine):  # scaled, and only where the network is active
            torch.testing.assert_close(m, 0.5 * g if active[r] else torch.zeros_like(g),
                                       rtol=1e-9, atol=1e-12)
    batch.release()


def test_each_network_trains_and_keeps_its_best_state():
    X, y = _data()
    Xv, yv = _data(200, seed=1)
    nets = _nets([2, 5, 1], 4)
    with torch.no_grad():
        start = [float(torch.mean((m(Xv) - yv) ** 2)) for m in nets]
    hist = fit_batched(nets, X, y, steps=15, X_val=Xv, y_val=yv)
    for m, h, s in zip(nets, hist, start):
        val = float(torch.mean((m(Xv) - yv) ** 2).detach())
        assert val < 1e-3 * s  # every restart learned the law
        assert val == pytest.approx(min(h.val_loss), rel=1e-9)  # its best state is restored
        assert h.n_evals > 0
        # the parameters are the network's own again, not views into a shared buffer
        assert all(p.grad is None for p in m.parameters())
    nets[0].layers[0].coef.data.add_(1.0)
    assert float(torch.mean((nets[1](Xv) - yv) ** 2).detach()) == pytest.approx(
        hist[1].val_loss[hist[1].best_step])


def test_networks_on_their_own_rows():
    X, _ = _data()
    targets = torch.stack([torch.sin(2 * X[:, :1]), X[:, 1:2] ** 3])
    nets = _nets([2, 5, 1], 2)
    fit_batched(nets, X, targets, steps=20)
    with torch.no_grad():
        own = [float(torch.mean((nets[r](X) - targets[r]) ** 2)) for r in range(2)]
        other = [float(torch.mean((nets[r](X) - targets[1 - r]) ** 2)) for r in range(2)]
    assert max(own) < 1e-4 < min(other)


def test_a_converged_network_stops_alone():
    X, y = _data()
    nets = _nets([2, 5, 1], 2)
    with torch.no_grad():
        own = nets[0](X)  # network 0's target is its own output: nothing to learn
    targets = torch.stack([own, y])
    hist = fit_batched(nets, X, targets, steps=10, loss_tol=1e-20, update_grid=False)
    assert len(hist[0].train_loss) == 1 and len(hist[1].train_loss) == 10
    assert hist[1].train_loss[-1] < 0.01 * hist[1].train_loss[0]


def test_same_seed_same_result():
    X, y = _data()
    runs = []
    for _ in range(2):
        nets = _nets([2, 5, 1], 3)
        fit_batched(nets, X, y, steps=8, lamb=1e-3)
        runs.append([torch.cat([p.detach().flatten() for p in m.parameters()]) for m in nets])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_sparsity_penalty_is_each_networks_own():
    X, y = _data()
    plain, sparse = _nets([2, 5, 1], 2), _nets([2, 5, 1], 2)
    fit_batched(plain, X, y, steps=10)
    hist = fit_batched(sparse, X, y, steps=10, lamb=1e-2)
    alone = _nets([2, 5, 1], 2)
    for net, h in zip(alone, hist):  # the same trade-off as trained alone by `fit`
        h_alone = fit(net, X, y, steps=10, lamb=1e-2, progress=False)
        assert h.train_loss[-1] < 2 * h_alone.train_loss[-1]
    with torch.no_grad():
        for p, q in zip(plain, sparse):  # each network paid for its own edges
            assert float(q.regularization(X)) < 0.8 * float(p.regularization(X))


def test_symbolic_edges_fall_back_to_one_network_at_a_time():
    X, y = _data()
    nets = _nets([2, 5, 1], 2)
    nets[0].layers[0].fix_edge(0, 0, "sin(x)")
    assert not compiled_path(nets, X)
    hist = fit_batched(nets, X, y, steps=5)
    assert all(h.train_loss[-1] < h.train_loss[0] for h in hist)


def test_bad_input_is_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="do not fit"):
        BatchedMSE(_nets([2, 5, 1], 2)).add_rows("train", torch.cat([X, X], 1), y)
    with pytest.raises(ValueError, match="one shape"):
        fit_batched([KAN([2, 5, 1], dtype="float64"), KAN([2, 4, 1], dtype="float64")], X, y)
    with pytest.raises(ValueError, match="at least one network"):
        fit_batched([], X, y)
    with pytest.raises(ValueError, match="one set of rows per network"):
        fit_batched(_nets([2, 5, 1], 2), torch.stack([X, X, X]), y)
    with pytest.raises(ValueError, match="too few rows"):
        fit_batched(_nets([2, 5, 1], 2), X[:10], y[:10])


_HASH_SCRIPT = """
import hashlib, numpy as np, torch
from kansr.kan import KAN, fit
from kansr.kan.batched import BatchedMSE
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
X = torch.rand(1000, 2, generator=gen, dtype=torch.float64) * 4 - 2
y = (1 - 0.4 * X[:, 1:2]) / torch.sqrt(5 - X[:, :1] ** 2)
nets = [KAN([2, 1, 1], grid=12, seed=s, dtype="float64") for s in range(3)]
batch = BatchedMSE(nets)
batch.add_rows("train", X, y)
active = np.ones(3, dtype=bool)
batch.zero_grad(active)
loss = batch(active)
one = KAN([2, (2, 1), 1], grid=8, seed=0, dtype="float64")
fit(one, X, y, steps=5, progress=False)
print(hashlib.md5(batch.g.tobytes() + loss.tobytes()
                  + b"".join(p.detach().numpy().tobytes() for p in one.parameters())).hexdigest())
"""


def test_kernels_round_alike_freshly_compiled_and_from_the_disk_cache(tmp_path):
    """Same seed, same result in every process: the first run compiles the kernels into an
    empty numba cache, the second loads them from it (with fastmath flags these two rounded
    differently, and a fit's outcome depended on what the process had run before)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", _HASH_SCRIPT], env=env, capture_output=True,
                           text=True, check=True).stdout.strip() for _ in range(2)]
    assert any(tmp_path.rglob("*.nbi"))  # the second run had a cache to load
    assert runs[0] == runs[1]
