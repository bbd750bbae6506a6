"""How noisy are the data? The noise level estimated before any network is trained.

Each of (up to) `MAX_QUERIES` rows is predicted by a least-squares fit through its `k`
nearest neighbours (itself left out), in the network's input units: a plane plus one square
term per input (cross terms would need far more neighbours in 9 dimensions). A smooth law
is locally such a surface, so the leave-one-out residual r has E[r^2] = sigma^2 (1 + h) +
bias^2, where h is the query's leverage under the neighbours' fit; sigma^2 is the mean of
r^2 / (1 + h) over all but the largest quarter (where curvature dominates), corrected for
that trim as for a chi-square with one degree of freedom. With one input, where curvature between neighbours
is negligible, the solver averages all residuals: where the noise varies from row to row
(a pi group y / x of noisy y) what a law's MSE reaches is the mean variance, which a
trimmed mean underestimates. The curvature bias makes this an upper bound on noise-free
data: `noise_floor` therefore takes the smaller of it and the trained networks' validation
error, which is the other upper bound.

`denoise` replaces each y by the same local fit's value at its own row (itself included):
an optional smoothing for very noisy tables.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import sympy
from scipy import stats
from sklearn.neighbors import NearestNeighbors

from ..expr import evaluate

#: Rows whose residuals estimate the noise (the estimate's relative error is ~sqrt(2/n)).
MAX_QUERIES = 4000
#: Share of the residuals averaged (the largest, where curvature dominates, are dropped).
KEEP = 0.75


def _trimmed_chi2_mean(keep: float) -> float:
    """Mean of a chi-square with one degree of freedom below its `keep` quantile c:
    P(chi2_3 < c) / keep (the trimmed mean's correction factor)."""
    return float(stats.chi2.cdf(stats.chi2.ppf(keep, 1), 3) / keep) if keep < 1 else 1.0
#: Relative noise variance below which the data count as noise-free: ten times below the
#: least that gamma = 0.001 gives (1e-6: SRBench's noise is gamma * RMS(y), and RMS >= std),
#: and above what curvature leaves in the local estimate on smooth noise-free data, which a
#: network then matches (1.6e-8 and 9e-9 on alpha*n/(1 - alpha*n/3) + 1): counted as noise,
#: that floor let an 11-constant look-alike end the search as "exact".
NOISE_FREE_REL = 1e-7


#: Neighbours per parameter of a local fit: estimating the noise wants small neighbourhoods
#: (little curvature), smoothing wants many neighbours (a small leverage).
ESTIMATE_NEIGHBOURS, SMOOTH_NEIGHBOURS = 2, 8


def _neighbours(d: int, n: int, per_param: int) -> int:
    # a local fit has 2d + 1 parameters
    return int(min(max(per_param * (2 * d + 1), 8), n - 1))


def _local_design(Xs: np.ndarray, queries: np.ndarray, include_self: bool, per_param: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query row's neighbours (m, k), their design rows (m, k, p) and the normal
    matrices (m, p, p) of its local fit."""
    n, d = Xs.shape
    k = _neighbours(d, n, per_param)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(Xs)
    _, idx = nn.kneighbors(Xs[queries])
    # the first neighbour is the row itself (ties aside): drop it unless wanted
    idx = idx[:, : k] if include_self else idx[:, 1:]
    centre = Xs[queries][:, None, :]
    dx = Xs[idx] - centre
    A = np.concatenate([np.ones(idx.shape + (1,)), dx, dx ** 2], axis=2)  # (m, k, p)
    p = A.shape[2]
    # a small ridge keeps degenerate neighbourhoods (repeated x values) solvable
    AtA = np.einsum("mki,mkj->mij", A, A) + 1e-10 * np.eye(p)
    return idx, A, AtA


def _local_fits(Xs: np.ndarray, y: np.ndarray, queries: np.ndarray, include_self: bool,
                per_param: int = ESTIMATE_NEIGHBOURS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction, leverage and slopes (m, d) at each query row from the local fit through
    its neighbours."""
    d = Xs.shape[1]
    idx, A, AtA = _local_design(Xs, queries, include_self, per_param)
    p = A.shape[2]
    Aty = np.einsum("mki,mk->mi", A, y[idx])
    coef = np.linalg.solve(AtA, Aty[..., None])[..., 0]
    # at the query the centred design row is (1, 0, ..., 0): prediction and leverage
    pred = coef[:, 0]
    lev = np.linalg.solve(AtA, np.eye(p)[:, :1][None].repeat(len(idx), 0))[:, 0, 0]
    return pred, lev, coef[:, 1: d + 1]


def _unit_inputs(X: np.ndarray) -> np.ndarray:
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi > lo, hi / 2 - lo / 2, 1.0)
    return (X - (lo / 2 + hi / 2)) / span


def local_smoother(X: np.ndarray, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The local fits of `estimate_noise` as a linear smoother, at up to `MAX_QUERIES` random
    rows of X (N, d): (rows (m,), neighbours (m, k), weights (m, k), scale (m,)) such that
    any y's leave-one-out residual at rows[i], divided by sqrt(1 + leverage), is
    scale[i] * y[rows[i]] - sum(weights[i] * y[neighbours[i]]): linear in y, with the mean
    square of the noise variance where y is a smooth function of X plus noise."""
    X = np.asarray(X, dtype=float)
    rows = np.random.default_rng(seed).permutation(len(X))[:MAX_QUERIES]
    idx, A, AtA = _local_design(_unit_inputs(X), rows, False, ESTIMATE_NEIGHBOURS)
    # the prediction's weights: the first row of (A^T A)^-1 A^T
    first = np.linalg.solve(AtA, np.eye(A.shape[2])[:, :1][None].repeat(len(rows), 0))[..., 0]
    weights = np.einsum("mp,mkp->mk", first, A)
    scale = 1.0 / np.sqrt(1.0 + first[:, 0])  # first[:, 0] is the leverage (`_local_fits`)
    return rows, idx, weights * scale[:, None], scale


def estimate_noise(X: np.ndarray, y: np.ndarray, seed: int = 0, keep: float = KEEP) -> float:
    """Standard deviation of the noise in y (y's units), from local-fit residuals.

    X (N, d), y (N,). An upper bound on noise-free data (curvature); 0.0 with too few rows
    to tell (fewer than three more than twice a local fit's parameters). `keep` < 1 drops
    the largest residuals (robust to curvature); 1.0 averages all (unbiased where the noise
    varies from row to row and the law is nearly flat between neighbours, as with one
    input).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, d = X.shape
    if n < 2 * (2 * d + 1) + 3 or np.ptp(y) == 0:
        return 0.0
    peak = float(np.max(np.abs(y)))  # squares of values near 1e300 would overflow
    rng = np.random.default_rng(seed)
    queries = rng.permutation(n)[:MAX_QUERIES]
    pred, lev, _ = _local_fits(_unit_inputs(X), y / peak, queries, include_self=False)
    r2 = (y[queries] / peak - pred) ** 2 / (1.0 + lev)
    kept = np.sort(r2)[: max(int(keep * len(r2)), 1)]
    return float(np.sqrt(np.mean(kept) / _trimmed_chi2_mean(keep))) * peak


def local_slopes(X: np.ndarray, y: np.ndarray, seed: int = 0, queries: int = MAX_QUERIES
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(rows (m,), slopes (m, d)): the gradient dy/dx of the same local fits (through each
    query row's neighbours, itself left out) at up to `queries` random rows."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    rows = np.random.default_rng(seed).permutation(len(X))[:queries]
    peak = float(np.max(np.abs(y))) or 1.0  # squares of values near 1e300 would overflow
    _, _, slopes = _local_fits(_unit_inputs(X), y / peak, rows, include_self=False)
    lo, hi = X.min(axis=0), X.max(axis=0)
    half = np.where(hi > lo, hi / 2 - lo / 2, 1.0)  # `_unit_inputs`' scale
    return rows, slopes / half * peak


def local_elasticities(X: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """(m, d) elasticities d log|y| / d log x_k at up to `MAX_QUERIES` rows: the slopes of the
    same local fits, with log|y| as the target and the positive columns as logs (a power law
    y = c x_k^a has elasticity a in x_k everywhere); NaN for the other columns. y must have
    no zeros; where it changes sign, log|y| is steep near the crossings and the fits there are
    off (beta (1 + alpha cos theta): beta's elasticity 1.00 at the median, 0.94-1.06 between
    the quartiles)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if not np.all(y != 0):
        raise ValueError("elasticities need a target without zeros")
    positive = np.all(X > 0, axis=0)
    Z = np.where(positive, np.log(np.where(positive, X, 1.0)), X)
    _, slopes = local_slopes(Z, np.log(np.abs(y)), seed)
    return np.where(positive, slopes, np.nan)


def noise_bound(X: np.ndarray, y: np.ndarray, seed: int, front: pd.DataFrame,
                symbols: Sequence[sympy.Symbol]) -> float:
    """The smaller of the two upper bounds on the noise's standard deviation (y's units):
    `estimate_noise` and the RMS error of the most accurate formula on `front` (a Pareto
    front with ``loss`` and ``sympy`` columns, over `symbols`)."""
    local = estimate_noise(X, y, seed)
    finest = front.loc[front["loss"].idxmin(), "sympy"]
    pred = evaluate(finest, symbols, X)
    peak = float(np.max(np.abs(y))) or 1.0  # squares near 1e300 would overflow
    rmse = peak * float(np.sqrt(np.mean(((pred - y) / peak) ** 2))) \
        if np.all(np.isfinite(pred)) else math.inf
    return min(local, rmse)


def relative_noise(noise_std: float, y: np.ndarray) -> float:
    """Noise variance as a share of var(y) (the unit of the solver's thresholds)."""
    var = float(np.var(y))
    return float(noise_std ** 2 / var) if var > 0 else 0.0


#: The networks must come this close to the local estimate (relative MSE) for the data to
#: count as noisy: a network far below it shows the estimate was curvature, not noise.
NOISE_AGREEMENT = 0.5


def noise_floor(noise_rel: float, best_val_mse: float = np.inf) -> float:
    """The relative MSE a law can be expected to reach, 0.0 for data treated as noise-free.

    The smaller of the two upper bounds (local fits, the best network's validation error);
    0.0 when it is below `NOISE_FREE_REL` or when the networks beat the local estimate by
    more than 1 / `NOISE_AGREEMENT` (then the estimate measured curvature: the thresholds of
    noise-free data apply, which is the safe side for exact recovery).
    """
    if best_val_mse < NOISE_AGREEMENT * noise_rel:
        return 0.0
    floor = min(noise_rel, best_val_mse)
    return floor if floor > NOISE_FREE_REL else 0.0


def at_noise_floor(val_mse: float, noise_rel: float) -> bool:
    """Has a network (relative validation MSE `val_mse`) reached the estimated noise? Only
    where the two agree (see `noise_floor`): a finer grid or another shape would fit noise."""
    return noise_floor(noise_rel, val_mse) > 0.0 and val_mse <= noise_rel


def denoise(X: np.ndarray, y: np.ndarray, chunk: int = 20000) -> np.ndarray:
    """y smoothed by each row's local fit through its neighbours (itself included)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, d = X.shape
    if n < 2 * (2 * d + 1) + 3:
        return y.copy()
    Xs = _unit_inputs(X)
    peak = float(np.max(np.abs(y))) or 1.0
    out = np.empty_like(y)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        out[rows] = _local_fits(Xs, y / peak, rows, include_self=True,
                                per_param=SMOOTH_NEIGHBOURS)[0] * peak
    return out
