"""Training many networks of one shape at once: restarts, and one shape on several data sets.

The discovery search trains many small networks (restarts of a shape, sub-problems, output
transforms). A small network is overhead-bound: a [2, 5, 1] evaluation on 1,000 rows costs
~90 us, mostly Python, numba call and L-BFGS bookkeeping around ~10 us of arithmetic. Here R
networks of one shape share everything but the arithmetic:

- one evaluation is one compiled call per layer and pass that loops over the networks
  (`kernels.basis`, `layer_forward`, `layer_backward` for each), so the per-call costs are
  paid once for all R;
- their parameters are views into one (R, n) buffer and their gradients into another, so the
  optimiser works on whole arrays;
- `BatchedLBFGS` keeps each network's own loss, curvature history and step length, in
  lockstep: every evaluation moves only the networks still searching along their own line,
  and a network that converges, stalls or diverges stops alone while the others go on.

The line search backtracks from the L-BFGS step (Armijo, safeguarded quadratic
interpolation) and doubles a step whose slope stays steep (weak Wolfe), instead of the
strong-Wolfe search of `lbfgs.LBFGS`, so trajectories differ from `fit`'s; the objective (MSE plus the sparsity penalty), grid updates, validation tracking,
patience and best-state restoring are `fit`'s, per network. The compiled path needs numba and
CPU rows; elsewhere (CUDA, symbolic edges) `fit_batched` trains the networks one after another
with `fit`.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import kernels
from .fused import ENABLED as _FUSED
from .kernels import _jit
from .lbfgs import BatchedLBFGS
from .spline import basis_table, eval_basis
from .network import KAN
from .train import History, _update_grid, fit
from .validation import check_xy

log = logging.getLogger(__name__)

_PARAM_NAMES = ("coef", "w_sp", "w_base", "bias")


# --------------------------------------------------------------------- compiled loops
@_jit
def _forward(active, xR, sigR, gridR, recipR, k, with_grad, do_basis, denseR, ddR, tmp_a,
             tmp_b, coefR, w_spR, w_baseR, biasR, liveR, n_sum, n_mult, arity, coef_effR, zR,
             x_nextR):  # pragma: no cover - compiled
    """One layer forward for every active network r (the basis too, if `do_basis`)."""
    for r in range(active.shape[0]):
        if not active[r]:
            continue
        if do_basis:
            kernels.basis(xR[r], gridR[r], recipR[r], k, denseR[r], ddR[r], with_grad, tmp_a,
                          tmp_b)
            kernels.silu_rows(xR[r], sigR[r], denseR[r], ddR[r], with_grad)
        kernels.layer_forward(coefR[r], w_spR[r], w_baseR[r], biasR[r], liveR[r], n_sum,
                              n_mult, arity, denseR[r], coef_effR[r], zR[r], x_nextR[r])


@_jit
def _mse(active, outR, yR, gR, losses):  # pragma: no cover - compiled
    """Each active network's MSE into losses[r], its output gradient into gR[r]."""
    for r in range(active.shape[0]):
        if active[r]:
            losses[r] = kernels.mse_and_grad(outR[r], yR[r], gR[r])


@_jit
def _backward(active, g_nextR, zR, n_sum, n_mult, arity, need_x, denseR, ddR, coefR, w_spR,
              liveR, coef_effR, g_zR, g_rawR, g_block, hT, g_coefR, g_wspR, g_wbR, g_biasR,
              g_xR):  # pragma: no cover - compiled
    """One layer backward for every active network r (gradients added, as `backward`)."""
    for r in range(active.shape[0]):
        if active[r]:
            kernels.layer_backward(g_nextR[r], zR[r], n_sum, n_mult, arity, need_x, denseR[r],
                                   ddR[r], coefR[r], w_spR[r], liveR[r], coef_effR[r], g_zR[r],
                                   g_rawR[r], g_block, hT, g_coefR[r], g_wspR[r], g_wbR[r],
                                   g_biasR[r], g_xR[r])


# --------------------------------------------------------------------- the batch
def _same_shape(models: Sequence[KAN]) -> None:
    first = models[0]
    for m in models[1:]:
        if (m.width != first.width or m.mult_arity != first.mult_arity or m.k != first.k
                or [l.coef.shape for l in m.layers] != [l.coef.shape for l in first.layers]
                or m.dtype != first.dtype or m.device != first.device):
            raise ValueError("batched training needs networks of one shape, grid, dtype and "
                             f"device: {first!r} and {m!r} differ")


def compiled_path(models: Sequence[KAN], X: torch.Tensor) -> bool:
    """Whether `BatchedMSE` serves these networks (numba, CPU rows, no symbolic edges)."""
    return (_FUSED and kernels.numba is not None and X.device.type == "cpu"
            and all(m.device.type == "cpu" and not any(l.symbolic for l in m.layers)
                    for m in models))


class BatchedMSE:
    """Per-network MSE and gradients of R same-shape KANs, one compiled call per layer and pass.

    The networks' parameters are re-seated as views into one (R, n) buffer (`flat`, numpy view
    `x`) and their `.grad` into another (`grad`, `g`), so that an optimiser sees whole arrays
    and autograd (the sparsity penalty) adds into the same gradients; `release` gives each
    network its own parameters back. Row sets are added with `add_rows` (training rows,
    validation rows): X (N, d) shared by all networks or (R, N, d) one set per network.
    """

    def __init__(self, models: Sequence[KAN]) -> None:
        self.models = list(models)
        _same_shape(self.models)
        model = self.models[0]
        self.R, self.k, self.arity = len(self.models), model.k, model.mult_arity
        self._rows: dict[str, dict] = {}
        self._seat()

    def _seat(self) -> None:
        """Parameters as views into flat (R, n), gradients into grad; per-layer constants."""
        model, R = self.models[0], self.R
        params = [[getattr(layer, n) for layer in m.layers for n in _PARAM_NAMES]
                  for m in self.models]
        sizes = [p.numel() for p in params[0]]
        flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in ps]) for ps in params])
        self.flat, self.grad = flat, torch.zeros_like(flat)
        self.x, self.g = flat.numpy(), self.grad.numpy()
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._offsets = offsets
        self._shapes = [tuple(p.shape) for p in params[0]]
        for r, ps in enumerate(params):
            for p, a, b in zip(ps, offsets[:-1], offsets[1:]):
                p.data = flat[r, a:b].view_as(p)
                p.grad = self.grad[r, a:b].view_as(p)
        self._params = params
        self._grad_views = [[p.grad for p in ps] for ps in params]
        self.layers = []
        for l, layer in enumerate(model.layers):
            views = []
            for j, name in enumerate(_PARAM_NAMES):
                a, b = offsets[l * 4 + j], offsets[l * 4 + j + 1]
                shape = tuple(getattr(layer, name).shape)
                views.append((self.x[:, a:b].reshape(R, *shape),
                              self.g[:, a:b].reshape(R, *shape)))
            tables = [m.layers[l].spline_table() for m in self.models]
            grids = torch.cat([m.layers[l].grid for m in self.models])  # (R * I, n)
            self.layers.append(dict(
                table_all=basis_table(grids, self.k),  # every network's inputs side by side
                params=[v[0] for v in views], grads=[v[1] for v in views],
                grid=np.stack([t.grid.numpy() for t in tables]),
                recip=np.stack([t.recip.numpy() for t in tables]),
                live=np.stack([(m.layers[l].mask * (1.0 - m.layers[l].sym_mask)).numpy()
                               for m in self.models]),
                n_sum=model.width[l + 1][0], n_mult=model.width[l + 1][1]))
        for rows in self._rows.values():
            rows["basis0"][:] = False  # the grids may have changed

    def add_rows(self, name: str, X: torch.Tensor, y: torch.Tensor) -> None:
        """Register rows X (N, d) or (R, N, d) with targets y (N, o) or (R, N, o)."""
        R, model = self.R, self.models[0]
        dtype, dt = model.dtype, self.x.dtype
        Xr = X.detach().to(dtype).expand(R, *X.shape[-2:]) if X.ndim == 2 else X.detach()
        yr = y.detach().to(dtype).expand(R, *y.shape[-2:]) if y.ndim == 2 else y.detach()
        # the compiled loops trust these shapes: check them here
        if (Xr.ndim != 3 or yr.ndim != 3 or Xr.shape[0] != R or yr.shape[0] != R
                or Xr.shape[2] != model.n_in or yr.shape[2] != model.n_out
                or Xr.shape[1] != yr.shape[1]):
            raise ValueError(f"rows {name!r}: X {tuple(X.shape)} and y {tuple(y.shape)} do not "
                             f"fit {R} networks with {model.n_in} inputs and {model.n_out} "
                             "outputs")
        Xr, yr = Xr.to(dtype), yr.to(dtype)
        n_rows = Xr.shape[1]
        scratch = []
        for l, layer in enumerate(model.layers):
            n_in, n_out, n_basis = layer.coef.shape
            width, n_grad = n_in * (n_basis + 1), n_rows if l > 0 else 0
            n_sum, n_mult = model.width[l + 1]
            g_block, h = kernels.input_grad_scratch(n_grad, width, n_out, dt)
            tmp_a, tmp_b = kernels.basis_scratch(layer.grid.shape[1], n_rows, dt)
            scratch.append(dict(
                sig=torch.empty(R, n_in, n_rows, dtype=dtype),
                dense=np.empty((R, width, n_rows), dt), dd=np.empty((R, width, n_grad), dt),
                coef_eff=np.empty((R, width, n_out), dt), g_raw=np.empty((R, width, n_out), dt),
                z=np.empty((R, n_out, n_rows), dt), g_z=np.empty((R, n_out, n_rows), dt),
                x_next=np.empty((R, n_sum + n_mult, n_rows), dt),
                g_x=np.empty((R, n_in, n_grad), dt), g_block=g_block, h=h, tmp_a=tmp_a,
                tmp_b=tmp_b))
        y_np = yr.transpose(1, 2).contiguous().numpy()  # (R, n_out, N)
        self._rows[name] = dict(X=Xr.transpose(1, 2).contiguous().numpy(), y=y_np,
                                g_out=np.empty_like(y_np), scratch=scratch,
                                basis0=np.zeros(R, dtype=bool))

    def zero_grad(self, active: np.ndarray) -> None:
        """Zero the gradients of the active networks (re-seating any replaced .grad view)."""
        for r in np.flatnonzero(active):
            for p, v in zip(self._params[r], self._grad_views[r]):
                if p.grad is not v:
                    p.grad = v
        self.g[active] = 0.0

    def __call__(self, active: np.ndarray, rows: str = "train",
                 with_grad: bool = True) -> np.ndarray:
        """MSE on `rows` of every active network (R,) (NaN for the others); with_grad adds each
        one's gradient into its row of `grad` (zero it first: `zero_grad`)."""
        data = self._rows[rows]
        act = active.astype(np.uint8)
        x = data["X"]
        for l, (L, S) in enumerate(zip(self.layers, data["scratch"])):
            common = (S["tmp_a"], S["tmp_b"], *L["params"], L["live"], L["n_sum"],
                      L["n_mult"], self.arity, S["coef_eff"], S["z"], S["x_next"])
            need_x = l > 0 and with_grad
            if l == 0:  # the basis of fixed rows is computed once per grid
                todo = act & ~data["basis0"]
                if todo.any():
                    torch.sigmoid(torch.from_numpy(x), out=S["sig"])
                    _forward(todo.astype(np.uint8), x, S["sig"].numpy(), L["grid"], L["recip"],
                             self.k, False, True, S["dense"], S["dd"], *common)
                    data["basis0"] |= todo.astype(bool)
                act_rest = act & ~todo.astype(np.uint8)
                if act_rest.any():
                    _forward(act_rest, x, S["sig"].numpy(), L["grid"], L["recip"], self.k,
                             False, False, S["dense"], S["dd"], *common)
            else:
                torch.sigmoid(torch.from_numpy(x), out=S["sig"])
                dd = S["dd"] if need_x else np.empty((self.R, S["dense"].shape[1], 0),
                                                    S["dense"].dtype)
                _forward(act, x, S["sig"].numpy(), L["grid"], L["recip"], self.k, need_x, True,
                         S["dense"], dd, *common)
            x = S["x_next"]
        losses = np.full(self.R, np.nan)
        _mse(act, x, data["y"], data["g_out"], losses)
        if with_grad:
            grad = data["g_out"]
            for l in range(len(self.layers) - 1, -1, -1):
                L, S = self.layers[l], data["scratch"][l]
                _backward(act, grad, S["z"], L["n_sum"], L["n_mult"], self.arity, l > 0,
                          S["dense"], S["dd"], L["params"][0], L["params"][1], L["live"],
                          S["coef_eff"], S["g_z"], S["g_raw"], S["g_block"], S["h"],
                          *L["grads"], S["g_x"])
                grad = S["g_x"]
        return losses

    def regularization(self, xr: torch.Tensor, l1: float, entropy: float,
                       active: np.ndarray, scale: float = 1.0, in_floor: float = 0.1,
                       eps: float = 1e-12) -> np.ndarray:
        """`KAN.regularization` of every network on its rows xr (R, B, d), in one autograd
        graph: the values (R,); `scale` times their gradients is added into the active rows
        of `grad`.

        The inputs of all R networks' layer are evaluated as one wide layer (R * I inputs, the
        stacked grids), so the penalty costs about one network's torch ops whatever R is.
        """
        R, model = self.R, self.models[0]
        theta = torch.from_numpy(self.x).detach().clone().requires_grad_(True)
        off, shapes = self._offsets, self._shapes
        x = xr
        total = x.new_zeros(R)
        for l, L in enumerate(self.layers):
            coef, w_sp, w_base, bias = (theta[:, off[4 * l + j]:off[4 * l + j + 1]].view(
                R, *shapes[4 * l + j]) for j in range(4))
            n_rows, n_in = x.shape[1], x.shape[2]
            wide = x.permute(1, 0, 2).reshape(n_rows, R * n_in)  # (B, R * I)
            basis = eval_basis(wide, L["table_all"]).reshape(n_rows, R, n_in, -1)
            spline = torch.einsum("brik,riok->rbio", basis, coef)
            live = torch.from_numpy(L["live"])[:, None]  # (R, 1, I, O)
            acts = (w_sp[:, None] * spline + w_base[:, None]
                    * torch.nn.functional.silu(x)[..., None]) * live
            spread_out = (acts - acts.mean(dim=1, keepdim=True)).abs().mean(dim=1)  # (R, I, O)
            spread_in = (x - x.mean(dim=1, keepdim=True)).abs().mean(dim=1)  # (R, I)
            mag = spread_out / (spread_in[..., None] + in_floor)
            p = mag / (mag.sum(dim=(1, 2), keepdim=True) + eps)
            total = total + l1 * mag.sum(dim=(1, 2)) \
                + entropy * -(p * torch.log(p + eps)).sum(dim=(1, 2))
            z = acts.sum(dim=2) + bias[:, None]  # (R, B, O)
            n_sum, n_mult = L["n_sum"], L["n_mult"]
            if n_mult:
                prods = z[..., n_sum:].reshape(R, n_rows, n_mult, self.arity).prod(dim=-1)
                z = torch.cat([z[..., :n_sum], prods], dim=-1)
            x = z
        total.sum().backward()
        rows = np.flatnonzero(active)
        self.g[rows] += scale * theta.grad.numpy()[rows]
        return total.detach().numpy()

    def release(self) -> None:
        """Give every network its own parameter tensors back (no shared buffer, no .grad)."""
        for ps in self._params:
            for p in ps:
                p.data = p.data.clone()
                p.grad = None


def _rows_per_network(name: str, X, y, R: int, model: KAN) -> tuple[torch.Tensor, torch.Tensor]:
    """X, y as (R, N, d), (R, N, o) validated tensors; 2-D inputs are shared by all R."""
    def per(a) -> list:
        t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
        if t.ndim != 3:
            return [t] * R
        if t.shape[0] != R:
            raise ValueError(f"{name}: one set of rows per network expected ({R}), got "
                             f"{t.shape[0]}")
        return list(t)

    Xs, ys = per(X), per(y)
    pairs = [check_xy(a, b, model.n_in, model.n_out, dtype=model.dtype, device=model.device)
             for a, b in zip(Xs, ys)]
    if len({len(a) for a, _ in pairs}) > 1:
        raise ValueError(f"{name}: every network needs the same number of rows")
    return torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])


def _snapshot(model: KAN) -> dict:
    """A copy of the model's state that owns its memory (views into a shared buffer are
    copied element by element, not with the whole buffer as deepcopy would)."""
    return {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def fit_batched(
    models: Sequence[KAN],
    X,
    y,
    *,
    steps: int = 100,
    lr: float = 1.0,
    lamb: float = 0.0,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    reg_samples: int = 512,
    update_grid: bool = True,
    grid_update_every: int = 10,
    stop_grid_update_step: int = 50,
    grid_eps: float = 0.02,
    grid_tol: float = 1e-6,
    X_val=None,
    y_val=None,
    patience: int | None = None,
    loss_tol: float = 0.0,
    deadline: float | None = None,
    seed: int = 0,
    progress: bool = False,
    min_rows_per_param: float = 0.5,
) -> list[History]:
    """Train R networks of one shape at once, in place; one `History` per network.

    The objective, grid updates, validation tracking, early stopping and best-state
    restoring are `fit`'s (same arguments), for every network on its own: a network whose
    validation loss stalls for `patience` steps, whose training MSE reaches `loss_tol`, or
    whose L-BFGS converges or fails stops while the others go on. X (N, d) and y are shared
    by all networks, or (R, N, d) and (R, N, o) give each its own rows (same N); likewise
    X_val, y_val. Each L-BFGS step is up to 20 iterations (25 evaluations), as in `fit`.
    Ctrl-C leaves every network in its best state so far and propagates.
    """
    models = list(models)
    if not models:
        raise ValueError("fit_batched needs at least one network")
    _same_shape(models)
    R, model = len(models), models[0]
    Xb, yb = _rows_per_network("X, y", X, y, R, model)
    for m in models:
        needed = int(min_rows_per_param * m.n_params())
        if Xb.shape[1] < max(needed, 2):
            raise ValueError(f"too few rows: {Xb.shape[1]} rows for a network with "
                             f"{m.n_params()} parameters (need at least {needed})")
    if X_val is not None:
        Xvb, yvb = _rows_per_network("X_val, y_val", X_val, y_val, R, model)
    common = dict(steps=steps, lr=lr, lamb=lamb, lamb_l1=lamb_l1, lamb_entropy=lamb_entropy,
                  reg_samples=reg_samples, update_grid=update_grid,
                  grid_update_every=grid_update_every,
                  stop_grid_update_step=stop_grid_update_step, grid_eps=grid_eps,
                  grid_tol=grid_tol, patience=patience, loss_tol=loss_tol, deadline=deadline,
                  seed=seed, progress=False, min_rows_per_param=min_rows_per_param)
    if not compiled_path(models, Xb):
        return [fit(m, Xb[r], yb[r], X_val=None if X_val is None else Xvb[r],
                    y_val=None if X_val is None else yvb[r], **common)
                for r, m in enumerate(models)]

    histories = [History() for _ in models]
    gen = torch.Generator().manual_seed(seed)  # the same penalty rows `fit` would draw
    n_rows = Xb.shape[1]
    ridx = None if reg_samples >= n_rows else torch.randperm(n_rows, generator=gen)[:reg_samples]
    xr = Xb if ridx is None else Xb[:, ridx]
    batch = BatchedMSE(models)
    batch.add_rows("train", Xb, yb)
    if X_val is not None:
        batch.add_rows("val", Xvb, yvb)
    last_mse = np.full(R, np.nan)
    counts = np.zeros(R, dtype=int)

    def evaluate(active: np.ndarray) -> np.ndarray:
        batch.zero_grad(active)
        mse = batch(active)
        counts[active] += 1
        last_mse[active] = mse[active]
        if lamb <= 0:
            return mse
        with torch.enable_grad():
            reg = batch.regularization(xr, lamb_l1, lamb_entropy, active, scale=lamb)
        return mse + lamb * reg

    def optimizer() -> BatchedLBFGS:
        return BatchedLBFGS(evaluate, batch.x, batch.g, lr=lr, history_size=10)

    active = np.ones(R, dtype=bool)
    best_val = np.full(R, np.inf)
    since_best = np.zeros(R, dtype=int)
    best: list[dict | None] = [None] * R
    opt = optimizer()
    bar = tqdm(range(steps), disable=not progress, desc=f"fit x{R}", leave=False)
    step = 0
    try:
        for step in bar:
            if update_grid and step % grid_update_every == 0 and step < stop_grid_update_step:
                for r in np.flatnonzero(active):
                    record, kept = _update_grid(models[r], Xb[r], yb[r], step, grid_eps, grid_tol)
                    histories[r].grid_updates.append(record)
                    histories[r].grid_kept.append(kept)
                batch._seat()  # grid updates replace coefficients: read every network again
                opt = optimizer()
            opt.step(active)
            for r in np.flatnonzero(active):
                histories[r].train_loss.append(float(last_mse[r]))
            if X_val is not None:
                val = batch(active, rows="val", with_grad=False)
                for r in np.flatnonzero(active):
                    histories[r].val_loss.append(float(val[r]))
                    if val[r] < best_val[r]:
                        best_val[r], since_best[r], histories[r].best_step = val[r], 0, step
                        best[r] = _snapshot(models[r])
                    else:
                        since_best[r] += 1
                        if patience is not None and since_best[r] >= patience:
                            histories[r].stopped_early = True
                            active[r] = False
            for r in np.flatnonzero(active):
                if last_mse[r] <= loss_tol or opt.done[r]:
                    active[r] = False
            if progress:
                bar.set_postfix(running=int(active.sum()), best=f"{np.nanmin(last_mse):.3e}")
            if not active.any():
                break
            if deadline is not None and time.perf_counter() > deadline:
                log.info("batched fit stopped at its deadline after %d steps", step + 1)
                break
    except KeyboardInterrupt:
        for h in histories:
            h.interrupted = True
        log.warning("batched training interrupted at step %d; keeping each network's best "
                    "state so far", step)
        raise
    finally:
        bar.close()
        batch.release()
        for r, m in enumerate(models):
            histories[r].n_evals = int(counts[r])
            if best[r] is not None:
                m.load_state_dict(best[r])
    return histories
