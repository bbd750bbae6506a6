"""Symbolic-regression fallback for sub-problems no library primitive explains.

Engines: :class:`OperonEngine` (pyoperon, in process) and :class:`PySREngine`
(PySR/Julia, in a subprocess). Use :func:`get_engine` to pick one.
"""

from .base import Candidate, FallbackEngine, expr_complexity, pareto_front
from .engines import get_engine
from .operon import OperonEngine
from .pysr import PySREngine, find_julia, julia_available, pysr_installed

__all__ = [
    "Candidate",
    "FallbackEngine",
    "OperonEngine",
    "PySREngine",
    "expr_complexity",
    "find_julia",
    "get_engine",
    "julia_available",
    "pareto_front",
    "pysr_installed",
]
