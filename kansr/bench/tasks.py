"""Benchmark tasks: what one task is, and running it in this process.

A *task* is one (equation, method, seed, noise). :func:`execute_task` generates the data, calls
the method with its time budget, scores and verifies the result and returns one record
(:mod:`kansr.bench.records`); :mod:`kansr.bench.backends` runs it in an isolated subprocess.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from kansr.bench.feynman import Equation, generate_data, parse_formula
from kansr.bench.methods import load_method
from kansr.bench.records import base_record, complexity, error_text, r2_score, sanitize, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Budgets and data sizes shared by all tasks of a run."""

    time_limit: float = 60.0
    n_rows: int = 100_000
    train_rows: int = 10_000
    slack: float = 1.5
    overhead: float = 60.0
    verify_timeout: float = 10.0
    threads_per_task: int = 1

    @property
    def hard_limit(self) -> float:
        """Seconds after which a task's subprocess is killed."""
        return self.time_limit * self.slack + self.overhead


@dataclass(frozen=True)
class Task:
    """One (equation, method, seed, noise) combination."""

    equation: Equation
    method: str
    seed: int
    noise: float
    method_ref: str = ""

    @property
    def key(self) -> str:
        """Identity used for resume."""
        return task_key(self.equation.id, self.method, self.seed, self.noise)


def task_key(equation_id: str, method: str, seed: int, noise: float) -> str:
    """``equation|method|seed|noise`` with noise normalised (``0`` and ``0.0`` agree)."""
    return f"{equation_id}|{method}|{int(seed)}|{float(noise)!r}"


def task_to_dict(task: Task) -> dict:
    """Plain-data form of a task."""
    return {"equation": task.equation.to_dict(), "method": task.method, "seed": task.seed,
            "noise": task.noise, "method_ref": task.method_ref}


def task_from_dict(data: dict) -> Task:
    """Inverse of :func:`task_to_dict`."""
    return Task(Equation.from_dict(data["equation"]), data["method"], int(data["seed"]),
                float(data["noise"]), data.get("method_ref", ""))


# ----------------------------------------------------------------------------- one task


def _as_expression(found: object, names: Sequence[str]) -> sp.Expr:
    from kansr.verify import rename_to_plain

    if isinstance(found, str):
        return parse_formula(found, names, strict=False)
    if not isinstance(found, sp.Basic):
        raise TypeError(f"method returned {type(found).__name__}, expected a sympy expression")
    return rename_to_plain(found, names)


def _simplified(expr: sp.Expr, timeout: float) -> sp.Expr:
    from kansr.verify import SimplifyTimeout, run_with_timeout

    try:
        return run_with_timeout(lambda: sp.simplify(expr), timeout)
    except SimplifyTimeout:
        return expr
    except Exception as exc:  # noqa: BLE001
        log.debug("simplify failed: %r", exc)
        return expr


def execute_task(task: Task, config: RunConfig) -> dict:
    """Run one task in this process and return its record (errors are recorded, not raised)."""
    started = time.perf_counter()
    record = base_record(task, config)
    try:
        _fill_record(record, task, config)
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of the method is data
        record.update(status="error", error=error_text(exc))
    record["wall_seconds"] = time.perf_counter() - started
    record["finished_at"] = utc_now()
    return sanitize(record)


def _fill_record(record: dict, task: Task, config: RunConfig) -> None:
    from kansr.verify import check, round_floats

    equation = task.equation
    data = generate_data(equation, task.seed, n_rows=config.n_rows,
                         train_rows=config.train_rows, noise=task.noise)
    record.update(n_train=len(data.y_train), n_test=len(data.y_test))
    method = load_method(task.method_ref or task.method)
    names = list(equation.variables)
    started = time.perf_counter()
    try:
        extra = {}
        if "output_name" in inspect.signature(method).parameters:
            extra["output_name"] = equation.output  # methods that read units need it
        found = method(data.X_train, data.y_train, names, config.time_limit, task.seed, **extra)
    finally:
        record["seconds"] = time.perf_counter() - started
    expr = _as_expression(found, names)
    record["found_raw"] = str(expr)
    simplified = _simplified(expr, config.verify_timeout)
    record.update(found_simplified=str(simplified), complexity=complexity(simplified),
                  found_rounded=str(round_floats(expr)))
    symbols = equation.symbols
    from kansr.verify import evaluate

    record["r2_train"] = r2_score(data.y_train, evaluate(expr, symbols, data.X_train))
    r2_test = r2_score(data.y_test, evaluate(expr, symbols, data.X_test))
    record["r2_test"] = r2_test
    record["accuracy"] = bool(r2_test is not None and r2_test > 0.999)
    if r2_test is not None and r2_test > 0.5:
        verdict = check(expr, equation.expr, symbols, equation.ranges,
                        rng=np.random.default_rng([task.seed, 7919]),
                        timeout=config.verify_timeout)
        record.update(symbolic=verdict.symbolic, numeric=verdict.numeric,
                      exact=verdict.recovered)
