"""Symbolic edge functions: a sympy expression in x as a picklable torch callable, and the
record of an edge fixed to c * f(a * x + b) + d."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy
import torch

TorchFn = Callable[[torch.Tensor], torch.Tensor]

_TORCH_FUNCS = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
    "sqrt": torch.sqrt, "tanh": torch.tanh, "sinh": torch.sinh, "cosh": torch.cosh,
    "asin": torch.asin, "acos": torch.acos, "atan": torch.atan, "atanh": torch.atanh,
    "Abs": torch.abs, "sign": torch.sign, "Heaviside": lambda x: (x > 0).to(x.dtype),
}
_X = sympy.Symbol("x")


class TorchFunction:
    """A sympy expression in `x` as a differentiable torch callable.

    A class rather than a closure so that networks holding symbolic edges pickle: the
    lambdified function is rebuilt from the expression after unpickling.
    """

    def __init__(self, expr: str | sympy.Expr) -> None:
        expr = sympy.sympify(expr, locals={"x": _X})
        extra = expr.free_symbols - {_X}
        if extra:
            raise ValueError(f"edge function {expr} may only use the variable x, found {extra}")
        self.expr = expr
        self._fn = sympy.lambdify(_X, expr, modules=[_TORCH_FUNCS, "math"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self._fn(x)
        return out if torch.is_tensor(out) else torch.full_like(x, float(out))

    def __getstate__(self) -> dict:
        return {"expr": self.expr}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["expr"])


def torch_function(expr: str | sympy.Expr) -> TorchFn:
    """Turn a sympy expression in `x` into a differentiable (and picklable) torch callable."""
    return TorchFunction(expr)


@dataclass
class SymbolicEdge:
    """An edge fixed to c * f(a * x + b) + d; params live in the layer's `sym_params`."""

    expr: str
    fn: TorchFn
