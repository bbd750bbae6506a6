"""Refit the constants of a formula to data: every sympy Float is a least-squares parameter.

The composer turns a KAN's matched edges into one sympy expression full of
floats such as ``1.0000003*exp(0.99999*sin(3.14159*x) + 1.00001*y**2) - 2e-7``.
This module fits those floats to the data; :mod:`kansr.compose.snap` then prunes and
snaps them, :mod:`kansr.compose.simplify` tidies the result, and
:mod:`kansr.compose.front` chooses among whole formulas.

Data convention
---------------
Functions that look at data (here and in :mod:`kansr.compose.snap`) take ``symbols, X, y``:

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
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import sympy as sp
from scipy.optimize import least_squares

logger = logging.getLogger(__name__)

DataLike = Union[Mapping[str, np.ndarray], np.ndarray]

__all__ = [
    "DataLike",
    "check_symbols",
    "compile_model",
    "data_columns",
    "parametrize",
    "predict",
    "refit_constants",
    "refit_deadline",
    "refit_params",
    "restore_floats",
    "target_vector",
]

_PENALTY_SCALE = 1e8  # residual cap (and value where not finite), times (1 + std(y))
_JAC_CLIP = 1e100  # jacobian entries are clipped so J.T @ J cannot overflow
_LSQ_TOL = 1e-15  # ftol = xtol = gtol for least_squares (just above machine epsilon)


# --------------------------------------------------------------------------- data


def _as_symbols(symbols: Sequence[sp.Symbol | str]) -> list[sp.Symbol]:
    """Symbols from symbols or names."""
    return [s if isinstance(s, sp.Symbol) else sp.Symbol(str(s)) for s in symbols]


def data_columns(symbols: Sequence[sp.Symbol | str], X: DataLike, n: int) -> dict[str, np.ndarray]:
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


def target_vector(y: np.ndarray) -> np.ndarray:
    """``y`` as a finite 1-D float64 array."""
    yv = np.asarray(y, dtype=float).ravel()
    if yv.size == 0 or not np.all(np.isfinite(yv)):
        raise ValueError("y must be a non-empty array of finite numbers")
    return yv


def check_symbols(expr: sp.Expr, cols: Mapping[str, np.ndarray], params: Sequence[sp.Symbol] = ()) -> None:
    """Raise if the expression uses a variable that has no data column."""
    unknown = sorted(str(s) for s in expr.free_symbols - set(params) if str(s) not in cols)
    if unknown:
        raise ValueError(f"expression uses symbols {unknown} that are not among the data's symbols")


# --------------------------------------------------------------------------- parameters


def parametrize(expr: sp.Expr) -> tuple[sp.Expr, tuple[sp.Dummy, ...], np.ndarray]:
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


def restore_floats(expr_p: sp.Expr, params: Sequence[sp.Symbol], values: Sequence[float]) -> sp.Expr:
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


def compile_model(expr_p: sp.Expr, params: Sequence[sp.Symbol]) -> _Model:
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


def predict(model: _Model, cols: Mapping[str, np.ndarray], theta: np.ndarray, n: int) -> np.ndarray:
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
    start_mse = _mse(predict(model, cols, theta0, n), yv)
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
        r = predict(model, cols, theta, n) - yv
        r[~np.isfinite(r)] = penalty
        r = np.clip(r, -penalty, penalty)
        sse = float(r @ r)
        if sse < best[0]:
            best[:] = [sse, np.array(theta, dtype=float)]
        return r

    def jacobian(theta: np.ndarray) -> np.ndarray:
        J = np.clip(_jacobian(model, cols, theta, n), -_JAC_CLIP, _JAC_CLIP)
        saturated = ~(np.abs(predict(model, cols, theta, n) - yv) < penalty)
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
        fit_mse = _mse(predict(model, cols, best[1], n), yv)
        return (best[1], fit_mse) if fit_mse <= start_mse else (theta0, start_mse)
    fit_mse = _mse(predict(model, cols, sol.x, n), yv)
    if fit_mse <= start_mse:
        return sol.x, fit_mse
    return theta0, start_mse


def refit_params(
    expr_p: sp.Expr,
    values: Mapping[sp.Symbol, float],
    cols: Mapping[str, np.ndarray],
    yv: np.ndarray,
    max_nfev: int | None,
) -> tuple[dict[sp.Symbol, float], float]:
    """Refit whichever params of ``values`` appear in ``expr_p``; return (values, mse)."""
    model = compile_model(expr_p, list(values))
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
    yv = target_vector(y)
    cols = data_columns(symbols, X, yv.size)
    expr_p, params, theta0 = parametrize(expr)
    check_symbols(expr_p, cols, params)
    values, mse = refit_params(expr_p, dict(zip(params, theta0)), cols, yv, max_nfev)
    return restore_floats(expr_p, list(values), list(values.values())), mse
