"""`Scaling`: the map between the user's units and the network's [-1, 1] inputs and
standardised output, for data and for formulas alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sympy


def _robust_std(y: np.ndarray) -> float:
    """std(y) without overflow for |y| near 1e300 (squares of such values are inf)."""
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        return 0.0
    return float(np.std(y / peak)) * peak


@dataclass(frozen=True)
class Scaling:
    """x_unit = (x - x_center) / x_scale per column (the data's box onto [-1, 1]) and
    y_unit = (y - y_center) / y_scale (standardised).  Shapes: x_* (d,)."""

    x_center: np.ndarray
    x_scale: np.ndarray
    y_center: float
    y_scale: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> "Scaling":
        lo, hi = X.min(axis=0), X.max(axis=0)
        # lo/2 + hi/2 and hi/2 - lo/2 cannot overflow where hi - lo would (|x| ~ 1e308)
        center, scale = lo / 2 + hi / 2, hi / 2 - lo / 2
        y_scale = _robust_std(y)
        y_center = float(np.mean(y / y_scale)) * y_scale if y_scale > 0 else float(y[0])
        return cls(center, scale, y_center, y_scale if y_scale > 0 else 1.0)

    def x(self, X: np.ndarray) -> np.ndarray:
        """(N, d) user units -> network units."""
        return (X - self.x_center) / self.x_scale

    def y(self, y: np.ndarray) -> np.ndarray:
        """(N,) user units -> standardised."""
        return (y - self.y_center) / self.y_scale

    def y_back(self, y_unit: np.ndarray) -> np.ndarray:
        """(N,) standardised -> user units."""
        return y_unit * self.y_scale + self.y_center

    def input_exprs(self, symbols: Sequence[sympy.Symbol], columns: Sequence[int]
                    ) -> list[sympy.Expr]:
        """The network's inputs (which read user columns `columns`) as formulas in symbols."""
        return [(symbols[c] - float(self.x_center[c])) / float(self.x_scale[c]) for c in columns]

    def input_maps(self, columns: Sequence[int]) -> list[tuple[float, float]]:
        """(center, scale) per network input: user value = center + scale * network value."""
        return [(float(self.x_center[c]), float(self.x_scale[c])) for c in columns]

    def output_expr(self, out: sympy.Expr) -> sympy.Expr:
        """A formula for the standardised output -> the formula in the user's units."""
        return sympy.Float(self.y_scale) * out + sympy.Float(self.y_center)
