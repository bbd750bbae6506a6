"""Feynman equation tables (FSReD CSV format) and SRBench 2021-style data generation.

Table format (as ``FeynmanEquations.csv``): UTF-8 (a BOM is fine), columns ``Filename``,
``Number``, ``Output``, ``Formula``, ``# variables``, then ``vk_name, vk_low, vk_high`` for
k = 1..10. Rows with an empty ``Filename`` are ignored. ``# variables`` is *not* trusted (it
is wrong in 6 published rows): the variables are the non-empty ``vk_name`` columns.

Formulas are parsed with an explicit table of Symbols and functions, so variable names such
as ``I``, ``gamma``, ``beta``, ``E`` or ``S`` stay plain symbols; numpy-style names map to
sympy (``ln`` -> ``log``, ``arcsin`` -> ``asin``, ...).

Bad rows (missing formula, unparsable formula, unknown function, free symbols that differ
from the listed variables, non-numeric range, ``low >= high``, duplicate id) raise
:class:`EquationTableError` naming the file, line and id. ``load_equations(...,
skip_bad=True)`` instead skips such rows, logging each and appending its message to
``errors`` when a list is given.
"""

from __future__ import annotations

import csv
import keyword
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import parse_expr

log = logging.getLogger(__name__)

MAX_VARIABLES = 10
#: Repository copy of the 100 FSReD equations.
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "feynman" / "FeynmanEquations.csv"

FUNCTIONS: dict[str, object] = {
    "exp": sp.exp, "sqrt": sp.sqrt, "log": sp.log, "ln": sp.log, "log10": lambda a: sp.log(a, 10),
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sinh": sp.sinh, "cosh": sp.cosh,
    "tanh": sp.tanh, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "asin": sp.asin,
    "acos": sp.acos, "atan": sp.atan, "arctanh": sp.atanh, "abs": sp.Abs, "Abs": sp.Abs,
    "pow": sp.Pow, "square": lambda a: a**2, "cbrt": sp.cbrt,
}
CONSTANTS: dict[str, object] = {"pi": sp.pi}
_PARSER_GLOBALS: dict[str, object] = {
    "Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational, "Symbol": sp.Symbol,
    "Function": sp.Function, "__builtins__": {},
}


class EquationTableError(ValueError):
    """A row of an equation table (or a formula) is unusable."""


class FormulaError(ValueError):
    """A formula cannot be parsed into a sympy expression over the given variables."""


@dataclass(frozen=True)
class Equation:
    """One benchmark equation: ``id`` (e.g. ``I.6.2a``), formula text and input ranges."""

    id: str
    formula: str
    variables: tuple[str, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]
    output: str = "y"
    number: int | None = None

    @property
    def symbols(self) -> list[sp.Symbol]:
        """Plain Symbols named after the variables, in column order."""
        return [sp.Symbol(name) for name in self.variables]

    @property
    def expr(self) -> sp.Expr:
        """The formula as a sympy expression over :attr:`symbols`."""
        return parse_formula(self.formula, self.variables)

    @property
    def ranges(self) -> list[tuple[float, float]]:
        """``(low, high)`` per variable."""
        return list(zip(self.lows, self.highs))

    @property
    def srbench_name(self) -> str:
        """PMLB / SRBench data-set name, e.g. ``feynman_I_6_2a``."""
        return srbench_name(self.id)

    def to_dict(self) -> dict[str, object]:
        """Plain-data form (JSON-able, picklable)."""
        return {"id": self.id, "formula": self.formula, "variables": list(self.variables),
                "lows": list(self.lows), "highs": list(self.highs), "output": self.output,
                "number": self.number}

    @classmethod
    def from_dict(cls, data: dict) -> Equation:
        """Inverse of :meth:`to_dict`."""
        return cls(id=data["id"], formula=data["formula"], variables=tuple(data["variables"]),
                   lows=tuple(data["lows"]), highs=tuple(data["highs"]),
                   output=data.get("output", "y"), number=data.get("number"))


@dataclass(frozen=True)
class Dataset:
    """Train/test split; only ``y_train`` carries noise."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def srbench_name(equation_id: str) -> str:
    """Equation id -> PMLB/SRBench name: ``I.6.2a`` -> ``feynman_I_6_2a``.

    The table's ``I.15.1`` is the data set ``feynman_I_15_10`` (erratum 2 in SOURCES.md).
    """
    base = "I.15.10" if equation_id == "I.15.1" else equation_id
    return "feynman_" + base.replace(".", "_")


def parse_formula(
    text: str,
    names: Sequence[str],
    *,
    strict: bool = True,
    functions: Mapping[str, object] | None = None,
) -> sp.Expr:
    """Parse a numpy-style formula into sympy with ``names`` as plain Symbols.

    With ``strict`` the free symbols must be exactly ``names`` (all of them used, no others).
    ``functions`` adds function names to :data:`FUNCTIONS`. Raises :class:`FormulaError`.
    """
    if not text or not text.strip():
        raise FormulaError("empty formula")
    local = dict(FUNCTIONS)
    local.update(functions or {})
    local.update(CONSTANTS)
    local.update({name: sp.Symbol(name) for name in names})
    try:
        expr = parse_expr(text.strip(), local_dict=local, global_dict=dict(_PARSER_GLOBALS))
        expr = sp.sympify(expr)
    except Exception as exc:  # noqa: BLE001 - parse_expr raises anything
        raise FormulaError(f"cannot parse formula {text!r}: {exc}") from exc
    undefined = sorted({str(f.func) for f in expr.atoms(AppliedUndef)})
    if undefined:
        raise FormulaError(f"unknown function(s) {undefined} in formula {text!r}")
    if strict:
        used = {s.name for s in expr.free_symbols}
        if used != set(names):
            extra, unused = sorted(used - set(names)), sorted(set(names) - used)
            raise FormulaError(
                f"free symbols of {text!r} differ from the listed variables "
                f"(not listed: {extra}, listed but unused: {unused})")
    return expr


def _cell(row: dict[str, str | None], key: str) -> str:
    return (row.get(key) or "").strip()


def _float_cell(row: dict[str, str | None], key: str) -> float:
    text = _cell(row, key)
    try:
        value = float(text)
    except ValueError:
        raise EquationTableError(f"{key} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise EquationTableError(f"{key} is not finite: {text!r}")
    return value


def equation_from_row(row: dict[str, str | None]) -> Equation:
    """Build and validate one :class:`Equation` from a CSV row (raises EquationTableError)."""
    eq_id = _cell(row, "Filename")
    names: list[str] = []
    lows: list[float] = []
    highs: list[float] = []
    for k in range(1, MAX_VARIABLES + 1):
        name = _cell(row, f"v{k}_name")
        if not name:
            continue
        if not name.isidentifier() or keyword.iskeyword(name):
            raise EquationTableError(f"variable name {name!r} is not a valid identifier")
        if name in names:
            raise EquationTableError(f"variable {name!r} listed twice")
        low, high = _float_cell(row, f"v{k}_low"), _float_cell(row, f"v{k}_high")
        if low >= high:
            raise EquationTableError(f"range of {name!r} has low >= high ({low} >= {high})")
        names.append(name)
        lows.append(low)
        highs.append(high)
    if not names:
        raise EquationTableError("no variables listed")
    formula = _cell(row, "Formula")
    try:
        parse_formula(formula, names)
    except FormulaError as exc:
        raise EquationTableError(str(exc)) from None
    declared = _cell(row, "# variables")
    if declared and declared != str(len(names)):
        log.debug("%s: '# variables' says %s but %d are listed (using the list)",
                  eq_id, declared, len(names))
    number = _cell(row, "Number")
    return Equation(id=eq_id, formula=formula, variables=tuple(names), lows=tuple(lows),
                    highs=tuple(highs), output=_cell(row, "Output") or "y",
                    number=int(number) if number.isdigit() else None)


def load_equations(
    path: str | Path | None = None,
    *,
    skip_bad: bool = False,
    errors: list[str] | None = None,
) -> list[Equation]:
    """Read an equation table (default: the repository's ``FeynmanEquations.csv``).

    Raises :class:`EquationTableError` naming the file, line and id of the first bad row,
    unless ``skip_bad`` (then bad rows are logged, appended to ``errors`` and skipped).
    """
    table = Path(path) if path is not None else DEFAULT_TABLE
    if not table.is_file():
        raise FileNotFoundError(f"equation table not found: {table} (pass --equations PATH)")
    with table.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"Filename", "Formula", "v1_name", "v1_low", "v1_high"} - set(reader.fieldnames or [])
        if missing:
            raise EquationTableError(f"{table}: missing columns {sorted(missing)}")
        equations: list[Equation] = []
        seen: set[str] = set()
        for row in reader:
            eq_id = _cell(row, "Filename")
            if not eq_id:
                continue
            try:
                if eq_id in seen:
                    raise EquationTableError("duplicate equation id")
                equation = equation_from_row(row)
            except EquationTableError as exc:
                message = f"{table}, line {reader.line_num}, equation {eq_id}: {exc}"
                if not skip_bad:
                    raise EquationTableError(message) from None
                log.warning("skipping bad row: %s", message)
                if errors is not None:
                    errors.append(message)
                continue
            seen.add(eq_id)
            equations.append(equation)
    return equations


def select_equations(equations: Iterable[Equation], only: Iterable[str] | None) -> list[Equation]:
    """Keep the equations whose id is in ``only`` (all when None); unknown ids raise."""
    equations = list(equations)
    if not only:
        return equations
    wanted = list(dict.fromkeys(only))
    known = {eq.id for eq in equations}
    unknown = [eq_id for eq_id in wanted if eq_id not in known]
    if unknown:
        raise KeyError(f"unknown equation id(s): {unknown}")
    keep = set(wanted)
    return [eq for eq in equations if eq.id in keep]


def generate_data(
    equation: Equation,
    seed: int,
    *,
    n_rows: int = 100_000,
    train_rows: int = 10_000,
    noise: float = 0.0,
    train_fraction: float = 0.75,
) -> Dataset:
    """SRBench 2021 data: ``n_rows`` uniform samples, 75/25 split, train capped, noisy train.

    Inputs are drawn uniformly from each range with ``numpy.random.default_rng(seed)``; the
    split is a random permutation from the same generator; the training part is capped at
    ``train_rows`` rows; training targets get ``N(0, noise * RMS(y_train))`` noise. The test
    set is always clean.
    """
    if n_rows < 2:
        raise ValueError("n_rows must be at least 2")
    if noise < 0:
        raise ValueError("noise must be >= 0")
    rng = np.random.default_rng(seed)
    X = rng.uniform(equation.lows, equation.highs, size=(n_rows, len(equation.variables)))
    y = _evaluate_true(equation, X)
    order = rng.permutation(n_rows)
    n_train = min(max(1, int(round(train_fraction * n_rows))), n_rows - 1)
    train, test = order[:n_train][:train_rows], order[n_train:]
    y_train = y[train].copy()
    if noise > 0:
        rms = float(np.sqrt(np.mean(y_train**2)))
        y_train = y_train + rng.normal(0.0, noise * rms, size=y_train.shape)
    return Dataset(X[train], y_train, X[test], y[test])


def _evaluate_true(equation: Equation, X: np.ndarray) -> np.ndarray:
    from kansr.verify import evaluate

    y = evaluate(equation.expr, equation.symbols, X)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"equation {equation.id} is not finite on its sampling ranges")
    return y
