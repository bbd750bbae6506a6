"""`Scaling`: the map between the user's units and the network's [-1, 1] inputs and
standardised output, for data and for formulas alike.

A positive input whose values crowd into the low end of a wide range (a ratio of products,
such as a dimensionless group k*T/(m*g*x) spanning 1/125 to 25) is fed to the network as its
logarithm: on the linear box half its rows would share a tenth of the spline grid, and
networks fitted to n*exp(-1/w) or n*(1 + w*cos(t)) stalled at 1e-4 to 1e-1 relative error.
"""

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


#: A column is crowded when positive, spanning at least this ratio hi/lo ...
CROWDED_MIN_RATIO = 10.0
#: ... with its median in this lowest share of [lo, hi].
CROWDED_MEDIAN_SHARE = 0.1


def crowded_columns(X: np.ndarray) -> np.ndarray:
    """(d,) bool: positive columns over a wide range whose rows crowd into its low end
    (median within the lowest `CROWDED_MEDIAN_SHARE` of the range): log spaces them evenly.
    A wide column spread evenly (uniform on [1, 100]) stays linear."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    med = np.median(X, axis=0)
    with np.errstate(all="ignore"):
        wide = (lo > 0) & (hi >= CROWDED_MIN_RATIO * lo)
        low = (med - lo) < CROWDED_MEDIAN_SHARE * (hi - lo)
    return np.asarray(wide & low & np.isfinite(hi), dtype=bool)


@dataclass(frozen=True)
class Scaling:
    """x_unit = (x - x_center) / x_scale per column, x replaced by log(x) where `x_log`
    (the data's box onto [-1, 1]) and
    y_unit = (y - y_center) / y_scale (standardised).  Shapes: x_* (d,)."""

    x_center: np.ndarray
    x_scale: np.ndarray
    y_center: float
    y_scale: float
    #: (d,) bool: the column enters the network as log(x) (see the module docstring)
    x_log: np.ndarray | None = None

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, log_inputs: bool = False) -> "Scaling":
        """The box and standardisation of (X, y); with `log_inputs`, crowded wide positive
        columns (`crowded_columns`) are mapped through log first."""
        logs = crowded_columns(X) if log_inputs else np.zeros(X.shape[1], dtype=bool)
        Z = np.where(logs, np.log(np.where(logs, X, 1.0)), X)
        lo, hi = Z.min(axis=0), Z.max(axis=0)
        # lo/2 + hi/2 and hi/2 - lo/2 cannot overflow where hi - lo would (|x| ~ 1e308)
        center, scale = lo / 2 + hi / 2, hi / 2 - lo / 2
        y_scale = _robust_std(y)
        y_center = float(np.mean(y / y_scale)) * y_scale if y_scale > 0 else float(y[0])
        return cls(center, scale, y_center, y_scale if y_scale > 0 else 1.0,
                   logs if logs.any() else None)

    def _logged(self, X: np.ndarray) -> np.ndarray:
        if self.x_log is None:
            return X
        with np.errstate(all="ignore"):  # a query outside the positive range gives NaN
            return np.where(self.x_log, np.log(np.where(self.x_log, X, 1.0)), X)

    def x(self, X: np.ndarray) -> np.ndarray:
        """(N, d) user units -> network units."""
        return (self._logged(X) - self.x_center) / self.x_scale

    def y(self, y: np.ndarray) -> np.ndarray:
        """(N,) user units -> standardised."""
        return (y - self.y_center) / self.y_scale

    def y_back(self, y_unit: np.ndarray) -> np.ndarray:
        """(N,) standardised -> user units."""
        return y_unit * self.y_scale + self.y_center

    def input_exprs(self, symbols: Sequence[sympy.Symbol], columns: Sequence[int]
                    ) -> list[sympy.Expr]:
        """The network's inputs (which read user columns `columns`) as formulas in symbols."""
        return [((sympy.log(symbols[c]) if self.logged(c) else symbols[c])
                 - float(self.x_center[c])) / float(self.x_scale[c]) for c in columns]

    def logged(self, column: int) -> bool:
        """Whether user column `column` enters the network as its logarithm."""
        return self.x_log is not None and bool(self.x_log[column])

    def input_maps(self, columns: Sequence[int]) -> list[tuple[float, float]]:
        """(center, scale) per network input: user value (its log, for a `logged` column)
        = center + scale * network value."""
        return [(float(self.x_center[c]), float(self.x_scale[c])) for c in columns]

    def output_expr(self, out: sympy.Expr) -> sympy.Expr:
        """A formula for the standardised output -> the formula in the user's units."""
        return sympy.Float(self.y_scale) * out + sympy.Float(self.y_center)
