"""Primitive function library used to match KAN edges.

A :class:`Primitive` is a 1-D function ``f(x)`` given as a sympy expression in
``Symbol("x")`` plus metadata (complexity, domain, singular points).  A
:class:`Library` is an ordered, immutable collection of primitives with unique
names, loaded from TOML (``kansr/library/default.toml``, shipped inside the package).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from tokenize import TokenError
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
import sympy
from sympy.codegen.rewriting import create_expand_pow_optimization

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

logger = logging.getLogger(__name__)

X = sympy.Symbol("x")
"""The variable every primitive expression is written in."""

RESERVED_NAMES = frozenset({"const"})

_PARSE_LOCALS: dict[str, Any] = {
    "x": X,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "arcsinh": sympy.asinh,
    "arccosh": sympy.acosh,
    "arctanh": sympy.atanh,
    "ln": sympy.log,
    "abs": sympy.Abs,
}

_REQUIRED_FIELDS = ("name", "expr", "complexity")
_OPTIONAL_FIELDS = ("domain", "singular")


class LibraryError(ValueError):
    """Raised for an invalid primitive or library specification."""


# --------------------------------------------------------------------------- #
# Domain strings
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Domain:
    """Parsed domain: an interval with open/closed ends minus excluded points."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_closed: bool = False
    hi_closed: bool = False
    excluded: tuple[float, ...] = ()

    def contains(self, u: np.ndarray) -> np.ndarray:
        """Pointwise membership; ``u`` any shape -> bool array of same shape."""
        u = np.asarray(u, dtype=np.float64)
        ok = (u >= self.lo) if self.lo_closed else (u > self.lo)
        ok &= (u <= self.hi) if self.hi_closed else (u < self.hi)
        for p in self.excluded:
            ok &= u != p
        return ok


_OP_RE = re.compile(r"(<=|>=|!=|<|>)")
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _parse_bound(text: str, domain: str) -> float:
    try:
        val = sympy.sympify(text, locals=_PARSE_LOCALS)
    except (sympy.SympifyError, SyntaxError, TypeError) as exc:
        raise LibraryError(f"domain {domain!r}: cannot parse bound {text!r}") from exc
    if val.free_symbols:
        raise LibraryError(f"domain {domain!r}: bound {text!r} is not a number")
    try:
        out = float(val)
    except TypeError as exc:
        raise LibraryError(f"domain {domain!r}: bound {text!r} is not real") from exc
    if math.isnan(out):
        raise LibraryError(f"domain {domain!r}: bound {text!r} is NaN")
    return out


def parse_domain(domain: str) -> Domain:
    """Parse ``"x > 0"``, ``"-1 < x <= 1"``, ``"x != 0"`` (clauses joined by ',' or 'and').

    The empty string (or ``"all"``/``"real"``) means all reals.
    """
    text = domain.strip()
    lo, hi, lo_c, hi_c = -math.inf, math.inf, False, False
    excluded: list[float] = []
    if text.lower() in ("", "all", "real", "reals"):
        return Domain()
    for clause in re.split(r",|\band\b", text):
        clause = clause.strip()
        if not clause:
            continue
        parts = [p.strip() for p in _OP_RE.split(clause)]
        operands, ops = parts[0::2], parts[1::2]
        if len(operands) not in (2, 3) or operands.count("x") != 1:
            raise LibraryError(
                f"domain {domain!r}: clause {clause!r} must compare x with "
                "constants, e.g. 'x > 0', '-1 < x < 1', 'x != 0'"
            )
        if "!=" in ops:
            if len(ops) != 1:
                raise LibraryError(f"domain {domain!r}: '!=' cannot be chained")
            other = operands[1] if operands[0] == "x" else operands[0]
            excluded.append(_parse_bound(other, domain))
            continue
        # normalise every comparison to "x OP c"
        ix = operands.index("x")
        pairs: list[tuple[str, str]] = []
        if ix > 0:
            pairs.append((_FLIP[ops[ix - 1]], operands[ix - 1]))
        if ix < len(ops):
            pairs.append((ops[ix], operands[ix + 1]))
        for op, other in pairs:
            c = _parse_bound(other, domain)
            if op in (">", ">="):
                if c > lo or (c == lo and op == ">"):
                    lo, lo_c = c, op == ">="
            elif c < hi or (c == hi and op == "<"):
                hi, hi_c = c, op == "<="
    if lo > hi or (lo == hi and not (lo_c and hi_c)):
        raise LibraryError(f"domain {domain!r} is empty")
    return Domain(lo, hi, lo_c, hi_c, tuple(excluded))


# --------------------------------------------------------------------------- #
# Primitive
# --------------------------------------------------------------------------- #
def parse_expr(text: str, name: str = "?") -> sympy.Expr:
    """Parse a primitive expression string in ``x``; raise :class:`LibraryError`."""
    if not isinstance(text, str) or not text.strip():
        raise LibraryError(f"primitive {name!r}: expr must be a non-empty string")
    try:
        expr = sympy.sympify(text, locals=_PARSE_LOCALS, convert_xor=True)
    except (sympy.SympifyError, SyntaxError, TypeError, TokenError) as exc:
        raise LibraryError(f"primitive {name!r}: cannot parse expr {text!r}: {exc}") from exc
    return _check_expr(expr, name)


def _check_expr(expr: Any, name: str) -> sympy.Expr:
    if not isinstance(expr, sympy.Expr):
        raise LibraryError(f"primitive {name!r}: expr {expr!r} is not a sympy expression")
    free = expr.free_symbols
    if free != {X}:
        extra = sorted(str(s) for s in free - {X})
        what = f"uses unknown symbols {extra}" if extra else "does not depend on x"
        raise LibraryError(f"primitive {name!r}: expr {expr} {what}")
    undef = expr.atoms(sympy.core.function.AppliedUndef)
    if undef:
        raise LibraryError(
            f"primitive {name!r}: expr {expr} uses unknown functions "
            f"{sorted(str(u.func) for u in undef)}"
        )
    return expr


@dataclass(frozen=True)
class Primitive:
    """One library function ``f(x)``.

    Attributes:
        name: unique label.
        expr: sympy expression in ``Symbol("x")``.
        complexity: small non-negative integer (see ``kansr/library/default.toml``).
        domain: domain string, "" for all reals.
        singular: points where ``f`` blows up.
    """

    name: str
    expr: sympy.Expr
    complexity: int
    domain: str = ""
    singular: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise LibraryError(f"primitive name must be a non-empty string, got {self.name!r}")
        if self.name in RESERVED_NAMES:
            raise LibraryError(f"primitive name {self.name!r} is reserved")
        if isinstance(self.expr, str):
            object.__setattr__(self, "expr", parse_expr(self.expr, self.name))
        else:
            _check_expr(self.expr, self.name)
        if isinstance(self.complexity, bool) or not isinstance(self.complexity, int):
            raise LibraryError(
                f"primitive {self.name!r}: complexity must be an int, got {self.complexity!r}"
            )
        if self.complexity < 0:
            raise LibraryError(f"primitive {self.name!r}: complexity must be >= 0")
        if not isinstance(self.domain, str):
            raise LibraryError(f"primitive {self.name!r}: domain must be a string")
        try:
            sing = tuple(float(s) for s in self.singular)
        except (TypeError, ValueError) as exc:
            raise LibraryError(
                f"primitive {self.name!r}: singular must be a list of numbers"
            ) from exc
        object.__setattr__(self, "singular", sing)
        _ = self.parsed_domain  # validate eagerly

    # ---- derived ------------------------------------------------------- #
    @cached_property
    def parsed_domain(self) -> Domain:
        """The domain string parsed into a :class:`Domain`."""
        try:
            return parse_domain(self.domain)
        except LibraryError as exc:
            raise LibraryError(f"primitive {self.name!r}: {exc}") from exc

    @cached_property
    def numpy_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """Vectorised numpy callable ``f(u)``; ``u`` any shape -> same shape."""
        raw = sympy.lambdify(X, _expand_pow(self.expr), modules="numpy")

        def fn(u: np.ndarray) -> np.ndarray:
            out = raw(u)
            return out if np.shape(out) == np.shape(u) else np.broadcast_to(out, np.shape(u))

        return fn

    @cached_property
    def numpy_deriv(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Numpy callable for ``f'(u)``, or None if sympy cannot give a clean one."""
        xr = sympy.Symbol("x_real", real=True)
        d = sympy.diff(self.expr.subs(X, xr), xr)
        if d.has(sympy.Derivative, sympy.Subs) or d.atoms(sympy.core.function.AppliedUndef):
            return None
        raw = sympy.lambdify(xr, _expand_pow(d), modules="numpy")

        def fn(u: np.ndarray) -> np.ndarray:
            out = raw(u)
            return out if np.shape(out) == np.shape(u) else np.broadcast_to(out, np.shape(u))

        return fn

    @property
    def torch_fn(self) -> Callable[[Any], Any]:
        """Callable on torch tensors computing ``f`` (differentiable where f is)."""
        return _torch_fn(self.expr)

    # ---- domain checks -------------------------------------------------- #
    def domain_ok(self, u: np.ndarray) -> np.ndarray:
        """Pointwise: is ``u`` inside the domain and not a singular point?  Same shape as u."""
        ok = self.parsed_domain.contains(u)
        for p in self.singular:
            ok &= np.asarray(u) != p
        return ok

    def range_ok(self, u_lo: np.ndarray, u_hi: np.ndarray) -> np.ndarray:
        """Is the whole interval ``[u_lo, u_hi]`` admissible?  Arrays broadcast -> bool.

        Both ends must lie in the (interval) domain and no singular/excluded
        point may lie in the closed interval.
        """
        u_lo = np.asarray(u_lo, dtype=np.float64)
        u_hi = np.asarray(u_hi, dtype=np.float64)
        dom = self.parsed_domain
        ok = dom.contains(u_lo) & dom.contains(u_hi)
        for p in self.singular + dom.excluded:
            ok &= ~((u_lo <= p) & (p <= u_hi))
        return ok

    def interval_ok(self, u_lo: float, u_hi: float) -> bool:
        """Scalar, allocation-free version of :meth:`range_ok` for ``u_lo <= u_hi``."""
        dom = self.parsed_domain
        if not (u_lo >= dom.lo if dom.lo_closed else u_lo > dom.lo):
            return False
        if not (u_hi <= dom.hi if dom.hi_closed else u_hi < dom.hi):
            return False
        return not any(u_lo <= p <= u_hi for p in self._blocked)

    @cached_property
    def _blocked(self) -> tuple[float, ...]:
        return self.singular + self.parsed_domain.excluded

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return self.numpy_fn(np.asarray(u, dtype=np.float64))


# small integer powers as repeated products: numpy's generic float pow is ~10x slower
_expand_pow = create_expand_pow_optimization(6)


@functools.lru_cache(maxsize=None)
def _torch_fn(expr: sympy.Expr) -> Callable[[Any], Any]:
    import torch  # noqa: F401  (lazy: torch is heavy and only needed for fine-tuning)

    return sympy.lambdify(X, expr, modules="torch")


# --------------------------------------------------------------------------- #
# Library
# --------------------------------------------------------------------------- #
def default_library_path() -> Path:
    """Path of the default library, ``kansr/library/default.toml`` (package data, so it
    ships in wheels as well as editable installs)."""
    return Path(__file__).resolve().parents[1] / "library" / "default.toml"


def _primitive_from_table(entry: Any, index: int, source: str) -> Primitive:
    where = f"{source}: primitive #{index}"
    if not isinstance(entry, dict):
        raise LibraryError(f"{where} must be a table")
    name = entry.get("name", f"#{index}")
    missing = [k for k in _REQUIRED_FIELDS if k not in entry]
    if missing:
        raise LibraryError(f"{where} ({name!r}) is missing field(s) {missing}")
    unknown = sorted(set(entry) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
    if unknown:
        raise LibraryError(f"{where} ({name!r}) has unknown field(s) {unknown}")
    singular = entry.get("singular", [])
    if not isinstance(singular, list):
        raise LibraryError(f"{where} ({name!r}): singular must be a list of numbers")
    try:
        return Primitive(
            name=entry["name"],
            expr=parse_expr(entry["expr"], str(name)),
            complexity=entry["complexity"],
            domain=entry.get("domain", ""),
            singular=tuple(singular),
        )
    except LibraryError as exc:
        raise LibraryError(f"{source}: {exc}") from exc


class Library:
    """Immutable ordered collection of :class:`Primitive` with unique names.

    Methods that "modify" (:meth:`add`, :meth:`subset`) return a new Library.
    """

    def __init__(self, primitives: Iterable[Primitive]):
        prims = tuple(primitives)
        by_name: dict[str, Primitive] = {}
        for p in prims:
            if not isinstance(p, Primitive):
                raise TypeError(f"Library items must be Primitive, got {type(p).__name__}")
            if p.name in by_name:
                raise LibraryError(f"duplicate primitive name {p.name!r}")
            by_name[p.name] = p
        self._prims = prims
        self._by_name = by_name

    # ---- construction --------------------------------------------------- #
    @classmethod
    def default(cls) -> "Library":
        """The library in ``kansr/library/default.toml`` (cached; Libraries are immutable)."""
        path = default_library_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"default primitive library not found at {path}; expected "
                "kansr/library/default.toml inside the installed package (a broken install?)"
            )
        return _load_cached(str(path), path.stat().st_mtime_ns)

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "Library":
        """Load a TOML file containing ``[[primitive]]`` tables."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"primitive library file not found: {path}")
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise LibraryError(f"{path}: invalid TOML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "Library":
        """Build from parsed TOML data ``{"primitive": [ {...}, ... ]}``."""
        entries = data.get("primitive")
        if entries is None:
            raise LibraryError(f"{source}: no [[primitive]] tables found")
        if not isinstance(entries, list):
            raise LibraryError(f"{source}: 'primitive' must be an array of tables")
        prims = [_primitive_from_table(e, i, source) for i, e in enumerate(entries)]
        try:
            lib = cls(prims)
        except LibraryError as exc:
            raise LibraryError(f"{source}: {exc}") from exc
        logger.debug("loaded %d primitives from %s", len(lib), source)
        return lib

    # ---- derived libraries --------------------------------------------- #
    def add(
        self,
        name: str,
        expr: Union[str, sympy.Expr],
        complexity: int,
        domain: str = "",
        singular: Sequence[float] = (),
    ) -> "Library":
        """Return a new Library with one more primitive (self is unchanged)."""
        if isinstance(expr, str):
            expr = parse_expr(expr, name)
        prim = Primitive(name, expr, complexity, domain, tuple(singular))
        return Library(self._prims + (prim,))

    def subset(self, names: Iterable[str]) -> "Library":
        """Return a new Library with only ``names`` (in the given order)."""
        return Library(self[n] for n in names)

    # ---- container protocol -------------------------------------------- #
    @property
    def names(self) -> list[str]:
        return [p.name for p in self._prims]

    def __getitem__(self, name: str) -> Primitive:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no primitive named {name!r}; have {self.names}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Primitive]:
        return iter(self._prims)

    def __len__(self) -> int:
        return len(self._prims)

    def __repr__(self) -> str:
        return f"Library({self.names})"


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Library:
    return Library.from_file(path)


LibrarySpec = Union[None, str, Path, Library]


def load_library(spec: LibrarySpec = None) -> Library:
    """Resolve ``spec``: None -> default library, str/Path -> TOML file, Library -> itself."""
    if spec is None:
        return Library.default()
    if isinstance(spec, Library):
        return spec
    if isinstance(spec, (str, Path)):
        return Library.from_file(spec)
    raise TypeError(f"library spec must be None, a path or a Library, got {type(spec).__name__}")
