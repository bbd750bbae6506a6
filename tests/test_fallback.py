"""Tests for the symbolic-regression fallback engines (kansr.fallback)."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys

import numpy as np
import pytest
import sympy

import kansr.fallback.pysr as pysr_mod
from kansr.fallback.pysr import _JULIA_EXE
from kansr.fallback import (
    Candidate,
    OperonEngine,
    PySREngine,
    expr_complexity,
    find_julia,
    get_engine,
    julia_available,
    pareto_front,
    pysr_installed,
)
from kansr.fallback._pysr_worker import adapt_options
from kansr.fallback.base import score_expression
from kansr.fallback.operon import parse_operon_model

HAS_OPERON = importlib.util.find_spec("pyoperon") is not None
needs_operon = pytest.mark.skipif(
    not HAS_OPERON, reason="pyoperon not installed (pip install kansr[operon])"
)

# Small budget: generations x population bounds the run well before time_limit,
# so results are reproducible per seed.
FAST = dict(population_size=200, generations=30, time_limit=30.0)


def _sigmoid_data() -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-2.0, 2.0, 200)
    return x, 1.0 / (1.0 + np.exp(-3.0 * x))


def _product_data() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).uniform(-2.0, 2.0, size=(200, 2))
    return X, X[:, 0] * X[:, 1] + 0.5


def _best(front: list[Candidate]) -> Candidate:
    return max(front, key=lambda c: c.r2)


def _assert_front(front: list[Candidate]) -> None:
    assert front, "empty Pareto front"
    comp = [c.complexity for c in front]
    mse = [c.mse for c in front]
    assert comp == sorted(comp) and len(set(comp)) == len(comp)
    assert all(a > b for a, b in zip(mse, mse[1:]))
    assert all(np.isfinite(c.mse) and np.isfinite(c.r2) for c in front)


# ----------------------------------------------------------------- base helpers


def test_expr_complexity_counts_sympy_nodes() -> None:
    x = sympy.Symbol("x")
    assert expr_complexity(x) == 1
    assert expr_complexity(2 * x) == 3
    assert expr_complexity(sympy.sin(x) + 1) == 4


def test_pareto_front_keeps_non_dominated_sorted() -> None:
    x = sympy.Symbol("x")
    cands = [
        Candidate(x, 5, 0.1, 0.9),
        Candidate(x, 1, 1.0, 0.0),
        Candidate(x, 5, 0.05, 0.95),
        Candidate(x, 7, 0.2, 0.8),  # dominated by the complexity-5 one
        Candidate(x, 9, 0.0, 1.0),
    ]
    front = pareto_front(cands)
    assert [(c.complexity, c.mse) for c in front] == [(1, 1.0), (5, 0.05), (9, 0.0)]


def test_score_expression_discards_non_finite() -> None:
    x = sympy.Symbol("x")
    X = np.linspace(-1.0, 1.0, 11)[:, None]
    y = X[:, 0] ** 2
    assert score_expression(sympy.log(x), [x], X, y) is None
    mse, r2 = score_expression(x**2, [x], X, y)
    assert mse == 0.0 and r2 == 1.0
    mse_c, _ = score_expression(sympy.Float(0.5), [x], X, y)  # constant broadcasts
    assert mse_c > 0


def test_parse_operon_model_maps_placeholders_and_power() -> None:
    a, b = sympy.symbols("alpha beta")
    expr = parse_operon_model("(0.5 + (2.0 * (kansrv0_ ^ 2))) / exp(kansrv1_)", [a, b])
    assert sympy.simplify(expr - (0.5 + 2 * a**2) * sympy.exp(-b)) == 0
    with pytest.raises(ValueError, match="unknown names"):
        parse_operon_model("foo(kansrv0_)", [a])


# --------------------------------------------------------------- Operon engine


@needs_operon
def test_operon_finds_sigmoid() -> None:
    x, y = _sigmoid_data()
    front = OperonEngine(random_state=0, **FAST).fit(x, y)
    _assert_front(front)
    best = _best(front)
    assert best.r2 > 0.999
    assert best.expr.free_symbols == {sympy.Symbol("x")}


@needs_operon
def test_operon_multivariable_uses_given_names() -> None:
    X, y = _product_data()
    front = OperonEngine(random_state=0, **FAST).fit(X, y, variable_names=["a", "b"])
    _assert_front(front)
    best = _best(front)
    assert best.r2 > 0.999
    assert best.expr.free_symbols == set(sympy.symbols("a b"))


@needs_operon
def test_operon_same_seed_same_result() -> None:
    X, y = _product_data()
    runs = [OperonEngine(random_state=3, **FAST).fit(X, y) for _ in range(2)]
    assert [sympy.srepr(c.expr) for c in runs[0]] == [sympy.srepr(c.expr) for c in runs[1]]
    assert [c.mse for c in runs[0]] == [c.mse for c in runs[1]]


def test_operon_rejects_zero_optimizer_iterations() -> None:
    with pytest.raises(ValueError, match="optimizer_iterations"):
        OperonEngine(optimizer_iterations=0)


# ------------------------------------------------------------------ get_engine


@needs_operon
def test_get_engine_auto_is_operon_without_julia(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pysr_mod, "julia_available", lambda: False)
    engine = get_engine("auto", random_state=1, time_limit=5.0)
    assert isinstance(engine, OperonEngine)
    assert engine.name == "operon" and engine.random_state == 1


def test_get_engine_auto_prefers_pysr_with_julia(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pysr_mod, "julia_available", lambda: True)
    assert isinstance(get_engine("auto"), PySREngine)


def _fake_julia_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """No Julia anywhere but an executable `julia` script alone on PATH; returns its path."""
    _no_julia_env(monkeypatch, tmp_path)
    fake = tmp_path / _JULIA_EXE
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(fake)


def _fake_pysr_installed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A stand-in `pysr` package importable from sys.path (found, never imported here)."""
    pkg = tmp_path / "site" / "pysr"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the test must not import pysr')\n")
    monkeypatch.syspath_prepend(str(pkg.parent))


def _hide_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )


@pytest.mark.skipif(os.name == "nt", reason="POSIX executable bit")
def test_get_engine_auto_picks_pysr_when_julia_is_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _fake_julia_on_path(monkeypatch, tmp_path)
    _fake_pysr_installed(monkeypatch, tmp_path)
    engine = get_engine("auto", random_state=3, time_limit=7.0)
    assert isinstance(engine, PySREngine)
    assert engine.random_state == 3 and engine.time_limit == 7.0
    assert "pysr" not in sys.modules


@needs_operon
def test_get_engine_auto_picks_operon_without_julia(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _no_julia_env(monkeypatch, tmp_path)
    _fake_pysr_installed(monkeypatch, tmp_path)  # pysr alone is not enough: it needs Julia
    assert isinstance(get_engine("auto"), OperonEngine)


def test_get_engine_auto_is_none_without_julia_or_pyoperon(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _no_julia_env(monkeypatch, tmp_path)
    _hide_module(monkeypatch, "pyoperon")
    assert get_engine("auto") is None


def test_get_engine_pysr_without_julia_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pysr_mod, "find_julia", lambda: None)
    with pytest.raises(RuntimeError, match="Julia"):
        get_engine("pysr")


def test_get_engine_operon_without_pyoperon_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyoperon" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install kansr\[operon\]"):
        get_engine("operon")


def test_get_engine_none_passthrough_and_unknown() -> None:
    assert get_engine(None) is None
    engine = OperonEngine()
    assert get_engine(engine) is engine
    with pytest.raises(ValueError, match="unknown fallback engine"):
        get_engine("gplearn")


# -------------------------------------------------------------- Julia detection


def _no_julia_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("PYTHON_JULIAPKG_EXE", "PYTHON_JULIACALL_BINDIR", "JULIA_BINDIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "julia_env"))


def test_julia_available_false_without_julia_and_never_imports_pysr(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _no_julia_env(monkeypatch, tmp_path)
    assert find_julia() is None
    assert julia_available() is False
    assert "pysr" not in sys.modules


@pytest.mark.skipif(os.name == "nt", reason="POSIX executable bit")
def test_julia_available_with_julia_on_path_and_pysr_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    fake = _fake_julia_on_path(monkeypatch, tmp_path)
    _fake_pysr_installed(monkeypatch, tmp_path)
    assert pysr_installed() is True
    assert find_julia() == fake
    assert julia_available() is True
    assert "pysr" not in sys.modules


@pytest.mark.skipif(os.name == "nt", reason="POSIX executable bit")
def test_julia_available_false_with_julia_but_without_pysr(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _fake_julia_on_path(monkeypatch, tmp_path)
    _hide_module(monkeypatch, "pysr")
    assert find_julia() is not None
    assert julia_available() is False


def test_julia_available_false_when_the_julia_on_path_is_not_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _no_julia_env(monkeypatch, tmp_path)
    _fake_pysr_installed(monkeypatch, tmp_path)
    (tmp_path / _JULIA_EXE).write_text("not a program\n")  # no executable bit
    assert find_julia() is None
    assert julia_available() is False


@pytest.mark.skipif(os.name == "nt", reason="POSIX executable bit")
def test_find_julia_uses_bindir(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _no_julia_env(monkeypatch, tmp_path)
    fake = tmp_path / "bin" / "julia"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JULIA_BINDIR", str(fake.parent))
    assert find_julia() == str(fake)
    assert "pysr" not in sys.modules


def test_pysr_worker_options() -> None:
    opts = PySREngine(random_state=7, time_limit=12.0).worker_options()
    assert opts["deterministic"] is True and opts["parallelism"] == "serial"
    assert opts["random_state"] == 7 and opts["timeout_in_seconds"] == 12
    old = adapt_options(opts, accepted={"multithreading", "procs"})
    assert "parallelism" not in old and old["multithreading"] is False and old["procs"] == 0
    assert adapt_options(opts, accepted={"parallelism"}) == opts


def test_pysr_fit_without_julia_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pysr_mod, "find_julia", lambda: None)
    x, y = _sigmoid_data()
    with pytest.raises(RuntimeError, match="Julia"):
        PySREngine().fit(x, y)


_FAKE_PYSR = """
import pandas as pd
import sympy


class PySRRegressor:
    def __init__(self, **kwargs):
        assert kwargs["deterministic"] and kwargs["parallelism"] == "serial", kwargs

    def fit(self, X, y):
        x0, x1 = sympy.symbols("x0 x1")
        self.equations_ = pd.DataFrame(
            {
                "complexity": [1, 5, 6],
                "loss": [1.0, 0.0, 0.0],
                "sympy_format": [x0, x0 * x1 + sympy.Float(0.5), sympy.log(x0) + x1],
            }
        )
        return self
"""


def test_pysr_subprocess_roundtrip_with_fake_pysr(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The worker/parent plumbing, with a stand-in pysr package (no Julia)."""
    fake_pkg = tmp_path / "fake" / "pysr"
    fake_pkg.mkdir(parents=True)
    (fake_pkg / "__init__.py").write_text(_FAKE_PYSR)
    monkeypatch.setenv("PYTHONPATH", str(fake_pkg.parent))
    monkeypatch.setattr(pysr_mod, "julia_available", lambda: True)
    X, y = _product_data()
    front = PySREngine(random_state=0).fit(X, y, variable_names=["a", "b"])
    a, b = sympy.symbols("a b")
    assert [c.expr for c in front][-1] == a * b + sympy.Float(0.5)
    assert front[-1].r2 == pytest.approx(1.0)
    assert all(sympy.log(a) not in c.expr.atoms(sympy.log) for c in front)  # nan on a<0: dropped
    assert "pysr" not in sys.modules


@pytest.mark.julia
@pytest.mark.skipif(
    not julia_available(),
    reason="Julia not installed; PySR needs a Julia install (pip install kansr[pysr] and juliaup)",
)
def test_pysr_finds_simple_law() -> None:
    X, y = _product_data()
    engine = PySREngine(random_state=0, time_limit=60.0, niterations=20, unary_operators=[])
    front = engine.fit(X, y, variable_names=["a", "b"])
    _assert_front(front)
    best = _best(front)
    assert best.r2 > 0.999
    assert best.expr.free_symbols == set(sympy.symbols("a b"))
    assert "pysr" not in sys.modules  # PySR ran in a subprocess
