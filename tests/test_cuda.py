"""The CUDA path (`device="cuda"`): the same networks, fits and laws as on the CPU.

Every test here needs a CUDA GPU and is skipped, with a reason, where torch sees none (CI,
laptops). `benchmarks/gpu/run.sh` runs them on a GPU machine. For a dry run of the test
code itself on a CPU machine, set KANSR_TEST_DEVICE=cpu: each test then compares the CPU
with itself, which checks the test logic, not the device.

The CPU side trains through the compiled numba kernels (`fused.NetworkMSE`) and the flat
numpy L-BFGS; the CUDA side through torch ops (`fused.SplineLayerFn`) and L-BFGS on device
tensors. Networks built with the same seed start from identical parameters on both (the
initialisation draws on the CPU, then moves), so forward passes and gradients agree to
rounding; training runs differ by rounding that L-BFGS amplifies, so fits are compared by
what they achieve, not step by step. No test asserts a time.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import sympy as sp
import torch

import kansr.kan as kk
from kansr.graph.build import network_to_graph

DEVICE = os.environ.get("KANSR_TEST_DEVICE", "cuda")

pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(),
    reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
           "benchmarks/gpu/run.sh runs these tests on a GPU machine")


def _data(n: int, d: int, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=gen, dtype=dtype) * 2 - 1
    y = torch.sin(torch.pi * X[:, :1]) + X[:, 1:2] ** 2 if d > 1 else torch.exp(X)
    return X, y


def _same(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    """a (any device) equals b to `tol`, relative to b's scale."""
    a, b = a.detach().cpu(), b.detach().cpu()
    assert a.shape == b.shape
    scale = max(float(b.abs().max()), 1.0)
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max |difference| {err:.3g} > {tol:.1g} * {scale:.3g}"


@pytest.mark.parametrize("width", [[2, 5, 1], [2, (2, 1), 1], [3, 4, 4, 2]])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_forward_and_backward_on_the_device_match_the_cpu(width, dtype, tol):
    X, _ = _data(300, width[0], dtype=dtype)
    cpu = kk.KAN(width, grid=5, seed=3, dtype=dtype)
    dev = kk.KAN(width, grid=5, seed=3, dtype=dtype, device=DEVICE)
    assert dev.device.type == DEVICE and all(p.device.type == DEVICE for p in dev.parameters())
    Xd = X.to(DEVICE)
    y = torch.cos(X.sum(1, keepdim=True)).repeat(1, cpu.n_out)
    yd = y.to(DEVICE)

    with torch.no_grad():
        out_cpu, out_dev = cpu(X), dev(Xd)
    assert out_dev.device.type == DEVICE
    _same(out_dev, out_cpu, tol)

    # parameter gradients of the MSE through the fused op (hand-written backward)
    for m, xx, yy in ((cpu, X, y), (dev, Xd, yd)):
        m.zero_grad(set_to_none=True)
        torch.mean((m(xx) - yy) ** 2).backward()
    for (name, p_cpu), p_dev in zip(cpu.named_parameters(), dev.parameters()):
        if p_cpu.grad is None:
            assert p_dev.grad is None or not p_dev.grad.any(), name
            continue
        assert p_dev.grad.device.type == DEVICE, name
        _same(p_dev.grad, p_cpu.grad, tol * 10)

    # inputs that need a gradient take the autograd layers: d out / d x agrees too
    grads = []
    for m, xx in ((cpu, X), (dev, Xd)):
        xg = xx.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(m(xg).sum(), xg)
        grads.append(g)
    _same(grads[1], grads[0], tol * 10)


def test_fused_and_autograd_layers_agree_on_the_device():
    X, _ = _data(257, 3)
    model = kk.KAN([3, 4, 1], grid=7, seed=1, dtype=torch.float64, device=DEVICE)
    layer, Xd = model.layers[0], X.to(DEVICE)
    with torch.no_grad():
        _same(layer(Xd, fused=True), layer(Xd, fused=False), 1e-12)
    # the basis matches the CPU one computed by the compiled loop
    table_dev, table_cpu = layer.spline_table(), kk.KAN(
        [3, 4, 1], grid=7, seed=1, dtype=torch.float64).layers[0].spline_table()
    from kansr.kan.fused import layer_basis
    b_dev = layer_basis(Xd, table_dev, with_grad=True)
    b_cpu = layer_basis(X, table_cpu, with_grad=True)
    _same(b_dev.dense_t, b_cpu.dense_t, 1e-12)
    _same(b_dev.ddense_t, b_cpu.ddense_t, 1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fit_on_the_device_lowers_the_loss(dtype):
    X, y = _data(1000, 2, dtype=dtype)
    model = kk.KAN([2, 5, 1], grid=5, seed=0, dtype=dtype, device=DEVICE)
    with torch.no_grad():
        before = float(torch.mean((model(X.to(DEVICE)) - y.to(DEVICE)) ** 2))
    # grid updates, the sparsity penalty and validation tracking all run on the device
    hist = kk.fit(model, X, y, steps=20, lamb=1e-3, reg_samples=256, update_grid=True,
                  grid_update_every=10, X_val=X[:200], y_val=y[:200], progress=False)
    after = hist.train_loss[-1]
    assert np.all(np.isfinite(hist.train_loss))
    assert after < before / 100, (before, after)
    assert any(hist.grid_kept), "no grid update was kept"
    assert all(p.device.type == DEVICE for p in model.parameters())
    assert all(layer.grid.device.type == DEVICE for layer in model.layers)


def test_batched_fit_on_the_device_trains_every_network():
    # fit_batched's compiled loops are CPU-only: on the device it trains the networks in turn
    X, y = _data(1000, 2)
    nets = [kk.KAN([2, 5, 1], grid=5, seed=s, dtype="float64", device=DEVICE) for s in range(3)]
    hist = kk.fit_batched(nets, X, y, steps=10, lamb=1e-3, X_val=X[:200], y_val=y[:200])
    assert all(h.train_loss[-1] < h.train_loss[0] / 10 for h in hist)
    assert all(p.device.type == DEVICE for net in nets for p in net.parameters())


def test_fit_reaches_the_same_quality_on_the_device_as_on_the_cpu():
    X, y = _data(1000, 2)
    losses = []
    for device in ("cpu", DEVICE):
        model = kk.KAN([2, 5, 1], grid=5, seed=0, dtype=torch.float64, device=device)
        hist = kk.fit(model, X, y, steps=50, update_grid=False, progress=False)
        losses.append(hist.train_loss[-1])
        assert hist.n_evals > 50
    # different rounding, different L-BFGS paths: the same order of magnitude, not the same bits
    lo, hi = sorted(losses)
    assert hi < 1e-4 and hi <= 30 * lo, losses


def test_refine_prune_and_attribution_on_the_device():
    X, y = _data(600, 2)
    Xd = X.to(DEVICE)
    model = kk.KAN([2, 5, 1], grid=5, seed=0, dtype=torch.float64, device=DEVICE)
    kk.fit(model, X, y, steps=20, lamb=1e-2, reg_samples=256, progress=False)
    with torch.no_grad():
        before = model(Xd)
    model.refine(10, Xd)  # knot insertion: the same function on the finer grid
    assert model.layers[0].grid_size == 10
    with torch.no_grad():
        _same(model(Xd), before, 1e-8)
    att = kk.attribution(model, Xd)
    assert all(e.device.type == DEVICE for e in att.edge)
    small = kk.prune(model, Xd, node_th=1e-2, edge_th=3e-2)
    assert small.device.type == DEVICE
    hist = kk.fit(small, X, y, steps=10, update_grid=False, progress=False)
    assert np.isfinite(hist.train_loss[-1])


def test_structure_probes_and_product_start_on_the_device_match_the_cpu():
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(500, 2, generator=gen, dtype=torch.float64) * 2 - 1
    y = ((X[:, 0] + 2) * torch.sin(X[:, 1] + 1.5))[:, None]
    Xd, yd = X.to(DEVICE), y.to(DEVICE)
    assert kk.additive_fit_error(Xd, yd) == pytest.approx(kk.additive_fit_error(X, y), rel=1e-6)
    assert kk.product_fit_error(Xd, yd) == pytest.approx(kk.product_fit_error(X, y), rel=1e-6,
                                                         abs=1e-14)
    nets = []
    for device, xx, yy in (("cpu", X, y), (DEVICE, Xd, yd)):
        net = kk.KAN([2, (0, 1), 1], grid=5, mult_arity=2, seed=0, dtype=torch.float64,
                     device=device)
        with torch.no_grad():
            net.layers[0].mask.zero_()
            net.layers[0].mask.fill_diagonal_(1.0)
        rel = kk.init_separable_product(net, xx, yy, fix_line_below=1.0)
        assert rel < 1e-4
        assert net.layers[1].symbolic, "the output line was not fixed"
        assert net.layers[1].grid.device.type == device
        nets.append(net)
    with torch.no_grad():
        _same(nets[1](Xd), nets[0](X), 1e-8)


def test_graph_of_a_device_network_matches_the_cpu_one():
    X, y = _data(400, 2)
    cpu = kk.KAN([2, 3, 1], grid=5, seed=0, dtype=torch.float64)
    dev = kk.KAN([2, 3, 1], grid=5, seed=0, dtype=torch.float64, device=DEVICE)
    g_cpu = network_to_graph(cpu, X, ["a", "b"])
    g_dev = network_to_graph(dev, X.to(DEVICE), ["a", "b"])  # a device tensor as X
    assert set(g_cpu.edges) == set(g_dev.edges)
    for u, v, data in g_cpu.edges(data=True):
        other = g_dev.edges[u, v]
        for key, value in data.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(other[key], value, rtol=1e-9, atol=1e-12)


def test_save_on_the_device_load_on_the_cpu(tmp_path):
    X, y = _data(300, 2)
    model = kk.KAN([2, 3, 1], grid=5, seed=0, dtype=torch.float64, device=DEVICE)
    kk.fit(model, X, y, steps=5, progress=False)
    model.save(tmp_path / "net.pt")
    back = kk.KAN.load(tmp_path / "net.pt", device="cpu")
    assert back.device.type == "cpu"
    with torch.no_grad():
        _same(back(X), model(X.to(DEVICE)), 1e-12)


@pytest.mark.parametrize("name", ["mlp", "siren", "rff"])
def test_baseline_networks_train_on_the_device(name):
    from kansr.baselines import MLP, SIREN, FourierFeatureMLP

    build = {"mlp": lambda: MLP([2, 16, 1], device=DEVICE),
             "siren": lambda: SIREN([2, 16, 1], device=DEVICE),
             "rff": lambda: FourierFeatureMLP([2, 16, 1], n_features=8, scale=3.0,
                                              device=DEVICE)}[name]
    X, y = _data(500, 2, dtype=torch.float32)
    model = build()
    assert model.device.type == DEVICE
    hist = kk.fit(model, X, y, steps=10, update_grid=False, progress=False)
    assert np.isfinite(hist.train_loss[-1]) and hist.train_loss[-1] < hist.train_loss[0]


def _product_data(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(1, 5, size=(n, 2))
    return X, X[:, 0] * X[:, 1]


@pytest.fixture(scope="module")
def product_fits():
    """KANSR fitted to y = x0 * x1 on the CPU and on the device (same seed, same data)."""
    from kansr import KANSR

    X, y = _product_data()
    fits = {device: KANSR(device=device, random_state=0, max_time=60).fit(
        X, y, variable_names=["x0", "x1"]) for device in ("cpu", DEVICE)}
    return X, y, fits


def test_estimator_on_the_device_finds_the_product_law(product_fits):
    X, y, fits = product_fits
    model = fits[DEVICE]
    assert model.kan_.device.type == DEVICE
    x0, x1 = sp.symbols("x0 x1")
    found = model.sympy()
    assert sp.simplify(found - x0 * x1) == 0, f"found {found}"
    assert model.score(X, y) > 1 - 1e-10


def test_estimator_predictions_on_the_device_agree_with_the_cpu(product_fits):
    X, y, fits = product_fits
    X_new, _ = _product_data(200, seed=1)
    pred_dev, pred_cpu = fits[DEVICE].predict(X_new), fits["cpu"].predict(X_new)
    np.testing.assert_allclose(pred_dev, pred_cpu, rtol=1e-8)
    net_dev = fits[DEVICE].predict(X_new, use="network")
    net_cpu = fits["cpu"].predict(X_new, use="network")
    assert isinstance(net_dev, np.ndarray) and net_dev.dtype == np.float64
    # two trained networks: each close to the law, so close to each other
    truth = X_new[:, 0] * X_new[:, 1]
    for pred in (net_dev, net_cpu):
        assert np.max(np.abs(pred - truth)) <= 1e-3 * np.max(np.abs(truth))
