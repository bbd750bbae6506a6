"""Constants of a composed formula: clean, refit, prune, snap, and choose.

The composer turns a KAN's matched edges into one sympy expression full of
floats such as ``1.0000003*exp(0.99999*sin(3.14159*x) + 1.00001*y**2) - 2e-7``.
This module makes those constants right.

Data convention
---------------
Functions that look at data take ``symbols, X, y``:

* ``X`` is either a mapping ``name -> (N,) array`` (keys are symbol *names*,
  ``str(symbol)``), or an ``(N, d)`` array whose column ``j`` holds
  ``symbols[j]`` (a 1-D ``(N,)`` array is accepted when there is one symbol).
* ``symbols`` is a sequence of sympy Symbols or names. The expression's own
  symbols are matched *by name*, so assumptions (``real=True``) do not matter.
* ``y`` is an ``(N,)`` array. The loss is always the mean squared error (MSE).

Which numbers are constants
---------------------------
Every sympy ``Float`` is a constant, each occurrence separately (two ``1.0``
in different places are two parameters), including Float exponents such as
``x**2.5``. Integers, Rationals and named numbers (``x**2``, ``sqrt(x)``,
``-x``, ``x/2``, ``pi``) are exact structure and are never fitted: once a
constant is snapped to ``1/2`` or ``pi`` it stays there.

Acceptance rule (``prune_terms`` and ``snap_constants``)
--------------------------------------------------------
Both first refit all Floats, giving the reference MSE ``ref``. A change that
removes ``k`` free constants in total (relative to that reference) is kept
when, after refitting the remaining Floats::

    new_mse <= ref * (1 + rel_tol) ** k + floor_rel * var(y)

``rel_tol=None`` (default) means ``N ** (1 / N) - 1`` (:func:`constant_price`):
the description-length (BIC) price of one parameter, so on noisy data a
constant snaps only when the data cannot tell the simple value from the fitted
one. (The Akaike price ``exp(2 / N)`` is too strict for this: a constant whose
true value is the simple one fails it one time in six, by chance alone, and a
law with three such constants comes out exact only about half the time.) ``floor_rel`` (default ``1e-12``) is an
absolute floor of about float64 round-off of a near-perfect fit, so on
noiseless data the exact value snaps (``1.0000002 -> 1``), while a constant
the data says is ``0.9`` does not become ``1``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import sympy as sp
from scipy.optimize import least_squares

from kansr.fallback.base import expr_complexity as expression_complexity  # the one measure

logger = logging.getLogger(__name__)

DataLike = Union[Mapping[str, np.ndarray], np.ndarray]
CandidateFn = Callable[[float], Sequence[sp.Expr]]

__all__ = [
    "clean_expression",
    "constant_price",
    "default_snap_candidates",
    "expression_complexity",
    "pareto_front",
    "polish_expression",
    "prune_terms",
    "refit_constants",
    "refit_deadline",
    "select_best",
    "simplify_safely",
    "snap_constants",
]

_PENALTY_SCALE = 1e8  # residual cap (and value where not finite), times (1 + std(y))
_JAC_CLIP = 1e100  # jacobian entries are clipped so J.T @ J cannot overflow
_LSQ_TOL = 1e-15  # ftol = xtol = gtol for least_squares (just above machine epsilon)
_BAD = (sp.zoo, sp.nan, sp.oo, -sp.oo)


# --------------------------------------------------------------------------- data


def _as_symbols(symbols: Sequence[sp.Symbol | str]) -> list[sp.Symbol]:
    """Symbols from symbols or names."""
    return [s if isinstance(s, sp.Symbol) else sp.Symbol(str(s)) for s in symbols]


def _columns(symbols: Sequence[sp.Symbol | str], X: DataLike, n: int) -> dict[str, np.ndarray]:
    """Map symbol name -> float64 column of length ``n`` (see module docstring)."""
    names = [str(s) for s in _as_symbols(symbols)]
    if isinstance(X, Mapping):
        missing = [nm for nm in names if nm not in X and sp.Symbol(nm) not in X]
        if missing:
            raise ValueError(f"X has no column for symbols {missing}")
        cols = {nm: np.asarray(X[nm] if nm in X else X[sp.Symbol(nm)], dtype=float) for nm in names}
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim == 1 and len(names) == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(f"X has shape {arr.shape}; expected (N, {len(names)}) for symbols {names}")
        cols = {nm: arr[:, j] for j, nm in enumerate(names)}
    for nm, col in cols.items():
        if col.shape != (n,):
            raise ValueError(f"column {nm!r} has shape {col.shape}; y has {n} rows")
    return cols


def _target(y: np.ndarray) -> np.ndarray:
    """``y`` as a finite 1-D float64 array."""
    yv = np.asarray(y, dtype=float).ravel()
    if yv.size == 0 or not np.all(np.isfinite(yv)):
        raise ValueError("y must be a non-empty array of finite numbers")
    return yv


def _check_symbols(expr: sp.Expr, cols: Mapping[str, np.ndarray], params: Sequence[sp.Symbol] = ()) -> None:
    """Raise if the expression uses a variable that has no data column."""
    unknown = sorted(str(s) for s in expr.free_symbols - set(params) if str(s) not in cols)
    if unknown:
        raise ValueError(f"expression uses symbols {unknown} that are not among the data's symbols")


def _floor(yv: np.ndarray, floor_rel: float) -> float:
    """Absolute MSE floor: ``floor_rel`` times the variance of y (or its mean square)."""
    scale = float(np.var(yv)) or float(np.mean(yv**2)) or 1.0
    return floor_rel * scale


def constant_price(n: int) -> float:
    """MSE factor one free constant must buy on ``n`` rows: ``n ** (1/n)`` (BIC)."""
    n = max(int(n), 2)
    return math.exp(math.log(n) / n)


def _step_factor(rel_tol: float | None, n: int) -> float:
    """Allowed MSE growth factor per removed constant (:func:`constant_price` by default)."""
    if rel_tol is None:
        return constant_price(n)
    if rel_tol < 0:
        raise ValueError("rel_tol must be >= 0")
    return 1.0 + rel_tol


# --------------------------------------------------------------------------- parameters


def _parametrize(expr: sp.Expr) -> tuple[sp.Expr, tuple[sp.Dummy, ...], np.ndarray]:
    """Replace every Float occurrence by its own Dummy; return (expr, params, values)."""
    params: list[sp.Dummy] = []
    values: list[float] = []

    def walk(e: sp.Basic) -> sp.Basic:
        if isinstance(e, sp.Float):
            p = sp.Dummy(f"c{len(params)}")
            params.append(p)
            values.append(float(e))
            return p
        if not e.args:
            return e
        return e.func(*[walk(a) for a in e.args])

    return walk(sp.sympify(expr)), tuple(params), np.asarray(values, dtype=float)


def _restore(expr_p: sp.Expr, params: Sequence[sp.Symbol], values: Sequence[float]) -> sp.Expr:
    """Put numeric values back as sympy Floats."""
    return expr_p.xreplace({p: sp.Float(float(v)) for p, v in zip(params, values)})


@dataclass(frozen=True)
class _Model:
    """A parametrized expression compiled to numpy (value and analytic jacobian)."""

    expr: sp.Expr
    params: tuple[sp.Symbol, ...]
    var_names: tuple[str, ...]
    f: Callable[..., object]
    jac: Callable[..., object] | None


def _compile(expr_p: sp.Expr, params: Sequence[sp.Symbol]) -> _Model:
    """Lambdify ``expr_p`` (and d/dparams) with args ``(*variables, *params)``."""
    params = tuple(p for p in params if p in expr_p.free_symbols)
    variables = sorted(expr_p.free_symbols - set(params), key=str)
    args = [*variables, *params]
    f = sp.lambdify(args, expr_p, modules="numpy", cse=True)
    jac = None
    if params:
        # Differentiate with every symbol declared real: otherwise d|p*x|/dp comes out in
        # terms of re/im and unevaluated Derivatives, which numpy cannot evaluate.
        real = {a: sp.Dummy(str(a), real=True) for a in args}
        back = {v: k for k, v in real.items()}
        expr_r = expr_p.xreplace(real)
        derivs = [sp.diff(expr_r, real[p]).xreplace(back) for p in params]
        if not any(d.has(sp.Derivative, sp.Subs) for d in derivs):
            jac = sp.lambdify(args, derivs, modules="numpy", cse=True)
    return _Model(expr_p, params, tuple(str(v) for v in variables), f, jac)


def _real_vector(out: object, n: int) -> np.ndarray:
    """Broadcast a lambdified result to a float (n,) array; complex values -> nan."""
    arr = np.asarray(out)
    if np.iscomplexobj(arr):
        arr = np.where(np.abs(arr.imag) <= 1e-12 * (1 + np.abs(arr.real)), arr.real, np.nan)
    return np.broadcast_to(arr.astype(float, copy=False), (n,)).copy()


def _predict(model: _Model, cols: Mapping[str, np.ndarray], theta: np.ndarray, n: int) -> np.ndarray:
    """Model values on the data; any evaluation failure gives nan."""
    try:
        with np.errstate(all="ignore"):
            out = model.f(*(cols[v] for v in model.var_names), *theta)
        return _real_vector(out, n)
    except (ArithmeticError, ValueError, TypeError) as exc:
        logger.debug("evaluation of %s failed: %s", model.expr, exc)
        return np.full(n, np.nan)


def _jacobian(model: _Model, cols: Mapping[str, np.ndarray], theta: np.ndarray, n: int) -> np.ndarray:
    """(n, n_params) jacobian; non-finite entries -> 0."""
    try:
        with np.errstate(all="ignore"):
            outs = model.jac(*(cols[v] for v in model.var_names), *theta)  # type: ignore[misc]
        J = np.column_stack([_real_vector(o, n) for o in outs])
    except (ArithmeticError, ValueError, TypeError) as exc:
        logger.debug("jacobian of %s failed: %s", model.expr, exc)
        J = np.zeros((n, len(model.params)))
    J[~np.isfinite(J)] = 0.0
    return J


def _mse(pred: np.ndarray, yv: np.ndarray) -> float:
    """Mean squared error; inf if any prediction is not finite."""
    if not np.all(np.isfinite(pred)):
        return math.inf
    with np.errstate(over="ignore"):
        return float(np.mean((pred - yv) ** 2))


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "kansr_refit_deadline", default=None)


class _OutOfTime(Exception):
    """Raised inside a least-squares callback once the refit deadline has passed."""


@contextlib.contextmanager
def refit_deadline(deadline: float | None) -> Iterator[None]:
    """Within this block, every constant refit stops at ``deadline`` (a
    ``time.perf_counter()`` value) and keeps the best parameters found so far.

    A formula with many constants can take minutes to refit on 10,000 rows (the fit, not
    the formula, sets the pace); callers with a time budget wrap their whole polishing
    stage in this rather than threading a deadline through every helper.
    """
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _fit(
    model: _Model,
    cols: Mapping[str, np.ndarray],
    yv: np.ndarray,
    theta0: np.ndarray,
    max_nfev: int | None,
) -> tuple[np.ndarray, float]:
    """Least-squares fit of the model's params from ``theta0``; return (theta, mse)."""
    n = yv.size
    theta0 = np.where(np.isfinite(theta0), theta0, 0.0).astype(float)
    start_mse = _mse(_predict(model, cols, theta0, n), yv)
    if not model.params:
        return theta0, start_mse
    penalty = _PENALTY_SCALE * (1.0 + float(np.std(yv)))
    deadline = _DEADLINE.get()
    if deadline is not None and time.perf_counter() > deadline:
        return theta0, start_mse
    best = [math.inf, theta0]  # (sse, theta) of the best evaluated point

    def residuals(theta: np.ndarray) -> np.ndarray:
        if deadline is not None and time.perf_counter() > deadline:
            raise _OutOfTime
        r = _predict(model, cols, theta, n) - yv
        r[~np.isfinite(r)] = penalty
        r = np.clip(r, -penalty, penalty)
        sse = float(r @ r)
        if sse < best[0]:
            best[:] = [sse, np.array(theta, dtype=float)]
        return r

    def jacobian(theta: np.ndarray) -> np.ndarray:
        J = np.clip(_jacobian(model, cols, theta, n), -_JAC_CLIP, _JAC_CLIP)
        saturated = ~(np.abs(_predict(model, cols, theta, n) - yv) < penalty)
        J[saturated] = 0.0
        return J

    try:
        sol = least_squares(
            residuals, theta0, jac=jacobian if model.jac is not None else "2-point", method="trf", x_scale="jac",
            ftol=_LSQ_TOL, xtol=_LSQ_TOL, gtol=_LSQ_TOL, max_nfev=max_nfev,
        )
    except (ValueError, np.linalg.LinAlgError) as exc:
        logger.debug("least_squares failed on %s: %s", model.expr, exc)
        return theta0, start_mse
    except _OutOfTime:
        logger.info("refit of %d constants stopped at its deadline", len(model.params))
        fit_mse = _mse(_predict(model, cols, best[1], n), yv)
        return (best[1], fit_mse) if fit_mse <= start_mse else (theta0, start_mse)
    fit_mse = _mse(_predict(model, cols, sol.x, n), yv)
    if fit_mse <= start_mse:
        return sol.x, fit_mse
    return theta0, start_mse


def _fit_expr(
    expr_p: sp.Expr,
    values: Mapping[sp.Symbol, float],
    cols: Mapping[str, np.ndarray],
    yv: np.ndarray,
    max_nfev: int | None,
) -> tuple[dict[sp.Symbol, float], float]:
    """Refit whichever params of ``values`` appear in ``expr_p``; return (values, mse)."""
    model = _compile(expr_p, list(values))
    theta, mse = _fit(model, cols, yv, np.array([values[p] for p in model.params], dtype=float), max_nfev)
    return dict(zip(model.params, (float(t) for t in theta))), mse


def refit_constants(
    expr: sp.Expr,
    symbols: Sequence[sp.Symbol | str],
    X: DataLike,
    y: np.ndarray,
    *,
    max_nfev: int | None = None,
) -> tuple[sp.Expr, float]:
    """Refit every Float of ``expr`` to the data; return (refitted expression, MSE).

    Each Float occurrence (including Float exponents) becomes a parameter;
    Integers/Rationals (``x**2``, ``x/2``) stay exact. The fit is
    ``scipy.optimize.least_squares`` (TRF, analytic jacobian, float64) from the
    current values; non-finite residuals (overflow, log of a negative) count as
    a large constant penalty (``1e8 * (1 + std(y))``; larger residuals are
    clipped to it and their jacobian rows zeroed) so the optimizer backs away. The result
    is never worse than the start; the MSE is ``inf`` if the expression cannot
    be evaluated on the data at all. ``max_nfev`` is passed to least_squares
    (``None``: scipy's default, ``100 * n_params``).
    """
    yv = _target(y)
    cols = _columns(symbols, X, yv.size)
    expr_p, params, theta0 = _parametrize(expr)
    _check_symbols(expr_p, cols, params)
    values, mse = _fit_expr(expr_p, dict(zip(params, theta0)), cols, yv, max_nfev)
    return _restore(expr_p, list(values), list(values.values())), mse


# --------------------------------------------------------------------------- cleaning


def _round_float(v: float, tol: float, half: bool) -> sp.Expr | None:
    """Exact non-zero integer (or half-integer if ``half``) within ``tol`` (relative), else None."""
    step = 2 if half else 1
    k = round(v * step)
    if k != 0 and abs(v - k / step) <= tol * max(1.0, abs(v)):
        return sp.Rational(k, step)
    return None


def _drop_tiny_terms(terms: Sequence[sp.Expr], tol: float) -> list[sp.Expr]:
    """Drop Float-coefficient terms smaller than ``tol`` times the largest coefficient."""
    coeffs = [t.as_coeff_Mul()[0] for t in terms]
    scale = max((abs(float(c)) for c in coeffs), default=0.0)
    kept = [t for t, c in zip(terms, coeffs) if not (isinstance(c, sp.Float) and abs(float(c)) < tol * scale)]
    return kept or list(terms)


def _clean_node(e: sp.Basic, tol: float) -> sp.Basic:
    """Bottom-up data-free cleaning (see :func:`clean_expression`)."""
    if isinstance(e, sp.Float):
        r = _round_float(float(e), tol, half=False)
        return e if r is None else r
    if not e.args:
        return e
    if isinstance(e, sp.Pow) and isinstance(e.exp, sp.Float):
        r = _round_float(float(e.exp), tol, half=True)
        return sp.Pow(_clean_node(e.base, tol), e.exp if r is None else r)
    args = [_clean_node(a, tol) for a in e.args]
    if isinstance(e, sp.Add):
        return sp.Add(*_drop_tiny_terms(args, tol))
    return e.func(*args)


def clean_expression(
    expr: sp.Expr, tol: float = 1e-6, *, simplify: bool = True, timeout_s: float = 1.0
) -> sp.Expr:
    """Data-free cleanup of float noise.

    * a Float within ``tol`` (relative, ``|v - k| <= tol*max(1, |v|)``) of a
      non-zero integer becomes that integer, so factors ~1 vanish
      (``1.0000003*x -> x``) and ``x**2.0000001 -> x**2``;
    * a Float exponent within ``tol`` of a half-integer becomes it (``x**0.5 -> sqrt(x)``);
    * in every sum, terms with a Float coefficient below ``tol`` times the
      largest coefficient of that sum are dropped (``x - 2e-7 -> x``). This is
      a heuristic by coefficient only; :func:`prune_terms` decides on data;
    * then, if ``simplify``, :func:`simplify_safely` with ``timeout_s``.

    Floats are never turned into rationals otherwise (no ``nsimplify``).
    """
    if tol < 0:
        raise ValueError("tol must be >= 0")
    out = _clean_node(sp.sympify(expr), tol)
    return simplify_safely(out, timeout_s) if simplify else out


def _cheap_steps() -> list[Callable[[sp.Expr], sp.Expr]]:
    """Inexpensive rewrites tried before (or instead of) ``sympy.simplify``."""
    return [
        sp.powsimp,
        lambda e: sp.expand_log(e, force=False),
        sp.factor_terms,
        sp.together,
        sp.cancel,
    ]


def _acceptable(result: object, original: sp.Expr) -> bool:
    """A rewrite is usable if it is an Expr over the same symbols with no new infinities/nans."""
    if not isinstance(result, sp.Expr):
        return False
    if not result.free_symbols <= original.free_symbols:
        return False
    return not any(result.has(b) and not original.has(b) for b in _BAD)


def _simplify_steps(expr: sp.Expr, try_simplify: bool) -> Iterator[sp.Expr]:
    """Acceptable rewrites of ``expr``, cheapest first (each step starts from the best so
    far), then ``sympy.simplify`` if `try_simplify`."""
    best = expr
    for step in _cheap_steps():
        try:
            out = step(best)
        except Exception as exc:  # noqa: BLE001 - any sympy failure means "no rewrite"
            logger.debug("cheap simplification step failed: %s", exc)
            continue
        if _acceptable(out, expr):
            yield out
            if expression_complexity(out) < expression_complexity(best):
                best = out
    if try_simplify:
        try:
            out = sp.simplify(expr, rational=False)
        except Exception as exc:  # noqa: BLE001
            logger.debug("sympy.simplify failed: %s", exc)
            return
        if _acceptable(out, expr):
            yield out


def _forked_results(steps: Iterator[sp.Expr], timeout_s: float) -> list[sp.Expr]:
    """Run ``steps`` in a forked child and collect what it sends within ``timeout_s``.

    The child streams each result as soon as it has it (length-prefixed pickles), so the
    parent keeps the best form found before the deadline, and then kills the child: an
    abandoned thread would keep the GIL busy with sympy for minutes, slowing everything
    after it (one factorisation ran for a quarter of an hour in the tests).
    """
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns on fork in a threaded process (torch has threads); the
        # child touches nothing but sympy objects and the pipe, so no lock can bite.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: compute, stream, exit without running the parent's cleanup
        status = 0
        try:
            os.close(read_fd)
            for out in steps:
                data = pickle.dumps(out)
                payload = struct.pack("<Q", len(data)) + data
                while payload:
                    payload = payload[os.write(write_fd, payload):]
        except BaseException:  # noqa: BLE001 - the parent only sees what was sent
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    buf, finished = b"", False
    end = time.perf_counter() + timeout_s
    try:
        while True:
            left = end - time.perf_counter()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                finished = True
                break
            buf += chunk
    finally:
        if not finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
    if not finished:
        logger.info("simplify_safely: deadline of %.2gs reached, using best form so far",
                    timeout_s)
    results = []
    while len(buf) >= 8:
        (n,) = struct.unpack("<Q", buf[:8])
        if len(buf) < 8 + n:
            break  # cut off mid-message by the deadline
        results.append(pickle.loads(buf[8:8 + n]))
        buf = buf[8 + n:]
    return results


def _threaded_results(steps: Iterator[sp.Expr], timeout_s: float) -> list[sp.Expr]:
    """Without fork: run ``steps`` in a daemon thread, abandoned after ``timeout_s``."""
    results: list[sp.Expr] = []
    stop = threading.Event()

    def work() -> None:
        for out in steps:
            results.append(out)
            if stop.is_set():
                return

    worker = threading.Thread(target=work, name="kansr-simplify", daemon=True)
    worker.start()
    worker.join(timeout_s)
    stop.set()
    if worker.is_alive():
        logger.info("simplify_safely: deadline of %.2gs reached, using best form so far",
                    timeout_s)
    return list(results)


#: Fork is safe here (the child only runs sympy and writes to a pipe) on Linux; macOS
#: system libraries are not fork-safe and Windows has no fork.
_CAN_FORK = sys.platform.startswith("linux") and hasattr(os, "fork")


def simplify_safely(
    expr: sp.Expr,
    timeout_s: float = 2.0,
    *,
    max_nodes_simplify: int = 150,
    max_nodes_cheap: int = 3000,
) -> sp.Expr:
    """Simplify without hanging; return the smallest equivalent form found.

    Guards (sympy has no timeout):

    * size: ``sympy.simplify`` is attempted only if the tree has at most
      ``max_nodes_simplify`` nodes; the cheap rewrites (``powsimp``,
      ``expand_log``, ``factor_terms``, ``together``, ``cancel``, each applied to
      the best form so far) only up to ``max_nodes_cheap`` nodes;
    * deadline: on Linux the work runs in a forked child process that is killed
      after ``timeout_s`` seconds, keeping the forms it found by then; elsewhere it
      runs in a daemon thread that is abandoned (the step in progress keeps running
      in the background).

    A result replaces the input only if it has fewer nodes
    (:func:`expression_complexity`), no new symbols and no new ``zoo/nan/oo``.
    Floats stay Floats (``simplify`` is called with ``rational=False``).
    """
    expr = sp.sympify(expr)
    size = expression_complexity(expr)
    if size > max_nodes_cheap:
        return expr
    steps = _simplify_steps(expr, size <= max_nodes_simplify)
    run = _forked_results if _CAN_FORK else _threaded_results
    return min([expr] + run(steps, timeout_s), key=expression_complexity)


# --------------------------------------------------------------------------- pruning


def _node_at(expr: sp.Basic, path: Sequence[int]) -> sp.Basic:
    """Subtree at a path of argument indices."""
    for i in path:
        expr = expr.args[i]
    return expr


def _replace_at(expr: sp.Basic, path: Sequence[int], new: sp.Basic) -> sp.Basic:
    """Copy of ``expr`` with the subtree at ``path`` replaced by ``new``."""
    if not path:
        return new
    args = list(expr.args)
    args[path[0]] = _replace_at(args[path[0]], path[1:], new)
    return expr.func(*args)


def _add_terms(expr: sp.Basic, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], int, sp.Expr]]:
    """Yield (path of an Add node, term index, term) for every sum in the tree."""
    if isinstance(expr, sp.Add):
        for i, t in enumerate(expr.args):
            yield path, i, t
    for i, a in enumerate(expr.args):
        yield from _add_terms(a, path + (i,))


def _drop_term(expr: sp.Expr, path: tuple[int, ...], index: int) -> sp.Expr:
    """Copy of ``expr`` without term ``index`` of the sum at ``path``."""
    node = _node_at(expr, path)
    return _replace_at(expr, path, node.func(*(a for j, a in enumerate(node.args) if j != index)))


def _term_rms(term: sp.Expr, values: Mapping[sp.Symbol, float], cols: Mapping[str, np.ndarray], n: int) -> float:
    """RMS of a term on the data (inf if it cannot be evaluated); orders pruning trials."""
    model = _compile(term, list(values))
    pred = _predict(model, cols, np.array([values[p] for p in model.params], dtype=float), n)
    return float(np.sqrt(np.mean(pred**2))) if np.all(np.isfinite(pred)) else math.inf


@dataclass(frozen=True)
class _Budget:
    """Acceptance threshold: ``ref * factor**k + floor`` for ``k`` removed constants."""

    ref: float
    factor: float
    floor: float
    n_params: int

    def accepts(self, mse: float, n_left: int) -> bool:
        """True if ``mse`` is within budget with ``n_left`` constants remaining."""
        k = max(self.n_params - n_left, 0)
        return math.isfinite(mse) and mse <= self.ref * self.factor**k + self.floor


def _setup(
    expr: sp.Expr, symbols: Sequence[sp.Symbol | str], X: DataLike, y: np.ndarray,
    rel_tol: float | None, floor_rel: float, max_nfev: int | None,
) -> tuple[sp.Expr, dict[sp.Symbol, float], dict[str, np.ndarray], np.ndarray, _Budget]:
    """Parametrize, refit, and build the acceptance budget shared by prune/snap."""
    yv = _target(y)
    cols = _columns(symbols, X, yv.size)
    expr_p, params, theta0 = _parametrize(expr)
    _check_symbols(expr_p, cols, params)
    values, ref = _fit_expr(expr_p, dict(zip(params, theta0)), cols, yv, max_nfev)
    budget = _Budget(ref, _step_factor(rel_tol, yv.size), _floor(yv, floor_rel), len(values))
    return expr_p, values, cols, yv, budget


def prune_terms(
    expr: sp.Expr,
    symbols: Sequence[sp.Symbol | str],
    X: DataLike,
    y: np.ndarray,
    rel_tol: float | None = None,
    *,
    floor_rel: float = 1e-12,
    max_nfev: int | None = None,
) -> sp.Expr:
    """Drop additive terms the data does not need; return the refitted expression.

    Candidates are the terms of every sum in the tree (nested sums included)
    that contain at least one Float; exact terms are structure and are kept.
    Terms are tried greedily, smallest RMS on the data first; a removal is
    kept if, after refitting the remaining Floats, the module's acceptance
    rule holds (``rel_tol``, ``floor_rel``: see the module docstring). If the
    expression cannot be evaluated on the data, it is returned unchanged.
    """
    current, values, cols, yv, budget = _setup(expr, symbols, X, y, rel_tol, floor_rel, max_nfev)
    if not math.isfinite(budget.ref):
        logger.warning("prune_terms: %s cannot be evaluated on the data; unchanged", expr)
        return sp.sympify(expr)
    rejected: set[sp.Expr] = set()
    while True:
        trials = [
            (path, i, t) for path, i, t in _add_terms(current)
            if t not in rejected and t.free_symbols & set(values)
        ]
        if not trials:
            break
        path, i, term = min(trials, key=lambda tr: _term_rms(tr[2], values, cols, yv.size))
        trial = _drop_term(current, path, i)
        new_values, mse = _fit_expr(trial, values, cols, yv, max_nfev)
        if budget.accepts(mse, len(new_values)):
            logger.debug("prune_terms: dropped %s (mse %.3g)", term, mse)
            current, values = trial, {**values, **new_values}
        else:
            rejected.add(term)
    return _restore(current, list(values), list(values.values()))


# --------------------------------------------------------------------------- snapping

# Physics constants come as pi, 1/pi (1/(4 pi epsilon)), sqrt(2 pi) (Gaussians), ...
_SNAP_BASES: tuple[sp.Expr, ...] = (sp.Integer(1), sp.pi, 1 / sp.pi, sp.sqrt(2), sp.sqrt(3),
                                    sp.pi**2, 1 / sp.sqrt(2 * sp.pi), sp.sqrt(2 * sp.pi),
                                    sp.sqrt(sp.pi), sp.E)


def default_snap_candidates(
    value: float, *, max_denominator: int = 10, max_numerator: int = 100, max_rel_dist: float = 0.05
) -> list[sp.Expr]:
    """Simple exact values near ``value``, simplest first; always starts with 0.

    After ``0`` (drop) come ``(p/q) * base`` for base in ``1, pi, 1/pi, sqrt(2),
    sqrt(3), pi**2, 1/sqrt(2 pi), sqrt(2 pi), sqrt(pi), E`` (in that order), with ``q <= max_denominator``, ``|p| <=
    max_numerator`` (any ``p`` for integers), in lowest terms and within
    ``max_rel_dist`` (relative) of ``value``. Sorted by (base, q, |p|): so
    integers, then halves, thirds, ..., then multiples/fractions of pi, ...
    """
    if not math.isfinite(value) or value == 0:
        return [sp.Integer(0)]
    found: list[tuple[tuple[int, int, int], sp.Expr]] = []
    for rank, base in enumerate(_SNAP_BASES):
        b = float(base)
        for q in range(1, max_denominator + 1):
            p = round(value * q / b)
            if p == 0 or math.gcd(p, q) != 1 or (abs(p) > max_numerator and (q > 1 or rank > 0)):
                continue
            c = sp.Rational(p, q) * base
            if abs(float(c) - value) <= max_rel_dist * abs(value):
                found.append(((rank, q, abs(p)), c))
    found.sort(key=lambda kc: kc[0])
    return [sp.Integer(0)] + [c for _, c in found]


def _closeness(value: float, candidates: CandidateFn) -> float:
    """Relative distance to the nearest non-zero snap target (0 for ~0 values)."""
    if abs(value) < 1e-12:
        return 0.0
    dists = [abs(float(c) - value) / abs(value) for c in candidates(value) if c != 0]
    return min(dists, default=1.0)


def snap_constants(
    expr: sp.Expr,
    symbols: Sequence[sp.Symbol | str],
    X: DataLike,
    y: np.ndarray,
    *,
    rel_tol: float | None = None,
    floor_rel: float = 1e-12,
    candidates: CandidateFn = default_snap_candidates,
    max_nfev: int | None = None,
    deadline: float | None = None,
) -> sp.Expr:
    """Snap Floats to simple exact values where the data allows; return the expression.

    Past ``deadline`` (a ``time.perf_counter()`` value) no further snap is tried.

    All Floats are refitted first. Then, greedily, the constant closest
    (relatively) to a snap target is taken; its ``candidates(value)`` are tried
    in order (default :func:`default_snap_candidates`: 0, integers, p/q, p*pi/q,
    sqrt(2), sqrt(3), E multiples); after each trial substitution the remaining
    Floats are refitted, and the first candidate passing the module's
    acceptance rule is kept. Each constant is considered once. Substitutions
    producing ``zoo/nan/oo`` are skipped. Remaining Floats carry refitted values.
    """
    current, values, cols, yv, budget = _setup(expr, symbols, X, y, rel_tol, floor_rel, max_nfev)
    if not math.isfinite(budget.ref):
        logger.warning("snap_constants: %s cannot be evaluated on the data; unchanged", expr)
        return sp.sympify(expr)
    done: set[sp.Symbol] = set()
    while True:
        todo = [p for p in values if p in current.free_symbols and p not in done]
        if not todo:
            break
        p = min(todo, key=lambda q: _closeness(values[q], candidates))
        done.add(p)
        for c in candidates(values[p]):
            if deadline is not None and time.perf_counter() > deadline:
                logger.info("snap_constants: out of time, %d constant(s) left as fitted",
                            len(todo) - 1)
                break
            trial = current.xreplace({p: c})
            if any(trial.has(b) for b in _BAD):
                continue
            new_values, mse = _fit_expr(trial, values, cols, yv, max_nfev)
            if budget.accepts(mse, len(new_values)):
                logger.debug("snap_constants: %.17g -> %s (mse %.3g)", values[p], c, mse)
                current, values = trial, {**values, **new_values}
                break
    kept = [q for q in values if q in current.free_symbols]
    return _restore(current, kept, [values[q] for q in kept])


def _n_floats(expr: sp.Expr) -> int:
    return sum(1 for a in sp.preorder_traversal(expr) if isinstance(a, sp.Float))


def gather_constants(
    expr: sp.Expr, symbols: Sequence[sp.Symbol | str], X: DataLike, y: np.ndarray
) -> sp.Expr:
    """Pull constant factors out of sums and powers so redundant constants merge.

    ``6*sqrt(0.0278*x**2 + 0.0278*y**2)`` becomes ``1.0*sqrt(x**2 + y**2)``: the rewrite
    (``factor_terms`` then ``expand_power_base``) is kept only if it leaves fewer Floats and,
    refitted, fits the data as well as the original (``force=True`` splits powers of
    products, which is only valid where the bases are positive: the data decide).
    """
    try:
        cand = sp.expand_power_base(sp.factor_terms(expr), force=True)
    except Exception:  # noqa: BLE001 - a rewrite failing is no reason to fail polishing
        return expr
    if _n_floats(cand) >= _n_floats(expr):
        return expr
    _, base = refit_constants(expr, symbols, X, y)
    fitted, mse = refit_constants(cand, symbols, X, y)
    if math.isfinite(mse) and mse <= base * (1 + 1e-9) + 1e-30 * float(np.var(_target(y))):
        return fitted
    return expr


def polish_expression(
    expr: sp.Expr,
    symbols: Sequence[sp.Symbol | str],
    X: DataLike,
    y: np.ndarray,
    *,
    rel_tol: float | None = None,
    floor_rel: float = 1e-12,
    timeout_s: float = 2.0,
    deadline: float | None = None,
) -> tuple[sp.Expr, float]:
    """Convenience chain: clean -> gather -> prune -> snap -> simplify -> refit; (expr, MSE).

    Past ``deadline`` (a ``time.perf_counter()`` value) term pruning is skipped and
    snapping stops; every step still leaves a valid, refitted expression.
    """
    out = clean_expression(expr, simplify=False)
    out = gather_constants(out, symbols, X, y)
    if deadline is None or time.perf_counter() < deadline:
        out = prune_terms(out, symbols, X, y, rel_tol, floor_rel=floor_rel)
    out = snap_constants(out, symbols, X, y, rel_tol=rel_tol, floor_rel=floor_rel,
                         deadline=deadline)
    out = simplify_safely(out, timeout_s)
    return refit_constants(out, symbols, X, y)


# --------------------------------------------------------------------------- pareto front

_FRONT_COLUMNS = ["complexity", "loss", "r2", "expression", "sympy", "score"]


def pareto_front(
    candidates: Sequence[tuple[sp.Expr, float]], y: np.ndarray | None = None
) -> pd.DataFrame:
    """Non-dominated (complexity, loss) candidates, sorted by complexity.

    ``candidates`` are ``(expression, loss)`` with loss the MSE. Complexity is
    :func:`expression_complexity` (nodes of the sympy tree). A row is kept only
    if its loss is strictly below that of every simpler row (ties in
    complexity keep the lowest loss); non-finite losses are dropped. Columns:
    ``complexity, loss, r2, expression`` (str), ``sympy`` (Expr) and ``score``
    = ``-d log(loss) / d complexity`` with respect to the previous row (0 for
    the first; losses are floored at the smallest positive float). ``r2`` is
    ``1 - loss/var(y)`` if ``y`` is given, else NaN.
    """
    var_y = float(np.var(_target(y))) if y is not None else math.nan
    rows = []
    for expr, loss in candidates:
        e = sp.sympify(expr)
        if math.isfinite(float(loss)):
            rows.append((expression_complexity(e), float(loss), e))
    rows.sort(key=lambda r: (r[0], r[1]))
    kept: list[tuple[int, float, sp.Expr]] = []
    for row in rows:
        if not kept or row[1] < kept[-1][1]:
            kept.append(row)
    tiny = np.finfo(float).tiny
    records = []
    for i, (c, loss, e) in enumerate(kept):
        score = 0.0
        if i > 0:
            c0, l0 = kept[i - 1][0], kept[i - 1][1]
            score = -(math.log(max(loss, tiny)) - math.log(max(l0, tiny))) / (c - c0)
        r2 = 1.0 - loss / var_y if var_y > 0 else math.nan
        records.append((c, loss, r2, str(e), e, score))
    return pd.DataFrame.from_records(records, columns=_FRONT_COLUMNS)


def select_best(front: pd.DataFrame, rule: str = "best", *, loss_factor: float = 1.5,
                n_rows: int | None = None, noisy: bool = False) -> pd.Series:
    """Pick one row of a :func:`pareto_front`.

    Rules:

    * ``"best"`` (PySR's rule): among rows with ``loss <= loss_factor * min(loss)``, the
      one with the highest ``score`` (largest drop of log-loss per unit of complexity);
      ties -> simpler;
    * ``"mdl"`` (description length, for noisy data; needs ``n_rows``, the rows the losses
      were measured on): the row minimising ``n_rows/2 * log(loss) + complexity *
      log(n_rows)/2``, i.e. the Bayesian information criterion with one parameter per
      node: a node must lower the loss by a factor ``n_rows**(1/n_rows)`` (0.09% for 10,000
      rows), far more than a formula fitting noise gains, far less than a missing term costs;
    * ``"auto"``: ``"mdl"`` if ``noisy`` else ``"best"`` (on noise-free data the losses of
      exact laws sit at round-off, where a log-likelihood means nothing);
    * ``"accuracy"``: the lowest loss (ties -> simpler);
    * ``"parsimony"``: the simplest row with ``loss <= loss_factor * min(loss)``.
    """
    if front.empty:
        raise ValueError("empty Pareto front")
    if loss_factor < 1:
        raise ValueError("loss_factor must be >= 1")
    if rule == "auto":
        rule = "mdl" if noisy else "best"
    ordered = front.sort_values("complexity", kind="stable")
    ok = ordered[ordered["loss"] <= loss_factor * ordered["loss"].min()]
    if rule == "best":
        return ok.loc[ok["score"].idxmax()]  # idxmax returns the first (simplest) maximum
    if rule == "mdl":
        if not n_rows or n_rows < 2:
            raise ValueError("the 'mdl' rule needs n_rows >= 2")
        loss = np.maximum(ordered["loss"].to_numpy(float), np.finfo(float).tiny)
        length = 0.5 * n_rows * np.log(loss) + 0.5 * math.log(n_rows) * ordered["complexity"]
        return ordered.iloc[int(np.argmin(length.to_numpy()))]  # first minimum: simplest
    if rule == "accuracy":
        return ordered.loc[ordered["loss"].idxmin()]
    if rule == "parsimony":
        return ok.iloc[0]
    raise ValueError(f"unknown rule {rule!r}; use 'auto', 'best', 'mdl', 'accuracy' or "
                     "'parsimony'")
