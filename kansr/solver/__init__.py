"""The search as a function: `solve(Problem, SolverOptions, Budget) -> SolveResult`."""

from .budget import Budget, SearchInterrupted, soft_interrupts
from .core import Problem, SolveResult, SolverOptions, solve
from .formulas import SymbolicSettings
from .scaling import Scaling
from .shapes import Architecture, TrainSettings, default_architectures

__all__ = ["Architecture", "Budget", "Problem", "Scaling", "SearchInterrupted", "SolveResult",
           "SolverOptions", "SymbolicSettings", "TrainSettings", "default_architectures",
           "soft_interrupts", "solve"]
