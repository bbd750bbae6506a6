"""L-BFGS with a strong-Wolfe line search, on one flat parameter vector; and `BatchedLBFGS`,
many independent problems on the rows of one array, in lockstep.

The algorithm is the one `torch.optim.LBFGS` runs (Nocedal & Wright, Numerical Optimization,
algorithms 7.4 and 3.5/3.6, cubic interpolation as in minFunc): same defaults, same notion of
a step (up to `max_iter` iterations, `max_eval` closure calls). What differs is the
bookkeeping. torch's version gathers and scatters every parameter and runs its two-loop
recursion as ~40 small tensor ops per iteration: about 0.4 ms, as much as a KAN forward and
backward on a few thousand rows. Here the parameters and their gradients are views into two
flat buffers, so a closure writes the flat gradient directly, and on CPU the history lives
in two (history, n) arrays and the recursion is one compiled call (numba): as 40 numpy ops it
cost ~37 us per iteration, 15% of a [2, 5, 1] fit.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch

from .kernels import _jit, numba

C1, C2 = 1e-4, 0.9  # sufficient decrease and curvature constants (Nocedal & Wright)
MAX_GROW = 4  # `BatchedLBFGS`: doublings of a step whose slope stays steep


@_jit
def _two_loop(g, S, Y, rho, start, count, h_diag, d, alpha):  # pragma: no cover - compiled
    """d = -H g by the L-BFGS two-loop recursion over the `count` pairs of the ring buffers
    S, Y (history, n) that start at row `start`, oldest first; dots in float64."""
    m, n = S.shape
    for j in range(n):
        d[j] = -g[j]
    for c in range(count - 1, -1, -1):
        i = (start + c) % m
        acc = 0.0
        for j in range(n):
            acc += float(S[i, j]) * float(d[j])
        a = rho[i] * acc
        alpha[i] = a
        for j in range(n):
            d[j] -= a * Y[i, j]
    for j in range(n):
        d[j] *= h_diag
    for c in range(count):
        i = (start + c) % m
        acc = 0.0
        for j in range(n):
            acc += float(Y[i, j]) * float(d[j])
        b = alpha[i] - rho[i] * acc
        for j in range(n):
            d[j] += b * S[i, j]


class _RingHistory:
    """The last `size` curvature pairs (s, y) and 1 / (y.s) as ring buffers on CPU, for
    the compiled `_two_loop`."""

    def __init__(self, size: int, like: np.ndarray) -> None:
        self.S = np.empty((size, like.size), dtype=like.dtype)
        self.Y = np.empty_like(self.S)
        self.rho = np.empty(size)
        self.alpha = np.empty(size)
        self.start = self.count = 0

    def clear(self) -> None:
        self.start = self.count = 0

    def push(self, s: np.ndarray, y: np.ndarray, rho: float) -> None:
        size = len(self.rho)
        i = (self.start + self.count) % size
        if self.count == size:  # full: overwrite the oldest
            self.start = (self.start + 1) % size
        else:
            self.count += 1
        self.S[i], self.Y[i], self.rho[i] = s, y, rho

    def direction(self, g: np.ndarray, h_diag: float) -> np.ndarray:
        d = np.empty_like(g)
        _two_loop(g, self.S, self.Y, self.rho, self.start, self.count, h_diag, d, self.alpha)
        return d


def _cubic_min(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
               lo: float | None = None, hi: float | None = None) -> float:
    """Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clipped to [lo, hi]
    (default: the two points); the interval's midpoint when the cubic has no minimum."""
    if lo is None:
        lo, hi = min(x1, x2), max(x1, x2)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if disc < 0 or not math.isfinite(disc):
        return 0.5 * (lo + hi)
    d2 = math.sqrt(disc)
    if x1 <= x2:
        t = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        t = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(t, lo), hi) if math.isfinite(t) else 0.5 * (lo + hi)


class LBFGS:
    """Drop-in for `torch.optim.LBFGS(..., line_search_fn="strong_wolfe")`.

    Not a `torch.optim.Optimizer` subclass: that base class imports torch._dynamo, which
    leaves a `torchinductor_<user>` folder in the temp dir on every run; this class keeps the
    same surface (`param_groups`, `state`, `step(closure)`, `zero_grad`).

    The parameters are re-seated as views of one buffer (their values and identities are
    kept), and their `.grad` as views of another: `zero_grad` zeroes that buffer in place and
    never sets gradients to None. Create the optimizer again if parameters are replaced.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1.0,
                 max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100) -> None:
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval or max_iter * 5 // 4,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size)
        params = list(params)
        if not params or isinstance(params[0], dict):
            raise ValueError("LBFGS takes one non-empty list of parameters")
        self.defaults = defaults
        self.param_groups = [dict(defaults, params=params)]
        self.state: dict = {}
        self._params = self.param_groups[0]["params"]
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in self._params])
        self._flat, self._grad = flat, torch.zeros_like(flat)
        offset = 0
        for p in self._params:
            n = p.numel()
            p.data = flat[offset : offset + n].view_as(p)
            p.grad = self._grad[offset : offset + n].view_as(p)
            offset += n
        self._grad_views = [p.grad for p in self._params]
        # numpy views on CPU (cheap small ops); the tensors themselves elsewhere
        self._np = flat.device.type == "cpu"
        self._x = flat.numpy() if self._np else flat
        self._g = self._grad.numpy() if self._np else self._grad
        self._lbfgs: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - always in place
        """Zero the flat gradient buffer (in place: parameters keep their gradient views)."""
        for p, v in zip(self._params, self._grad_views):
            if p.grad is not v:  # someone replaced or dropped a .grad: seat the view again
                p.grad = v
        self._grad.zero_()

    # -------------------------------------------------------------- array helpers
    def _copy(self, a):
        return a.copy() if self._np else a.clone()

    @staticmethod
    def _dot(a, b) -> float:
        return float(a @ b)

    @staticmethod
    def _absmax(a) -> float:
        return float(abs(a).max())

    def _evaluate(self, closure: Callable[[], torch.Tensor], x, t: float, d):
        """Loss and a copy of the gradient at x + t d (parameters left there)."""
        self._x[:] = x
        self._x += t * d
        with torch.enable_grad():
            loss = float(closure().detach())
        return loss, self._copy(self._g)

    # -------------------------------------------------------------- line search
    def _strong_wolfe(self, closure, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, max_ls=25):
        """Step length t along d satisfying the strong Wolfe conditions:
        returns (f, g, t, evaluations) at the accepted point."""
        tol_change = self.defaults["tolerance_change"]
        d_norm = self._absmax(d)
        f_new, g_new = self._evaluate(closure, x, t, d)
        gtd_new, evals = self._dot(g_new, d), 1
        t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
        done, ls_iter = False, 0
        # Bracketing: grow t until the interval holds a point satisfying the conditions.
        while ls_iter < max_ls:
            if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
                br = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
                break
            if abs(gtd_new) <= -c2 * gtd:
                br, done = [[t, f_new, g_new, gtd_new]], True
                break
            if gtd_new >= 0:  # past the minimum along d
                br = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
                break
            t_next = _cubic_min(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                t + 0.01 * (t - t_prev), t * 10)
            t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
            t = t_next
            f_new, g_new = self._evaluate(closure, x, t, d)
            gtd_new, evals, ls_iter = self._dot(g_new, d), evals + 1, ls_iter + 1
        else:
            br = [[0.0, f, g, gtd], [t, f_new, g_new, gtd_new]]
        # Zoom: shrink the bracket [low, high] by safeguarded cubic interpolation.
        insufficient = False
        low, high = (0, 1) if len(br) == 1 or br[0][1] <= br[1][1] else (1, 0)
        while not done and ls_iter < max_ls:
            (a, fa, _, ga), (b, fb, _, gb) = br
            if abs(b - a) * d_norm < tol_change:
                break
            t = _cubic_min(a, fa, ga, b, fb, gb)
            lo, hi = min(a, b), max(a, b)
            eps = 0.1 * (hi - lo)
            if min(hi - t, t - lo) < eps:  # too close to an end: move inside, or note it
                if insufficient or t >= hi or t <= lo:
                    t = hi - eps if abs(t - hi) < abs(t - lo) else lo + eps
                    insufficient = False
                else:
                    insufficient = True
            else:
                insufficient = False
            f_new, g_new = self._evaluate(closure, x, t, d)
            gtd_new, evals, ls_iter = self._dot(g_new, d), evals + 1, ls_iter + 1
            if f_new > f + c1 * t * gtd or f_new >= br[low][1]:
                br[high] = [t, f_new, g_new, gtd_new]
            else:
                if abs(gtd_new) <= -c2 * gtd:
                    done = True
                elif gtd_new * (br[high][0] - br[low][0]) >= 0:
                    br[high] = br[low]
                br[low] = [t, f_new, g_new, gtd_new]
            low, high = (0, 1) if br[0][1] <= br[1][1] else (1, 0)
        t, f_new, g_new, _ = br[low]
        return f_new, g_new, t, evals

    # -------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """Up to `max_iter` L-BFGS iterations; returns the loss at the starting point."""
        opts, st = self.defaults, self._lbfgs
        lr, tol_grad, tol_change = opts["lr"], opts["tolerance_grad"], opts["tolerance_change"]
        with torch.enable_grad():
            orig_loss = closure()
        loss = float(orig_loss.detach())
        g = self._copy(self._g)
        evals = 1
        if self._absmax(g) <= tol_grad:
            return orig_loss
        d, t = st.get("d"), st.get("t")
        S, Y, rho = st.setdefault("S", []), st.setdefault("Y", []), st.setdefault("rho", [])
        ring = st.get("ring")
        if ring is None and self._np and numba is not None:
            ring = st["ring"] = _RingHistory(opts["history_size"], self._g)
        h_diag, prev_g, prev_loss = st.get("h_diag", 1.0), st.get("prev_g"), st.get("prev_loss")
        n_iter = 0
        while n_iter < opts["max_iter"]:
            n_iter += 1
            st["n_iter"] = st.get("n_iter", 0) + 1
            if st["n_iter"] == 1:
                d, h_diag = -g, 1.0
                S.clear(), Y.clear(), rho.clear()
                if ring is not None:
                    ring.clear()
            else:
                y, s = g - prev_g, d * t
                ys = self._dot(y, s)
                keep = ys > 1e-10  # curvature condition: keep the pair
                if keep:
                    h_diag = ys / self._dot(y, y)
                if ring is not None:
                    if keep:
                        ring.push(s, y, 1.0 / ys)
                    d = ring.direction(g, h_diag)
                else:
                    if keep:
                        if len(S) == opts["history_size"]:
                            S.pop(0), Y.pop(0), rho.pop(0)
                        S.append(s), Y.append(y), rho.append(1.0 / ys)
                    q = -g  # two-loop recursion: d = -H g
                    alpha = [0.0] * len(S)
                    for i in range(len(S) - 1, -1, -1):
                        alpha[i] = rho[i] * self._dot(S[i], q)
                        q -= alpha[i] * Y[i]
                    d = q * h_diag
                    for i in range(len(S)):
                        beta = rho[i] * self._dot(Y[i], d)
                        d += (alpha[i] - beta) * S[i]
            prev_g, prev_loss = g, loss
            t = min(1.0, 1.0 / float(abs(g).sum())) * lr if st["n_iter"] == 1 else lr
            gtd = self._dot(g, d)
            if gtd > -tol_change:  # not a descent direction
                break
            x = self._copy(self._x)
            # the line search spends what is left of max_eval (as torch's does)
            loss, g, t, ls_evals = self._strong_wolfe(closure, x, t, d, loss, g, gtd,
                                                      max_ls=opts["max_eval"] - evals)
            self._x[:] = x
            self._x += t * d
            evals += ls_evals
            if n_iter == opts["max_iter"] or evals >= opts["max_eval"]:
                break
            if self._absmax(g) <= tol_grad or self._absmax(d) * abs(t) <= tol_change \
                    or abs(loss - prev_loss) < tol_change:
                break
        st.update(d=d, t=t, h_diag=h_diag, prev_g=prev_g, prev_loss=prev_loss)
        return orig_loss


class BatchedLBFGS:
    """L-BFGS for R independent objectives on the rows of one (R, n) array, in lockstep.

    Each network keeps its own history (`lbfgs._RingHistory`), scaling, direction and step
    length; `step` runs up to `max_iter` iterations and `max_eval` evaluations, as
    `lbfgs.LBFGS.step` does for one. An evaluation moves only the networks still searching.
    `done[r]` is set for a network whose gradient or progress falls below tolerance, whose
    line search fails twice in a row (after the first failure it restarts from steepest
    descent), or whose loss is not finite; it then stays where it was.
    """

    def __init__(self, evaluate, x: np.ndarray, g: np.ndarray, lr: float = 1.0,
                 max_iter: int = 20, max_eval: int | None = None, history_size: int = 10,
                 tolerance_grad: float = 1e-32, tolerance_change: float = 1e-32) -> None:
        self.evaluate, self.x, self.g = evaluate, x, g
        self.R = x.shape[0]
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_eval or max_iter * 5 // 4
        self.tol_grad, self.tol_change = tolerance_grad, tolerance_change
        self.rings = [_RingHistory(history_size, x[0]) for _ in range(self.R)]
        self.h_diag = np.ones(self.R)
        self.n_iter = np.zeros(self.R, dtype=int)
        self.done = np.zeros(self.R, dtype=bool)
        self.failures = np.zeros(self.R, dtype=int)
        self.n_evals = 0
        # the last accepted step and the gradient before it: the curvature pair is formed
        # with the gradient after it, at the next direction
        self._last_s, self._last_g = np.zeros_like(x), np.zeros_like(x)

    def _two_loop(self, r: int, g: np.ndarray) -> np.ndarray:
        ring = self.rings[r]
        if ring.count == 0:
            return -g * self.h_diag[r]
        return ring.direction(g, self.h_diag[r])

    def step(self, active: np.ndarray) -> np.ndarray:
        """Iterate the networks in `active` (and not done); returns their losses at the start."""
        run = active & ~self.done
        f0 = self.evaluate(run)
        self.n_evals += 1
        f, g = f0.copy(), self.g.copy()
        run &= np.isfinite(f)
        self.done |= active & ~np.isfinite(f)
        evals = 1
        for _ in range(self.max_iter):
            if not run.any() or evals >= self.max_eval:
                break
            d = np.zeros_like(self.x)
            t = np.zeros(self.R)
            gtd = np.zeros(self.R)
            for r in np.flatnonzero(run):
                gr = g[r]
                if float(np.abs(gr).max()) <= self.tol_grad:
                    run[r], self.done[r] = False, True
                    continue
                if self.n_iter[r] > 0:
                    s, yv = self._last_s[r], gr - self._last_g[r]
                    ys = float(yv @ s)
                    if ys > 1e-10:  # curvature condition: keep the pair
                        self.h_diag[r] = ys / float(yv @ yv)
                        self.rings[r].push(s, yv, 1.0 / ys)
                    d[r] = self._two_loop(r, gr)
                    t[r] = self.lr
                else:
                    d[r] = -gr
                    t[r] = min(1.0, 1.0 / float(np.abs(gr).sum())) * self.lr
                gtd[r] = float(gr @ d[r])
                if gtd[r] > -self.tol_change:  # not a descent direction
                    run[r] = False
            if not run.any():
                break
            x0, f_prev = self.x.copy(), f.copy()
            searching = run.copy()
            accepted = np.zeros(self.R, dtype=bool)
            # a point meeting Armijo while the slope is still steep (weak Wolfe's curvature
            # condition fails) is kept and the step doubled, as strong-Wolfe bracketing would
            t_acc = np.zeros(self.R)
            f_acc = np.full(self.R, np.nan)
            g_acc = np.zeros_like(self.x)
            has_acc = np.zeros(self.R, dtype=bool)
            grown = np.zeros(self.R, dtype=int)
            while searching.any() and evals < self.max_eval:
                idx = np.flatnonzero(searching)
                self.x[idx] = x0[idx] + t[idx, None] * d[idx]
                fn = self.evaluate(searching)
                evals += 1
                self.n_evals += 1
                for r in idx:
                    armijo = math.isfinite(fn[r]) and fn[r] <= f[r] + C1 * t[r] * gtd[r]
                    if armijo and not (has_acc[r] and fn[r] > f_acc[r]):
                        t_acc[r], f_acc[r], has_acc[r] = t[r], fn[r], True
                        g_acc[r] = self.g[r]
                        steep = float(self.g[r] @ d[r]) < C2 * gtd[r]
                        if steep and grown[r] < MAX_GROW:
                            t[r] *= 2.0
                            grown[r] += 1
                            continue
                        searching[r] = False
                    elif has_acc[r]:  # the longer step went too far: the last one stands
                        searching[r] = False
                    else:  # safeguarded quadratic interpolation of the step
                        denom = 2.0 * (fn[r] - f[r] - gtd[r] * t[r])
                        new = -gtd[r] * t[r] ** 2 / denom if math.isfinite(fn[r]) \
                            and denom > 0 else 0.5 * t[r]
                        t[r] = min(max(new, 0.1 * t[r]), 0.5 * t[r])
            accepted = run & has_acc
            for r in np.flatnonzero(accepted):
                self.x[r] = x0[r] + t_acc[r] * d[r]
                self._last_s[r], self._last_g[r] = t_acc[r] * d[r], g[r]
                f[r], g[r] = f_acc[r], g_acc[r]
            failed = run & ~accepted
            for r in np.flatnonzero(failed):
                # no decrease along d within the evaluations left: stay put and restart from
                # steepest descent; a network that fails twice in a row has converged as far
                # as this line search can tell
                self.x[r] = x0[r]
                self.failures[r] += 1
                self.rings[r].clear()
                self.n_iter[r], self.h_diag[r] = 0, 1.0
                if self.failures[r] >= 2:
                    self.done[r] = True
            self.failures[accepted] = 0
            run &= accepted
            for r in np.flatnonzero(run):
                self.n_iter[r] += 1
                moved = abs(t[r]) * float(np.abs(d[r]).max())
                if moved <= self.tol_change or abs(f[r] - f_prev[r]) < self.tol_change:
                    run[r], self.done[r] = False, True
        self.g[:] = g  # the gradients at the accepted points, as the caller expects
        return f0
