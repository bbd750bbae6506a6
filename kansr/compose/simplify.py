"""Data-free tidying of a formula: float noise cleaned up, then simplified without hanging.

:func:`clean_expression` rounds floats that are integers (or half-integer exponents) to
round-off and drops negligible terms; :func:`simplify_safely` runs cheap sympy rewrites
and ``sympy.simplify`` under a size guard and a deadline (a forked child process on Linux,
a daemon thread elsewhere), keeping the smallest equivalent form found.
"""

from __future__ import annotations

import contextlib
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
from typing import Callable, Iterator, Sequence

import sympy as sp

from kansr.fallback.base import expr_complexity as expression_complexity  # the one measure

logger = logging.getLogger(__name__)

__all__ = ["NON_FINITE", "clean_expression", "hyperbolic_of_logs", "simplify_safely"]

#: Values a rewrite or a substituted constant must not introduce (division by zero, ...).
NON_FINITE = (sp.zoo, sp.nan, sp.oo, -sp.oo)


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
    period = _PERIODS.get(e.func)
    if period is not None:
        const, rest = args[0].as_coeff_Add()
        if isinstance(const, sp.Float) and rest != 0:
            # the phase into [-P/2, P/2]: fits from different starts land on any branch,
            # and cos(t - 12.566) neither reads as nor snaps to cos(t)
            reduced = float(const) - period * round(float(const) / period)
            # the sum's own terms, so the reduced phase is measured against their
            # coefficients (a whole Add counts as coefficient 1)
            terms = [*sp.Add.make_args(rest), sp.Float(reduced)]
            args = [sp.Add(*_drop_tiny_terms(terms, tol))]
    return e.func(*args)


#: Periods of the periodic functions whose phase `_clean_node` reduces.
_PERIODS = {sp.sin: 2 * math.pi, sp.cos: 2 * math.pi, sp.sec: 2 * math.pi,
            sp.csc: 2 * math.pi, sp.tan: math.pi, sp.cot: math.pi}


def clean_expression(
    expr: sp.Expr, tol: float = 1e-6, *, simplify: bool = True, timeout_s: float = 1.0
) -> sp.Expr:
    """Data-free cleanup of float noise.

    * a Float within ``tol`` (relative, ``|v - k| <= tol*max(1, |v|)``) of a
      non-zero integer becomes that integer, so factors ~1 vanish
      (``1.0000003*x -> x``) and ``x**2.0000001 -> x**2``;
    * a Float exponent within ``tol`` of a half-integer becomes it (``x**0.5 -> sqrt(x)``);
    * the phase b of sin, cos, tan, ... (a Float term of the argument) is taken into
      [-P/2, P/2] for the period P (``cos(t - 12.566) -> cos(t - 0.0000074)``);
    * in every sum, terms with a Float coefficient below ``tol`` times the
      largest coefficient of that sum are dropped (``x - 2e-7 -> x``). This is
      a heuristic by coefficient only; :func:`kansr.compose.snap.prune_terms` decides on data;
    * then, if ``simplify``, :func:`simplify_safely` with ``timeout_s``.

    Floats are never turned into rationals otherwise (no ``nsimplify``).
    """
    if tol < 0:
        raise ValueError("tol must be >= 0")
    out = _clean_node(sp.sympify(expr), tol)
    return simplify_safely(out, timeout_s) if simplify else out


_HYPERBOLIC = (sp.tanh, sp.sinh, sp.cosh, sp.coth, sp.sech, sp.csch)


def hyperbolic_of_logs(expr: sp.Expr) -> sp.Expr:
    """tanh, sinh, cosh (and their reciprocals) of an argument holding a log, written with
    exp, so the log cancels: ``tanh(log(a/b)/2)`` is ``(a - b)/(a + b)``. A network reading
    a log input (a ratio of positives) with a tanh edge writes a logistic this way; sympy
    neither simplifies it nor proves it equal to the law."""
    return expr.replace(lambda n: isinstance(n, _HYPERBOLIC) and n.args[0].has(sp.log),
                        lambda n: n.rewrite(sp.exp))


def _cheap_steps() -> list[Callable[[sp.Expr], sp.Expr]]:
    """Inexpensive rewrites tried before (or instead of) ``sympy.simplify``."""
    return [
        sp.powsimp,
        lambda e: sp.expand_log(e, force=False),
        sp.factor_terms,
        sp.together,
        sp.cancel,
        _acos_as_asin,
    ]


def _acos_as_asin(expr: sp.Expr) -> sp.Expr:
    """acos(u) written pi/2 - asin(u): kept only where shorter, as in pi/2 - acos(u) = asin(u)
    (a noisy one-variable read of asin; neither sympy.simplify nor the check undoes it)."""
    return expr.replace(lambda n: isinstance(n, sp.acos), lambda n: sp.pi / 2 - sp.asin(n.args[0]))


def _acceptable(result: object, original: sp.Expr) -> bool:
    """A rewrite is usable if it is an Expr over the same symbols with no new infinities/nans."""
    if not isinstance(result, sp.Expr):
        return False
    if not result.free_symbols <= original.free_symbols:
        return False
    return not any(result.has(b) and not original.has(b) for b in NON_FINITE)


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

    Hyperbolic functions of logs are first written with exp (`hyperbolic_of_logs`).
    A result replaces the input only if it has fewer nodes
    (:func:`expression_complexity`), no new symbols and no new ``zoo/nan/oo``.
    Floats stay Floats (``simplify`` is called with ``rational=False``).
    """
    expr = sp.sympify(expr)
    try:  # an identity that reads better even where it is no shorter: always applied
        expr = hyperbolic_of_logs(expr)
    except Exception as exc:  # noqa: BLE001 - a failed rewrite leaves the formula as it is
        logger.debug("rewriting hyperbolic functions of logs failed: %s", exc)
    size = expression_complexity(expr)
    if size > max_nodes_cheap:
        return expr
    steps = _simplify_steps(expr, size <= max_nodes_simplify)
    run = _forked_results if _CAN_FORK else _threaded_results
    return min([expr] + run(steps, timeout_s), key=expression_complexity)
