"""Run benchmark tasks robustly: plan them, skip finished ones, run the rest, append records.

:func:`plan_tasks` lists every (equation, method, seed, noise) task; :func:`run_benchmark`
reads ``OUT/results.jsonl`` (:mod:`kansr.bench.records`), never runs a finished key again
(resume), hands the rest to a backend (:mod:`kansr.bench.backends`: isolated subprocesses
under a hard limit, or Dask) and appends each record as it arrives. Every run also appends
its configuration and source commit to ``OUT/runs.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kansr.bench.backends import STOP, iter_dask, iter_inline, iter_process
from kansr.bench.feynman import Equation
from kansr.bench.methods import load_method, method_reference
from kansr.bench.records import RESULTS_FILE, ResultWriter, kansr_version, read_results, utc_now
from kansr.bench.tasks import RunConfig, Task

log = logging.getLogger(__name__)

RUNS_FILE = "runs.jsonl"


@dataclass
class RunSummary:
    """Counts of a :func:`run_benchmark` call."""

    total: int = 0
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    exact: int = 0
    interrupted: bool = False
    results_path: str = ""
    records: list[dict] = field(default_factory=list, repr=False)


def plan_tasks(equations: Iterable[Equation], methods: Sequence[str], seeds: Sequence[int],
               noises: Sequence[float]) -> list[Task]:
    """All combinations, ordered seed, noise, equation, method (early seeds finish first)."""
    refs = {m: method_reference(m) for m in methods}
    equations = list(equations)
    return [Task(eq, m, int(s), float(g), refs[m])
            for s in seeds for g in noises for eq in equations for m in methods]


def source_commit() -> str | None:
    """The git commit of the kansr source this process imported ("-dirty" appended when the
    package differs from it), or None outside a git checkout. A resumable run may continue
    on newer code: its run log says which commit ran which part."""
    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", str(package))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


# ------------------------------------------------------------------------------- driver


def run_benchmark(
    tasks: Sequence[Task],
    out_dir: str | Path,
    config: RunConfig = RunConfig(),
    *,
    backend: str = "dask",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    dask_processes: bool = True,
) -> RunSummary:
    """Run the unfinished ``tasks``, appending records to ``out_dir/results.jsonl``.

    ``backend``: ``"dask"`` (``scheduler`` address, or a LocalCluster of ``workers`` processes),
    ``"process"`` (``workers`` local babysitter threads) or ``"inline"``. Ctrl-C stops the run,
    keeps every finished line and returns with ``interrupted=True``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS_FILE
    done = {r.get("key") for r in read_results(results, repair=True)}
    pending = [t for t in tasks if t.key not in done]
    summary = RunSummary(total=len(tasks), skipped=len(tasks) - len(pending),
                         results_path=str(results))
    _log_run(out, config, backend, len(tasks), len(pending))
    log.info("%d tasks, %d already finished, %d to run", len(tasks), summary.skipped, len(pending))
    if not pending:
        return summary
    workers = workers or os.cpu_count() or 1
    runners: dict[str, Callable[..., Iterable[dict]]] = {
        "inline": iter_inline, "process": iter_process, "dask": iter_dask}
    if backend not in runners:
        raise ValueError(f"unknown backend {backend!r}; choose from {sorted(runners)}")
    warm_up(pending)
    bar = _progress_bar(len(tasks), summary.skipped, enabled=progress)
    STOP.clear()
    stream = runners[backend](pending, config, workers=workers, scheduler=scheduler,
                              processes=dask_processes)
    try:
        with ResultWriter(results) as writer:
            for record in stream:
                if record.get("status") == "interrupted":
                    continue
                writer.write(record)
                _count(summary, record)
                _update_bar(bar, summary)
    except KeyboardInterrupt:
        STOP.set()
        summary.interrupted = True
        log.warning("interrupted: %d tasks finished this run; rerun to resume", summary.finished)
    finally:
        _close_quietly(stream)
        if bar is not None:
            bar.close()
    return summary


def warm_up(tasks: Iterable[Task]) -> None:
    """Call each method's optional ``warm_up()`` once, here, before any task is timed: a
    one-time compile (kansr's numba kernels, cached on disk: about 10 s) belongs to the
    install, not to the first equation. Local backends' subprocesses then load the cache;
    workers of a remote dask scheduler compile on their first task."""
    seen: set[str] = set()
    for task in tasks:
        ref = task.method_ref or task.method
        if ref in seen:
            continue
        seen.add(ref)
        try:
            hook = getattr(load_method(ref), "warm_up", None)
        except Exception as exc:  # noqa: BLE001 - its tasks report a method that cannot load
            log.debug("no warm-up for %s: %s", ref, exc)
            continue
        if hook is not None:
            hook()


def _close_quietly(stream: Iterable[dict]) -> None:
    """Close a result generator (stops its executor); a second Ctrl-C is not swallowed."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _count(summary: RunSummary, record: dict) -> None:
    summary.finished += 1
    summary.records.append(record)
    if record.get("status") != "ok":
        summary.failed += 1
    if record.get("exact"):
        summary.exact += 1


def _log_run(out: Path, config: RunConfig, backend: str, total: int, pending: int) -> None:
    entry = {"started_at": utc_now(), "argv": sys.argv, "backend": backend, "tasks": total,
             "pending": pending, "config": asdict(config), "kansr_version": kansr_version(),
             "source_commit": source_commit()}
    with (out / RUNS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def _progress_bar(total: int, initial: int, *, enabled: bool):  # noqa: ANN202 - tqdm optional
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        log.info("tqdm not installed; no progress bar")
        return None
    return tqdm(total=total, initial=initial, desc="feynman", unit="task", dynamic_ncols=True)


def _update_bar(bar, summary: RunSummary) -> None:  # noqa: ANN001
    if bar is None:
        return
    rate = 100.0 * summary.exact / summary.finished if summary.finished else 0.0
    bar.set_postfix(done=summary.finished, failed=summary.failed, exact=f"{rate:.1f}%",
                    refresh=False)
    bar.update(1)
