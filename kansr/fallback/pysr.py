"""PySR fallback engine, run in a subprocess.

``import pysr`` installs Julia on first import (and fails with a URLError,
not an ImportError, when offline), so this module never imports pysr: it
detects Julia from the file system and runs PySR in a child process
(:mod:`kansr.fallback._pysr_worker`) with a timeout, keeping Julia's startup
time and any crash out of our process.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import sympy

from .base import DEFAULT_TIME_LIMIT, Candidate, as_design_matrix, make_symbols, rescore

logger = logging.getLogger(__name__)

__all__ = ["PySREngine", "find_julia", "julia_available", "pysr_installed"]

DEFAULT_BINARY_OPERATORS = ("+", "-", "*", "/")
DEFAULT_UNARY_OPERATORS = ("sin", "cos", "exp", "log", "sqrt", "square", "tanh")

_JULIA_EXE = "julia.exe" if os.name == "nt" else "julia"


def _is_executable(path: str | None) -> bool:
    """Whether ``path`` names an executable regular file."""
    return path is not None and os.path.isfile(path) and os.access(path, os.X_OK)


def _juliapkg_executable() -> str | None:
    """Julia recorded by juliapkg (pyjuliapkg/meta.json), read without importing it."""
    project = os.environ.get("PYTHON_JULIAPKG_PROJECT") or os.path.join(sys.prefix, "julia_env")
    meta = Path(project) / "pyjuliapkg" / "meta.json"
    try:
        exe = json.loads(meta.read_text()).get("executable")
    except (OSError, ValueError, AttributeError):
        return None
    return exe if isinstance(exe, str) else None


def find_julia() -> str | None:
    """Path of a Julia executable, or None; never downloads anything.

    Looks at ``PYTHON_JULIAPKG_EXE``, ``PYTHON_JULIACALL_BINDIR``,
    ``JULIA_BINDIR``, ``PATH`` and juliapkg's recorded install, in that order.
    """
    candidates: list[str | None] = [os.environ.get("PYTHON_JULIAPKG_EXE")]
    for var in ("PYTHON_JULIACALL_BINDIR", "JULIA_BINDIR"):
        bindir = os.environ.get(var)
        if bindir:
            candidates.append(os.path.join(bindir, _JULIA_EXE))
    candidates.append(shutil.which("julia"))
    candidates.append(_juliapkg_executable())
    for cand in candidates:
        if _is_executable(cand):
            return str(cand)
    return None


def pysr_installed() -> bool:
    """Whether the pysr Python package is installed (found, not imported)."""
    return importlib.util.find_spec("pysr") is not None


def julia_available() -> bool:
    """Whether PySR can run here: pysr installed and a Julia executable found."""
    return pysr_installed() and find_julia() is not None


def _rename_pysr_symbols(expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """Replace PySR's ``x0, x1, ...`` (matched by name) with the caller's symbols."""
    mapping: dict[sympy.Basic, sympy.Symbol] = {}
    for sym in expr.free_symbols:
        match = re.fullmatch(r"x(\d+)", getattr(sym, "name", ""))
        if match and int(match.group(1)) < len(symbols):
            mapping[sym] = symbols[int(match.group(1))]
    return expr.xreplace(mapping)


class PySREngine:
    """Fallback engine running ``pysr.PySRRegressor`` in a subprocess.

    ``time_limit`` is PySR's search timeout (seconds); the child gets
    ``time_limit + startup_timeout`` in total (Julia's start and package
    precompilation can take minutes on a first run). With a ``random_state``
    the search is serial and deterministic.
    """

    name = "pysr"

    def __init__(
        self,
        random_state: int | None = 0,
        time_limit: float = DEFAULT_TIME_LIMIT,
        niterations: int = 40,
        binary_operators: Sequence[str] = DEFAULT_BINARY_OPERATORS,
        unary_operators: Sequence[str] = DEFAULT_UNARY_OPERATORS,
        maxsize: int = 25,
        startup_timeout: float = 600.0,
        python: str | None = None,
        **extra: Any,
    ) -> None:
        self.random_state = random_state
        self.time_limit = time_limit
        self.niterations = niterations
        self.binary_operators = list(binary_operators)
        self.unary_operators = list(unary_operators)
        self.maxsize = maxsize
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.extra = extra

    def __repr__(self) -> str:
        return (
            f"PySREngine(random_state={self.random_state}, time_limit={self.time_limit}, "
            f"niterations={self.niterations})"
        )

    def worker_options(self) -> dict[str, Any]:
        """Options passed to ``PySRRegressor`` in the worker (JSON-serialisable)."""
        opts: dict[str, Any] = dict(
            niterations=self.niterations,
            binary_operators=self.binary_operators,
            unary_operators=self.unary_operators,
            maxsize=self.maxsize,
            timeout_in_seconds=max(1, int(round(self.time_limit))),
            progress=False,
            verbosity=0,
        )
        if self.random_state is not None:
            opts.update(random_state=self.random_state, deterministic=True, parallelism="serial")
        opts.update(self.extra)
        return opts

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        variable_names: Sequence[str] | None = None,
    ) -> list[Candidate]:
        """Run PySR on ``(X, y)`` in a child process; return the re-scored front."""
        X2, y1, one_d = as_design_matrix(X, y)
        symbols = make_symbols(X2.shape[1], variable_names, one_d)
        if not julia_available():
            raise RuntimeError(
                "PySR needs the pysr package and a Julia install: "
                "pip install kansr[pysr] and install Julia (e.g. juliaup)"
            )
        with tempfile.TemporaryDirectory(prefix="kansr_pysr_") as tmp:
            tmpdir = Path(tmp)
            np.savez(tmpdir / "data.npz", X=X2, y=y1)
            (tmpdir / "options.json").write_text(json.dumps(self.worker_options()))
            rows = self._run_worker(tmpdir)
        exprs: list[sympy.Expr] = []
        for row in rows:
            try:
                expr = sympy.sympify(row["sympy"])
            except (sympy.SympifyError, TypeError, SyntaxError, KeyError) as exc:
                logger.warning("skipping PySR equation %r: %s", row, exc)
                continue
            exprs.append(_rename_pysr_symbols(expr, symbols))
        front = rescore(exprs, symbols, X2, y1)
        logger.info("pysr: %d equation(s), %d kept after re-scoring", len(rows), len(front))
        return front

    def _run_worker(self, tmpdir: Path) -> list[dict[str, Any]]:
        """Run the worker on ``tmpdir``; return its equation rows."""
        cmd = [self.python, "-m", "kansr.fallback._pysr_worker", str(tmpdir)]
        timeout = self.time_limit + self.startup_timeout
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        try:
            proc = subprocess.run(
                cmd, cwd=tmpdir, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"PySR worker timed out after {timeout:.0f} s") from exc
        out = tmpdir / "equations.json"
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or "")[-2000:]
            raise RuntimeError(f"PySR worker failed (exit {proc.returncode}):\n{tail}")
        rows = json.loads(out.read_text())
        if not isinstance(rows, list):
            raise RuntimeError("PySR worker wrote an unexpected equations.json")
        return rows
