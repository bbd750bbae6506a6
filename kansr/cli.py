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


class CLIError(Exception):
    """A problem with the command line's input: one line on stderr, exit code 2."""


def _load_table(path: Path | str, target: str):
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise CLIError(f"{path}: no such file")
    if path.is_dir():
        raise CLIError(f"{path} is a directory, not a CSV file")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise CLIError(f"{path} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path} is not a readable CSV file: {exc}".splitlines()[0]) from None
    if target not in df.columns:
        raise CLIError(f"target column {target!r} not in {list(df.columns)}")
    if df.empty:
        raise CLIError(f"{path} has a header but no rows")
    return df.drop(columns=[target]), df[target]


def _discover(X, y, args: argparse.Namespace) -> int:
    import warnings

    from . import KANSR

    t0 = time.perf_counter()
    if args.library is not None and not Path(args.library).is_file():
        raise CLIError(f"--library {args.library}: no such file")
    model = KANSR(library=args.library, fallback=None if args.fallback == "none" else args.fallback,
                  random_state=args.seed, max_time=args.max_time, verbose=args.verbose,
                  denoise=args.denoise)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # interruption is reported below
            model.fit(X, y)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    if model.interrupted_:
        print("interrupted: the best law found so far", file=sys.stderr)
    print(f"law:     {model.sympy()}")
    print(f"R^2:     {model.score(X, y):.12f}")
    print(f"noise:   {model.noise_:.3g} (std of y; {'noisy' if model.noisy_ else 'noise-free'}"
          " as far as the search could tell)")
    print(f"seconds: {time.perf_counter() - t0:.1f}")
    if args.verbose:
        print(model.equations_.to_string())
    return 130 if model.interrupted_ else 0


def cmd_fit(args: argparse.Namespace) -> int:
    X, y = _load_table(args.csv, args.target)
    return _discover(X, y, args)


def cmd_demo(args: argparse.Namespace) -> int:
    filename, target, truth = EXAMPLES[args.example]
    with resources.as_file(resources.files("kansr") / "data" / filename) as path:
        X, y = _load_table(path, target)
    print(f"example: {filename} ({len(X)} rows); the law that generated it: {target} = {truth}")
    return _discover(X, y, args)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", default=None, help="function library TOML (default: built-in)")
    p.add_argument("--fallback", default="auto", choices=["auto", "pysr", "operon", "none"],
                   help="symbolic regression engine for edges no primitive explains")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-time", type=_seconds, default=None, metavar="SECONDS",
                   help="time budget of the search (default: none, bounded by step counts)")
    p.add_argument("--denoise", action="store_true",
                   help="smooth y by local fits before the search (very noisy tables)")
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
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: abort without a traceback
        print("aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
