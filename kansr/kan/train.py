"""Training a KAN: LBFGS or Adam, sparsity regularisation, grid updates, early stopping."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .fused import NetworkMSE
from .lbfgs import LBFGS
from .network import KAN
from .validation import check_xy

log = logging.getLogger(__name__)


@dataclass
class History:
    """Per-step training record.

    grid_updates holds (step, mse_before, mse_after) for every grid update `fit` ran, and
    grid_kept whether it was kept (False: it moved the MSE by more than `grid_tol` and was
    undone).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    reg: list[float] = field(default_factory=list)
    grid_updates: list[tuple[int, float, float]] = field(default_factory=list)
    grid_kept: list[bool] = field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    n_evals: int = 0  # loss and gradient evaluations (an L-BFGS step makes up to 25)


def _make_optimizer(model: KAN, opt: str, lr: float | None) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if opt == "lbfgs":
        # Tolerances off: we decide when to stop (steps, early stopping), not LBFGS.
        return LBFGS(params, lr=lr or 1.0, history_size=10, tolerance_grad=1e-32,
                     tolerance_change=1e-32)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr or 1e-2)
    raise ValueError(f"opt must be 'lbfgs' or 'adam', got {opt!r}")


@torch.no_grad()
def _mse(model: KAN, X: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.mean((model(X) - y) ** 2))


def _update_grid(model: KAN, X: torch.Tensor, y: torch.Tensor, step: int, grid_eps: float,
                 tol: float) -> tuple[tuple[int, float, float], bool]:
    """Zoom the knots onto X; ((step, mse_before, mse_after), kept).

    The zoom keeps every breakpoint the data sees, so it preserves the function up to
    round-off; should the training MSE still move by more than `tol` (relative), the old
    grids are restored and the update is reported as not kept.
    """
    before = _mse(model, X, y)
    saved = model.grid_state()
    model.update_grid(X, grid_eps=grid_eps)
    after = _mse(model, X, y)
    if abs(after - before) > tol * before:
        log.debug("grid update at step %d undone: mse %.3e -> %.3e", step, before, after)
        model.set_grid_state(saved)
        return (step, before, before), False
    log.debug("grid update at step %d: mse %.3e -> %.3e", step, before, after)
    return (step, before, after), True


def fit(
    model: KAN,
    X,
    y,
    *,
    steps: int = 100,
    opt: str = "lbfgs",
    lr: float | None = None,
    batch: int | None = None,
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
    progress: bool = True,
    min_rows_per_param: float = 0.5,
) -> History:
    """Train `model` in place on X (N, n_in), y (N, n_out) with MSE + lamb * sparsity penalty.

    Sparsity: lamb > 0 adds `KAN.regularization` (spread-normalised edge L1 weighted lamb_l1
    plus layer-wide entropy weighted lamb_entropy, arXiv 2404.19756 eq. 2.20) evaluated on one
    fixed subset of `reg_samples` rows, so LBFGS sees a deterministic objective. lamb=0.01 with
    30 LBFGS steps sparsifies a [2, 5, 1] net enough for `prune` with its default thresholds;
    what prune leaves depends on the seed (helper nodes of a few percent), which `shrink`
    then removes by loss.
    Grid updates (every `grid_update_every` steps before `stop_grid_update_step`) zoom the
    knots onto the samples reaching each layer; one that changes the training MSE by more
    than `grid_tol` (relative) is undone (`History.grid_kept`).
    batch=None trains full batch; otherwise mini-batches of that size (one per step).
    With X_val/y_val the validation loss is tracked, the best state is restored at the end,
    and `patience` steps without improvement stop training. Training also stops once the
    training MSE is at most `loss_tol` (nothing left to learn), and at `deadline` (a
    `time.perf_counter()` value). Ctrl-C leaves the model in its best state so far and
    propagates (KeyboardInterrupt).
    """
    opt = opt.lower()
    dtype, device = model.dtype, model.device
    X, y = check_xy(X, y, model.n_in, model.n_out, dtype=dtype, device=device)
    needed = int(min_rows_per_param * model.n_params())
    if len(X) < max(needed, 2):
        raise ValueError(f"too few rows: {len(X)} rows for a network with {model.n_params()} "
                         f"parameters (need at least {needed}); use fewer hidden nodes or a "
                         "coarser grid, or collect more data")
    if X_val is not None:
        X_val, y_val = check_xy(X_val, y_val, model.n_in, model.n_out, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed)
    history = History()
    optimizer = _make_optimizer(model, opt, lr)
    best_val, best_state, since_best = float("inf"), None, 0

    def draw(n: int) -> torch.Tensor | None:
        return None if n >= len(X) else torch.randperm(len(X), generator=gen)[:n].to(device)

    ridx_fixed = draw(reg_samples)
    # Without symbolic edges the MSE and its gradient skip autograd (`fused.NetworkMSE`).
    full_mse = NetworkMSE(model, X, y) if NetworkMSE.supports(model, X) else None
    step = 0
    bar = tqdm(range(steps), disable=not progress, desc="fit", leave=False)
    try:
        for step in bar:
            if update_grid and step % grid_update_every == 0 and step < stop_grid_update_step:
                record_, kept = _update_grid(model, X, y, step, grid_eps, grid_tol)
                history.grid_updates.append(record_)
                history.grid_kept.append(kept)
                optimizer = _make_optimizer(model, opt, lr)  # parameters were replaced
            idx = draw(batch) if batch else None
            xb, yb = (X, y) if idx is None else (X[idx], y[idx])
            xr = X if ridx_fixed is None else X[ridx_fixed]
            record: dict[str, torch.Tensor] = {}

            net_mse = full_mse if idx is None else \
                NetworkMSE(model, xb, yb) if NetworkMSE.supports(model, xb) else None

            def closure() -> torch.Tensor:
                history.n_evals += 1
                optimizer.zero_grad()
                if net_mse is not None:
                    mse = net_mse()  # gradient already in .grad
                else:
                    mse = torch.nn.functional.mse_loss(model(xb), yb)
                    if lamb == 0:
                        mse.backward()
                if lamb > 0:
                    reg = model.regularization(xr, lamb_l1, lamb_entropy)
                    loss = mse + lamb * reg
                    (lamb * reg if net_mse is not None else loss).backward()
                else:
                    reg = loss = mse
                record["mse"] = mse.detach()
                record["reg"] = reg.detach() if lamb > 0 else torch.zeros(())
                return loss

            optimizer.step(closure)
            history.train_loss.append(float(record["mse"]))
            history.reg.append(float(record["reg"]))
            postfix = {"mse": f"{history.train_loss[-1]:.3e}"}
            if X_val is not None:
                with torch.no_grad():
                    val = float(torch.mean((model(X_val) - y_val) ** 2))
                history.val_loss.append(val)
                postfix["val"] = f"{val:.3e}"
                if val < best_val:
                    best_val, since_best, history.best_step = val, 0, step
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
                    if patience is not None and since_best >= patience:
                        history.stopped_early = True
                        break
            if progress:
                bar.set_postfix(postfix)
            if history.train_loss[-1] <= loss_tol:
                break
            if deadline is not None and time.perf_counter() > deadline:
                log.info("fit stopped at its deadline after %d steps", step + 1)
                break
    except KeyboardInterrupt:
        # Ctrl-C is the caller's to handle (the estimator ends its search with what it has;
        # a second press aborts): the model keeps its best state so far, and it propagates.
        history.interrupted = True
        log.warning("training interrupted at step %d; keeping the best state so far", step)
        raise
    finally:
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
    return history


def compile_kernels() -> float:
    """Compile the CPU kernels (numba, cached on disk beside the sources) by training tiny
    networks of each node kind, single and batched, in float64; returns the seconds taken.
    The first fit after an install pays this once (about 10 s on 2 cores); a benchmark calls
    it before timing its first equation, so that no equation's time includes it."""
    from .batched import fit_batched  # batched imports this module

    start = time.perf_counter()
    X = torch.linspace(0.1, 1.0, 256, dtype=torch.float64).reshape(128, 2)
    y = X[:, :1] * X[:, 1:]
    for width in ([2, 1, 1], [2, (0, 1), 1], [2, (2, 1), 1]):  # sum, product, both
        fit(KAN(width, grid=5, seed=0, dtype="float64"), X, y, steps=2, progress=False)
    fit_batched([KAN([2, (1, 1), 1], grid=5, seed=s, dtype="float64") for s in range(2)],
                X, y, steps=2)
    return time.perf_counter() - start
