"""Physical units: parsing and the Feynman units table.

A unit is reduced to a :class:`Dimension`, its exponent vector over the SI base units
``m, kg, s, A, K, mol, cd`` (exact fractions). Units are given as

* strings: ``"kg*m^2/s^2"``, ``"m/s"``, ``"kg m**2 s**-2"``, ``"1/s"``, ``"m^(1/2)"``, ``""``
  or ``"1"`` (dimensionless); derived SI units (N, J, W, Pa, C, V, A, Hz, K, ohm, F, T
  (tesla), H, S, Wb, mol, cd, eV, rad, sr) expand to base units;
* mappings from unit names to exponents: ``{"m": 1, "s": -2}`` (keys parsed as units);
* plain sequences of exponents over an explicit base list, by default :data:`FEYNMAN_BASES`
  (the columns of the Feynman ``units.csv``: metre, second, kilogram, kelvin, volt).

>>> parse_unit("N*m") == parse_unit("kg m**2 s**-2")
True

Dimensional reduction (Buckingham pi) lives in :mod:`kansr.structure.pi_groups`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Union


#: The SI base units, the coordinates of every :class:`Dimension`.
SI_BASES: tuple[str, ...] = ("m", "kg", "s", "A", "K", "mol", "cd")
#: Column order of the Feynman ``units.csv`` (its column ``T`` is kelvin, written ``K`` here).
FEYNMAN_BASES: tuple[str, ...] = ("m", "s", "kg", "K", "V")
#: Repository copy of the Feynman units table.
DEFAULT_UNITS_TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "feynman" / "units.csv"


@dataclass(frozen=True)
class Dimension:
    """Exponents of a unit over :data:`SI_BASES`; supports ``*``, ``/`` and ``**``."""

    exponents: tuple[Fraction, ...] = (Fraction(0),) * len(SI_BASES)

    @classmethod
    def base(cls, name: str) -> Dimension:
        """The dimension of one SI base unit, e.g. ``Dimension.base("kg")``."""
        return cls(tuple(Fraction(int(b == name)) for b in SI_BASES))

    def __mul__(self, other: Dimension) -> Dimension:
        return Dimension(tuple(a + b for a, b in zip(self.exponents, other.exponents)))

    def __truediv__(self, other: Dimension) -> Dimension:
        return Dimension(tuple(a - b for a, b in zip(self.exponents, other.exponents)))

    def __pow__(self, power: int | Fraction) -> Dimension:
        return Dimension(tuple(a * Fraction(power) for a in self.exponents))

    @property
    def dimensionless(self) -> bool:
        """True when every exponent is zero."""
        return not any(self.exponents)

    def __str__(self) -> str:
        parts = [b if e == 1 else f"{b}^{e}" if e.denominator == 1 else f"{b}^({e})"
                 for b, e in zip(SI_BASES, self.exponents) if e]
        return "*".join(parts) or "1"


def _derived() -> dict[str, Dimension]:
    m, kg, s, A, K, mol, cd = (Dimension.base(b) for b in SI_BASES)
    one = Dimension()
    N = kg * m / s**2
    J = N * m
    W = J / s
    C = A * s
    V = W / A
    ohm = V / A
    Wb = V * s
    return {
        "m": m, "kg": kg, "g": kg, "s": s, "A": A, "K": K, "mol": mol, "cd": cd,
        "Hz": one / s, "N": N, "Pa": N / m**2, "J": J, "eV": J, "W": W, "C": C, "V": V,
        "F": C / V, "ohm": ohm, "Ohm": ohm, "\u03a9": ohm, "S": A / V, "Wb": Wb,
        "T": Wb / m**2, "H": Wb / A, "rad": one, "sr": one, "dimensionless": one,
    }


#: Unit names the parser knows, with their dimensions.
UNITS: dict[str, Dimension] = _derived()

_TOKEN = re.compile(r"\s*(\*\*|\^|[A-Za-z_\u03a9][A-Za-z_0-9]*|\d+(?:\.\d*)?|\.\d+|[*/()+\-\u00b7])")


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unit {text!r}: cannot read {text[pos:].strip()!r} "
                             f"(use names, *, /, ^ or **, parentheses)")
        tokens.append("*" if match.group(1) == "\u00b7" else match.group(1))
        pos = match.end()
    return tokens


class _UnitParser:
    """Recursive-descent parser: product := power ((* | / | juxtaposition) power)*."""

    def __init__(self, text: str):
        self.text, self.tokens, self.i = text, _tokenize(text), 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ValueError(f"unit {self.text!r}: ends unexpectedly")
        self.i += 1
        return tok

    def error(self, tok: str, why: str) -> ValueError:
        return ValueError(f"unit {self.text!r}: {why} {tok!r}")

    def parse(self) -> Dimension:
        if not self.tokens:
            return Dimension()
        dim = self.product()
        if self.peek() is not None:
            raise self.error(self.peek(), "unexpected token")
        return dim

    def product(self) -> Dimension:
        dim = self.power()
        while (tok := self.peek()) is not None and tok != ")":
            if tok in ("*", "/"):
                self.take()
                rhs = self.power()
                dim = dim * rhs if tok == "*" else dim / rhs
            else:
                dim = dim * self.power()
        return dim

    def power(self) -> Dimension:
        dim = self.atom()
        if self.peek() in ("^", "**"):
            self.take()
            dim = dim ** self.exponent()
        return dim

    def atom(self) -> Dimension:
        tok = self.take()
        if tok == "(":
            dim = self.product()
            if self.take() != ")":
                raise self.error(tok, "unbalanced parenthesis near")
            return dim
        if tok[0].isdigit() or tok[0] == ".":
            if Fraction(tok) != 1:
                raise self.error(tok, "numeric factors are not units; found")
            return Dimension()
        if tok in UNITS:
            return UNITS[tok]
        if tok in ("*", "/", "^", "**", ")", "+", "-"):
            raise self.error(tok, "expected a unit name, found")
        raise self.error(tok, "unknown unit")

    def number(self) -> Fraction:
        sign = -1 if self.peek() == "-" else 1
        if self.peek() in ("-", "+"):
            self.take()
        tok = self.take()
        if not (tok[0].isdigit() or tok[0] == "."):
            raise self.error(tok, "expected a number in the exponent, found")
        return sign * Fraction(tok)

    def exponent(self) -> Fraction:
        if self.peek() != "(":
            return self.number()
        self.take()
        value = self.number()
        if self.peek() == "/":
            self.take()
            value /= self.number()
        if self.take() != ")":
            raise ValueError(f"unit {self.text!r}: exponent must be a number or (p/q)")
        return value


def parse_unit(text: str) -> Dimension:
    """The dimension of a unit string, e.g. ``parse_unit("N*m") == parse_unit("J")``.

    ``*``, ``/`` and juxtaposition multiply left to right (``"J/kg K"`` is J K / kg);
    exponents are ``^`` or ``**`` with an integer, a decimal or ``(p/q)``.
    Raises ValueError naming the offending token for unknown units or bad syntax.
    """
    return _UnitParser(text).parse()


UnitLike = Union[str, Dimension, Mapping[str, float], Sequence[float]]


def _fraction(value: object, where: str) -> Fraction:
    if isinstance(value, (int, Fraction, str)):
        return Fraction(value)
    number = float(value)  # type: ignore[arg-type]
    frac = Fraction(number).limit_denominator(1000)
    if not math.isfinite(number) or abs(float(frac) - number) > 1e-9:
        raise ValueError(f"{where}: exponent {value!r} is not a simple rational")
    return frac


def as_dimension(unit: UnitLike, bases: Sequence[str] = FEYNMAN_BASES) -> Dimension:
    """A :class:`Dimension` from a unit string, a {unit: exponent} mapping, or exponents over ``bases``.

    ``bases`` (default :data:`FEYNMAN_BASES`) names the units of a plain exponent sequence;
    each name is parsed as a unit, so note that ``"T"`` there means tesla (kelvin is ``"K"``).
    """
    if isinstance(unit, Dimension):
        return unit
    if isinstance(unit, str):
        return parse_unit(unit)
    if isinstance(unit, Mapping):
        items = list(unit.items())
    else:
        values = list(unit)
        if len(values) != len(bases):
            raise ValueError(f"exponent vector {values} has {len(values)} entries for "
                             f"{len(bases)} base units {tuple(bases)}")
        items = list(zip(bases, values))
    dim = Dimension()
    for name, power in items:
        dim = dim * parse_unit(str(name)) ** _fraction(power, f"unit {unit!r}")
    return dim


def load_units_table(path: str | Path = DEFAULT_UNITS_TABLE) -> dict[str, dict[str, int | Fraction]]:
    """Read a Feynman ``units.csv`` into ``{variable: {"m": .., "s": .., "kg": .., "K": .., "V": ..}}``.

    The file is UTF-8 with a BOM, CRLF line ends and a trailing comma on every row; rows
    without a ``Variable`` are skipped. Its kelvin column ``T`` becomes the key ``"K"`` so that
    every dict can go straight to :func:`as_dimension`.
    """
    columns = {"m": "m", "s": "s", "kg": "kg", "T": "K", "V": "V"}
    table: dict[str, dict[str, int | Fraction]] = {}
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"Variable", *columns} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            name = (row.get("Variable") or "").strip()
            if not name:
                continue
            if name in table:
                raise ValueError(f"{path}:{line}: variable {name!r} listed twice")
            try:
                exps = {key: Fraction((row[col] or "0").strip()) for col, key in columns.items()}
            except ValueError as err:
                raise ValueError(f"{path}:{line}: bad exponent for {name!r}: {err}") from None
            table[name] = {k: int(v) if v.denominator == 1 else v for k, v in exps.items()}
    return table
