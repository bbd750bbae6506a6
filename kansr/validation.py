"""Checks on what users hand the estimator: parameters, variable names, data, magnitudes;
the data of `KANSR.fit` and `KANSR.predict` (`validate_fit_data`, `validate_predict_data`).

Every check here runs before any training and raises an error that names the problem.
"""

from __future__ import annotations

import keyword
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import sympy
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from .match.library import Library

#: Rows below which no network can be trained meaningfully.
MIN_ROWS = 5
#: Columns (and targets) whose largest magnitude lies outside [1/MAGNITUDE, MAGNITUDE] are
#: rescaled by a power of ten before the search (float64 squares of 1e200 overflow, and the
#: optimisers' tolerances assume values near 1); formulas are mapped back exactly.
MAGNITUDE = 1e8

FALLBACKS = ("auto", "pysr", "operon", "none", None)
SELECTIONS = ("auto", "best", "mdl", "accuracy", "parsimony")
DTYPES = ("float64", "float32")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_params(p: dict[str, Any]) -> None:
    """Raise ValueError/TypeError naming the first bad constructor parameter of KANSR."""
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise ValueError(f"KANSR parameter {name}={p[name]!r} is invalid: {what}")

    for name in ("grid", "k", "steps", "n_restarts", "max_rows", "top_k"):
        need(_is_int(p[name]) and p[name] >= 1, name, "expected an integer >= 1")
    need(_is_int(p["n_alternatives"]) and p["n_alternatives"] >= 0, "n_alternatives",
         "expected an integer >= 0")
    need(p["n_threads"] is None or (_is_int(p["n_threads"]) and p["n_threads"] >= 1),
         "n_threads", "expected None or an integer >= 1")
    for name in ("lamb", "node_th", "edge_th", "complexity_weight"):
        need(_number(p[name]) and p[name] >= 0, name, "expected a finite number >= 0")
    need(p["max_time"] is None or (_number(p["max_time"]) and p["max_time"] > 0), "max_time",
         "expected None (no limit) or a number of seconds > 0")
    need(isinstance(p["refine"], (list, tuple)) and all(_is_int(g) and g > p["grid"]
                                                         for g in p["refine"]),
         "refine", f"expected a list of grid sizes each larger than grid={p['grid']}")
    need(p["width"] is None or (isinstance(p["width"], (list, tuple)) and len(p["width"]) >= 2),
         "width", "expected None or a list such as [2, 5, 1]")
    need(p["fallback"] in FALLBACKS, "fallback", f"expected one of {FALLBACKS}")
    need(p["selection"] in SELECTIONS, "selection", f"expected one of {SELECTIONS}")
    need(p["dtype"] in DTYPES, "dtype", f"expected one of {DTYPES}")
    need(isinstance(p["verbose"], (bool, np.bool_)), "verbose", "expected True or False")
    need(isinstance(p["denoise"], (bool, np.bool_)), "denoise", "expected True or False")
    lib = p["library"]
    need(lib is None or isinstance(lib, (str, Path, Library)), "library",
         "expected None, a TOML path or a kansr.match.Library")
    if isinstance(lib, (str, Path)) and not Path(lib).is_file():
        raise FileNotFoundError(f"KANSR parameter library={str(lib)!r}: no such file")
    check_device(p["device"])


def check_device(device: Any) -> None:
    """A torch device the machine has; 'cuda' without a GPU is an error now, not mid-fit."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"KANSR parameter device={device!r} is invalid: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"KANSR parameter device={device!r}: torch sees no CUDA device "
                         "(a CPU-only torch build, or no GPU); use device='cpu'")


def check_names(names: Sequence[Any]) -> list[str]:
    """Variable names usable as formula symbols: identifiers that are not Python keywords,
    unique. Names sympy also uses (I, E, S, N, pi, gamma) are fine: the law's symbols are
    made explicitly, and `sympify(str(law), locals=model.symbol_table())` reads it back."""
    names = [str(n) for n in names]
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise ValueError(
            f"variable names {bad} cannot be formula symbols: use names made of letters, "
            "digits and underscores that do not start with a digit and are not Python "
            "keywords (e.g. rename 'a b' to 'a_b', 'x[0]' to 'x0', 'lambda' to 'lam')")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate variable names {dup}: every column needs its own name")
    return names


def check_frame(X: Any) -> None:
    """A DataFrame's columns: unique identifiers (see `check_names`), all numeric."""
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        return
    if all(isinstance(c, str) for c in X.columns):  # else named x0, x1, ... (scikit-learn's rule)
        check_names(X.columns)
    bad = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
           or pd.api.types.is_bool_dtype(X[c])]
    if bad:
        raise TypeError(f"non-numeric columns in X: {bad}; convert or drop them")


@dataclass(frozen=True)
class Magnitudes:
    """Powers of ten that bring each column and the target near 1: the search sees
    X * 10**-x_exp and y * 10**-y_exp; formulas are mapped back exactly."""

    x_exp: np.ndarray
    y_exp: int

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> "Magnitudes":
        def exp10(a: np.ndarray) -> int:
            peak = float(np.max(np.abs(a))) if a.size else 0.0
            if peak == 0.0 or 1 / MAGNITUDE <= peak <= MAGNITUDE:
                return 0
            return int(math.floor(math.log10(peak)))

        return cls(np.array([exp10(c) for c in X.T], dtype=int), exp10(y))

    @property
    def identity(self) -> bool:
        return self.y_exp == 0 and not self.x_exp.any()

    def data(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X * 10.0 ** (-self.x_exp.astype(float)), y * 10.0 ** (-self.y_exp)

    def formula(self, expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
        """A law found on rescaled data -> the law in the user's magnitudes."""
        if self.identity:
            return expr
        subs = {s: s * sympy.Float(10.0 ** -int(e)) for s, e in zip(symbols, self.x_exp) if e}
        return sympy.Float(10.0 ** self.y_exp) * expr.xreplace(subs)


def check_seed(random_state: Any) -> int:
    """An integer seed from what scikit-learn accepts as random_state (an int is kept as is;
    None, a RandomState or a Generator draw one)."""
    from sklearn.utils import check_random_state

    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return int(check_random_state(random_state).randint(2**31 - 1))


def check_units(units: Any, y_units: Any, names: Sequence[str]) -> tuple[list, Any] | None:
    """(input units in column order, output unit), or None when no units were given."""
    from collections.abc import Mapping

    if units is None and y_units is None:
        return None
    if units is None or y_units is None:
        raise ValueError("units need both the inputs' (units=...) and the output's "
                         "(y_units=...)")
    if isinstance(units, Mapping):
        missing = [n for n in names if n not in units]
        if missing:
            raise ValueError(f"units: no unit given for variables {missing}")
        units = [units[n] for n in names]
    units = list(units)
    if len(units) != len(names):
        raise ValueError(f"{len(units)} units for {len(names)} variables {list(names)}")
    return units, y_units


def validate_fit_data(estimator: BaseEstimator, X: Any, y: Any, variable_names: Sequence[str] | None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """X, y and the variable names of a fit: pandas X and y must share an index; then
    `check_frame` and scikit-learn's `validate_data` (which records n_features_in_ and
    feature_names_in_ on `estimator`). Names: `variable_names`, else DataFrame columns, else
    x0, x1, ..."""
    if isinstance(X, pd.DataFrame) and isinstance(y, pd.Series | pd.DataFrame) \
            and not X.index.equals(y.index):
        raise ValueError("X and y are pandas objects with different indexes: rows would "
                         "be paired by position; align them (e.g. y = y.loc[X.index]) or "
                         "pass numpy arrays")
    check_frame(X)  # before scikit-learn's own checks, whose messages name no column
    Xa, ya = validate_data(estimator, X, y, dtype=np.float64, y_numeric=True,
                           ensure_min_samples=MIN_ROWS)
    if variable_names is not None:
        names = list(variable_names)
        if len(names) != Xa.shape[1]:
            raise ValueError(f"{len(names)} variable names for {Xa.shape[1]} columns of X")
    elif hasattr(estimator, "feature_names_in_"):
        names = list(estimator.feature_names_in_)
    else:
        names = [f"x{i}" for i in range(Xa.shape[1])]
    return Xa, ya, check_names(names)


def validate_predict_data(estimator: BaseEstimator, X: Any) -> np.ndarray:
    """X for a fitted estimator (predict, plot): DataFrame columns are matched to the fit's by
    name, then the fit's checks without resetting what the fit recorded."""
    check_is_fitted(estimator, "equations_")
    names = getattr(estimator, "feature_names_in_", None)
    if isinstance(X, pd.DataFrame) and names is not None \
            and set(map(str, X.columns)) == set(names) and len(X.columns) == len(names):
        X = X[list(names)]  # columns are matched by name, not position
    check_frame(X)
    return validate_data(estimator, X, reset=False, dtype=np.float64)
