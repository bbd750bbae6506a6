"""Command line: `kansr fit`, `kansr demo`, `kansr bench ...`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from importlib import resources
from pathlib import Path

EXAMPLES = {
    "electric_field": ("electric_field.csv", "E", "q/(4*pi*epsilon*r**2)"),
    "kan_paper": ("kan_paper.csv", "f", "exp(sin(pi*x) + y**2)"),
}


def _load_table(path: Path | str, target: str):
    import pandas as pd

    df = pd.read_csv(path)
    if target not in df.columns:
        raise SystemExit(f"error: target column {target!r} not in {list(df.columns)}")
    return df.drop(columns=[target]), df[target]


def _discover(X, y, args: argparse.Namespace) -> int:
    from . import KANSR

    t0 = time.perf_counter()
    model = KANSR(library=args.library, fallback=None if args.fallback == "none" else args.fallback,
                  random_state=args.seed, verbose=args.verbose)
    try:
        model.fit(X, y)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"law:     {model.sympy()}")
    print(f"R^2:     {model.score(X, y):.12f}")
    print(f"seconds: {time.perf_counter() - t0:.1f}")
    if args.verbose:
        print(model.equations_.to_string())
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    X, y = _load_table(args.csv, args.target)
    return _discover(X, y, args)


def cmd_demo(args: argparse.Namespace) -> int:
    filename, target, truth = EXAMPLES[args.example]
    with resources.as_file(resources.files("kansr") / "data" / filename) as path:
        X, y = _load_table(path, target)
    print(f"example: {filename} ({len(X)} rows); the law that generated it: {target} = {truth}")
    return _discover(X, y, args)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", default=None, help="function library TOML (default: built-in)")
    p.add_argument("--fallback", default="auto", choices=["auto", "pysr", "operon", "none"],
                   help="symbolic regression engine for edges no primitive explains")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="progress bars and stage logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kansr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="discover the law behind a CSV table")
    p.add_argument("csv", type=Path)
    p.add_argument("--target", required=True, help="name of the column to explain")
    _common(p)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("demo", help="discover a law from example data shipped with kansr")
    p.add_argument("--example", default="electric_field", choices=sorted(EXAMPLES))
    _common(p)
    p.set_defaults(func=cmd_demo)
    from .bench.cli import add_bench_parser

    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
