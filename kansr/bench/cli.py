"""Command line for the benchmark: ``kansr bench feynman ...`` and ``kansr bench report DIR``.

The main CLI adds these with :func:`add_bench_parser`; each sub-command sets ``func`` (takes
the parsed namespace, returns an exit code). Standalone: ``python -m kansr.bench.cli ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)

NOISE_LEVELS = (0.0, 0.001, 0.01, 0.1)


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,7"`` or ``"0-4,10"`` -> list of ints."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                start, end = part.split("-", 1)
                first, last = int(start), int(end)
                if last < first:
                    raise ValueError
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad seed list {text!r} (use e.g. 0-9 or 0,3,7)") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return list(dict.fromkeys(seeds))


def _noise(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad noise level {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("noise must be >= 0")
    return value


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` (with ``feynman`` and ``report``) to a main CLI's sub-parsers."""
    bench = subparsers.add_parser("bench", help="benchmarks (Feynman / SRBench 2021 protocol)")
    commands = bench.add_subparsers(dest="bench_command", metavar="{feynman,report}")
    commands.required = True
    _add_feynman(commands)
    _add_report(commands)
    return bench


def _add_feynman(commands: argparse._SubParsersAction) -> None:
    from kansr.bench.methods import DEFAULT_METHODS

    p = commands.add_parser(
        "feynman", help="run methods on the Feynman equations (resumable)",
        description="Run symbolic-regression methods on Feynman equations following the "
                    "SRBench 2021 protocol. Results go to OUT/results.jsonl, one line per "
                    "(equation, method, seed, noise); rerunning resumes.")
    p.add_argument("--equations", metavar="PATH", help="equation table in FeynmanEquations.csv "
                   "format (default: the repository's 100 Feynman equations)")
    p.add_argument("--only", nargs="+", metavar="ID", help="equation ids to run (e.g. I.6.2a)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="NAME",
                   help=f"registered methods or module:function (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-9"),
                   help="seeds, e.g. 0-9 or 0,3,7 (default: 0-9)")
    p.add_argument("--noise", type=_noise, nargs="+", default=list(NOISE_LEVELS),
                   help="noise levels gamma (default: 0 0.001 0.01 0.1)")
    p.add_argument("--rows", type=int, default=100_000,
                   help="rows generated per data set before the 75/25 split (default: 100000)")
    p.add_argument("--train-rows", type=int, default=10_000,
                   help="maximum training rows (default: 10000)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                   help="each method's budget per task (default: 60)")
    p.add_argument("--hard-limit-factor", type=float, default=1.5, metavar="F",
                   help="kill a task after time_limit*F + overhead seconds (default: 1.5)")
    p.add_argument("--overhead", type=float, default=60.0, metavar="SECONDS",
                   help="seconds added to the hard limit for startup and scoring (default: 60)")
    p.add_argument("--out", default="feynman-results", metavar="DIR",
                   help="output folder (default: feynman-results)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel tasks (default: number of cores)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="use an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--backend", choices=("dask", "process", "inline"), default="dask",
                   help="dask (default), process (local pool, no Dask) or inline (debug)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip bad table rows (logged) instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true", help="write the report when done")
    p.set_defaults(func=run_feynman_command)


def _add_report(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("report", help="write DIR/report.md and DIR/rates.png")
    p.add_argument("dir", metavar="DIR", help="folder holding results.jsonl")
    p.add_argument("--srbench", metavar="TSV", help="SRBench 2021 per-data-set rates (default: "
                   "benchmarks/feynman/srbench2021_symbolic_solution_rate_noise0.tsv)")
    p.add_argument("--no-plot", action="store_true", help="skip rates.png")
    p.set_defaults(func=report_command)


def run_feynman_command(args: argparse.Namespace) -> int:
    """Handler of ``bench feynman``; returns the exit code (130 when interrupted)."""
    from kansr.bench.feynman import EquationTableError, load_equations, select_equations
    from kansr.bench.runner import plan_tasks, run_benchmark
    from kansr.bench.tasks import RunConfig

    errors: list[str] = []
    try:
        equations = select_equations(
            load_equations(args.equations, skip_bad=args.skip_bad_rows, errors=errors),
            _split_names(args.only))
        tasks = plan_tasks(equations, _split_names(args.methods) or [], args.seeds, args.noise)
    except (EquationTableError, FileNotFoundError, KeyError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's INFO chatter
    config = RunConfig(time_limit=args.time_limit, n_rows=args.rows, train_rows=args.train_rows,
                       slack=args.hard_limit_factor, overhead=args.overhead)
    summary = run_benchmark(tasks, args.out, config, backend=args.backend, workers=args.workers,
                            scheduler=args.scheduler, progress=not args.no_progress)
    log.info("finished %d, failed %d, exact %d, skipped (already done) %d; results in %s",
             summary.finished, summary.failed, summary.exact, summary.skipped,
             summary.results_path)
    if errors:
        log.warning("%d bad table rows were skipped", len(errors))
    if summary.interrupted:
        return 130
    if args.report:
        from kansr.bench.report import write_report

        log.info("report: %s", write_report(args.out))
    return 0


def report_command(args: argparse.Namespace) -> int:
    """Handler of ``bench report``."""
    from kansr.bench.report import write_report

    try:
        path = write_report(args.dir, srbench_tsv=args.srbench, plot=not args.no_plot)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    log.info("wrote %s", path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m kansr.bench.cli feynman ...``."""
    parser = argparse.ArgumentParser(prog="python -m kansr.bench.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_parser(sub)
    args = parser.parse_args(["bench", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
