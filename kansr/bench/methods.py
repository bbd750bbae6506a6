"""Registry of symbolic-regression methods the benchmark can run.

A method is a callable ``(X_train, y_train, variable_names, time_limit, seed) -> sympy.Expr``
whose result uses Symbols named after ``variable_names``. ``time_limit`` (seconds) is the
method's budget; the runner enforces a hard limit above it.

Methods run in a fresh subprocess, so the registry stores *import references*
(``"package.module:function"``) that the subprocess can import, never live objects.
:func:`register_method` accepts a reference string or a module-level function.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import sympy as sp

log = logging.getLogger(__name__)


class Method(Protocol):
    """Signature every benchmark method follows. A method may carry a ``warm_up()``
    attribute: called once before the run times any task (a JIT's one-time compile)."""

    def __call__(self, X_train: np.ndarray, y_train: np.ndarray, variable_names: list[str],
                 time_limit: float, seed: int) -> sp.Expr: ...


_REGISTRY: dict[str, str] = {
    "kansr": "kansr.bench.methods:kansr_method",
    "kansr-units": "kansr.bench.methods:kansr_units_method",
    "operon": "kansr.bench.methods:operon_method",
}
#: Methods the CLI runs when ``--methods`` is not given.
DEFAULT_METHODS: tuple[str, ...] = ("kansr", "operon")

#: Parameters for pyoperon's SymbolicRegressor (besides max_time and random_state).
#: ``optimizer_iterations`` defaults to 0 in pyoperon (no constant tuning): set to 10 here.
OPERON_PARAMS: dict[str, object] = {
    "allowed_symbols": "add,sub,mul,div,constant,variable,exp,log,sin,cos,sqrt,square,tanh",
    "optimizer_iterations": 10,
    "population_size": 1000,
    "generations": 10_000,
    "max_evaluations": 1_000_000,
    "max_length": 50,
    "n_threads": 1,
}


def register_method(name: str, target: str | Callable[..., sp.Expr]) -> None:
    """Register ``target`` (``"module:function"`` or a module-level function) as ``name``."""
    if not name or any(c in name for c in "|/\\ ,"):
        raise ValueError(f"invalid method name {name!r}")
    ref = target if isinstance(target, str) else _reference_of(target)
    if ":" not in ref:
        raise ValueError(f"method reference must look like 'module:function', got {ref!r}")
    _REGISTRY[name] = ref


def unregister_method(name: str) -> None:
    """Remove ``name`` from the registry (no error when absent)."""
    _REGISTRY.pop(name, None)


def available_methods() -> dict[str, str]:
    """Name -> import reference of every registered method."""
    return dict(_REGISTRY)


def method_reference(name: str) -> str:
    """Import reference of a registered method; ``"module:function"`` passes through."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return name
    raise KeyError(f"unknown method {name!r}; known: {sorted(_REGISTRY)}")


def load_method(name_or_ref: str) -> Method:
    """Import and return the callable behind a method name or reference."""
    ref = method_reference(name_or_ref)
    module_name, _, attr = ref.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj  # type: ignore[return-value]


def _reference_of(fn: Callable[..., object]) -> str:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise ValueError(
            f"{fn!r} is not importable by a subprocess; register a 'module:function' string")
    return f"{module}:{qualname}"


def kansr_method(X_train: np.ndarray, y_train: np.ndarray, variable_names: list[str],
                 time_limit: float, seed: int) -> sp.Expr:
    """kansr's own estimator; the budget is passed as ``max_time`` when KANSR accepts it."""
    from kansr import KANSR  # lazy: heavy (torch) and written elsewhere

    kwargs: dict[str, object] = {"random_state": seed}
    if "max_time" in inspect.signature(KANSR).parameters:
        kwargs["max_time"] = time_limit
    else:
        log.info("KANSR has no max_time parameter; relying on the hard limit")
    model = KANSR(**kwargs).fit(X_train, y_train, variable_names=list(variable_names))
    return model.sympy()


def kansr_units_method(X_train: np.ndarray, y_train: np.ndarray, variable_names: list[str],
                       time_limit: float, seed: int, output_name: str = "y") -> sp.Expr:
    """kansr told each variable's units (the Feynman units table, benchmarks/feynman/units.csv,
    copied from ../shared/feynman/units.csv): the search runs on Buckingham pi groups."""
    from kansr import KANSR
    from kansr.structure import load_units_table

    table = load_units_table()
    missing = [n for n in [*variable_names, output_name] if n not in table]
    if missing:
        raise KeyError(f"no units for {missing} in the units table")
    model = KANSR(random_state=seed, max_time=time_limit).fit(
        X_train, y_train, variable_names=list(variable_names),
        units=[table[n] for n in variable_names], y_units=table[output_name])
    return model.sympy()


def _compile_kansr() -> None:
    """kansr's warm-up (see `kansr.bench.runner.warm_up`): its compiled kernels."""
    from kansr.kan import compile_kernels

    log.info("kansr's kernels compiled in %.1f s (once per install; no equation's time)",
             compile_kernels())


kansr_method.warm_up = _compile_kansr  # type: ignore[attr-defined]
kansr_units_method.warm_up = _compile_kansr  # type: ignore[attr-defined]


def operon_method(X_train: np.ndarray, y_train: np.ndarray, variable_names: list[str],
                  time_limit: float, seed: int) -> sp.Expr:
    """pyoperon's scikit-learn SymbolicRegressor with ``max_time`` = the budget.

    Model selection is pyoperon's default (minimum description length), which often picks a
    short, sometimes linear, model from the final front. The model string uses variables
    ``X1..Xn``; they are mapped onto the variable names with an explicit symbol table.
    """
    from pyoperon.sklearn import SymbolicRegressor

    regressor = SymbolicRegressor(max_time=max(1, int(time_limit)), random_state=seed,
                                  **OPERON_PARAMS)
    regressor.fit(np.asarray(X_train, dtype=float), np.asarray(y_train, dtype=float))
    text = regressor.get_model_string(regressor.model_, 12)
    return parse_operon(text, variable_names)


def parse_operon(text: str, variable_names: list[str]) -> sp.Expr:
    """Parse a pyoperon infix model string (variables ``X1..Xn``) into sympy."""
    from kansr.bench.feynman import parse_formula

    placeholder = [f"X{i + 1}" for i in range(len(variable_names))]
    python_text = text.replace("^", "**")
    expr = parse_formula(python_text, placeholder, strict=False, functions=OPERON_FUNCTIONS)
    mapping = {sp.Symbol(p): sp.Symbol(n) for p, n in zip(placeholder, variable_names)}
    return expr.xreplace(mapping)


#: Protected operators pyoperon may print, beyond the numpy-style names.
OPERON_FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
    "logabs": lambda a: sp.log(sp.Abs(a)),
    "sqrtabs": lambda a: sp.sqrt(sp.Abs(a)),
    "aq": lambda a, b: a / sp.sqrt(1 + b**2),
}
