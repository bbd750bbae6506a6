"""Run benchmark tasks robustly: isolated subprocesses, JSONL results, resume, Dask.

A *task* is one (equation, method, seed, noise). Each task runs in a fresh Python subprocess
(:func:`run_task_isolated`) that generates the data, calls the method with its time budget,
scores and verifies the result, and writes one record. The parent kills the subprocess's
whole process group after the hard limit ``time_limit * slack + overhead`` and records
``error = "timeout"``; a crash (segfault, out of memory, ``os._exit``) becomes a record with
``status = "crash"``. Nothing a method does can stop the run.

Records are appended to ``OUT/results.jsonl`` (flushed and fsynced) as soon as each task
finishes. On start, existing lines are read (a truncated last line, e.g. after ``kill -9``, is
cut off) and their keys are never run again, whatever their status.

Backends: ``"dask"`` (``LocalCluster`` with one single-threaded worker process per core, or
``Client(scheduler_address)``), ``"process"`` (a local thread pool babysitting subprocesses;
no Dask needed) and ``"inline"`` (no isolation or hard limit; for debugging).

Record schema (one JSON object per line): see :data:`RECORD_FIELDS`.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from kansr.bench.feynman import Equation, generate_data, parse_formula
from kansr.bench.methods import load_method, method_reference

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
RUNS_FILE = "runs.jsonl"

#: Fields of every result record, with their meaning.
RECORD_FIELDS: dict[str, str] = {
    "key": "equation|method|seed|noise, unique per task",
    "equation": "equation id, e.g. I.6.2a",
    "srbench_name": "PMLB/SRBench data-set name, e.g. feynman_I_6_2a",
    "method": "method name",
    "seed": "seed of the data and of the method",
    "noise": "noise level gamma (training targets get N(0, gamma*RMS(y)))",
    "n_train": "training rows",
    "n_test": "test rows",
    "true_formula": "the table's formula (text)",
    "found_raw": "str() of the expression the method returned, or null",
    "found_simplified": "str() of sympy.simplify(found) (time-limited; raw when it times out)",
    "found_rounded": "found with floats rounded to 3 significant digits (SRBench rule)",
    "complexity": "number of nodes (operators, functions, symbols, numbers) in the tree of "
                  "found_simplified, counted by sympy.preorder_traversal",
    "r2_train": "R^2 on the (noisy) training data, null when predictions are not finite",
    "r2_test": "R^2 on the clean test data, null when predictions are not finite",
    "symbolic": "SRBench sympy rule verdict; null when not checked (r2_test <= 0.5)",
    "numeric": "affine refit on fresh samples verdict; null when not checked",
    "exact": "symbolic solution: r2_test > 0.5 and symbolic and numeric",
    "accuracy": "accuracy solution: r2_test > 0.999",
    "seconds": "wall seconds of the method call (of the whole task for timeouts/crashes)",
    "wall_seconds": "wall seconds of the whole task including startup and verification",
    "time_limit": "the method's budget in seconds",
    "status": "ok | error | timeout | crash",
    "error": "null, 'timeout', or message plus traceback tail",
    "kansr_version": "kansr.__version__ of the process that ran the task",
    "host": "host name of the machine that ran the task",
    "finished_at": "UTC ISO time the record was made",
}

_STOP = threading.Event()
_ERROR_TAIL = 2000


@dataclass(frozen=True)
class RunConfig:
    """Budgets and data sizes shared by all tasks of a run."""

    time_limit: float = 60.0
    n_rows: int = 100_000
    train_rows: int = 10_000
    slack: float = 1.5
    overhead: float = 60.0
    verify_timeout: float = 10.0
    threads_per_task: int = 1

    @property
    def hard_limit(self) -> float:
        """Seconds after which a task's subprocess is killed."""
        return self.time_limit * self.slack + self.overhead


@dataclass(frozen=True)
class Task:
    """One (equation, method, seed, noise) combination."""

    equation: Equation
    method: str
    seed: int
    noise: float
    method_ref: str = ""

    @property
    def key(self) -> str:
        """Identity used for resume."""
        return task_key(self.equation.id, self.method, self.seed, self.noise)


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


def task_key(equation_id: str, method: str, seed: int, noise: float) -> str:
    """``equation|method|seed|noise`` with noise normalised (``0`` and ``0.0`` agree)."""
    return f"{equation_id}|{method}|{int(seed)}|{float(noise)!r}"


def plan_tasks(equations: Iterable[Equation], methods: Sequence[str], seeds: Sequence[int],
               noises: Sequence[float]) -> list[Task]:
    """All combinations, ordered seed, noise, equation, method (early seeds finish first)."""
    refs = {m: method_reference(m) for m in methods}
    equations = list(equations)
    return [Task(eq, m, int(s), float(g), refs[m])
            for s in seeds for g in noises for eq in equations for m in methods]


# ----------------------------------------------------------------------------- one task


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    try:
        from kansr import __version__
    except Exception:  # noqa: BLE001
        return "unknown"
    return str(__version__)


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


def base_record(task: Task, config: RunConfig) -> dict:
    """Record fields known before the task runs; the rest are null/False."""
    record: dict[str, object] = {name: None for name in RECORD_FIELDS}
    record.update(
        key=task.key, equation=task.equation.id, srbench_name=task.equation.srbench_name,
        method=task.method, seed=task.seed, noise=task.noise,
        true_formula=task.equation.formula, exact=False, accuracy=False,
        time_limit=config.time_limit, kansr_version=_version(), host=socket.gethostname(),
    )
    return record


def r2_score(y: np.ndarray, prediction: np.ndarray) -> float | None:
    """Coefficient of determination; None when predictions are not all finite."""
    prediction = np.broadcast_to(np.asarray(prediction, dtype=float), y.shape)
    if not np.all(np.isfinite(prediction)):
        return None
    total = float(np.sum((y - np.mean(y)) ** 2))
    residual = float(np.sum((y - prediction) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


def complexity(expr: sp.Expr) -> int:
    """Nodes of the expression tree (operators, functions, symbols, numbers)."""
    return sum(1 for _ in sp.preorder_traversal(expr))


def _as_expression(found: object, names: Sequence[str]) -> sp.Expr:
    from kansr.verify import rename_to_plain

    if isinstance(found, str):
        return parse_formula(found, names, strict=False)
    if not isinstance(found, sp.Basic):
        raise TypeError(f"method returned {type(found).__name__}, expected a sympy expression")
    return rename_to_plain(found, names)


def _simplified(expr: sp.Expr, timeout: float) -> sp.Expr:
    from kansr.verify import SimplifyTimeout, run_with_timeout

    try:
        return run_with_timeout(lambda: sp.simplify(expr), timeout)
    except SimplifyTimeout:
        return expr
    except Exception as exc:  # noqa: BLE001
        log.debug("simplify failed: %r", exc)
        return expr


def _error_text(exc: BaseException) -> str:
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}\n{tail[-_ERROR_TAIL:]}"


def execute_task(task: Task, config: RunConfig) -> dict:
    """Run one task in this process and return its record (errors are recorded, not raised)."""
    started = time.perf_counter()
    record = base_record(task, config)
    try:
        _fill_record(record, task, config)
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of the method is data
        record.update(status="error", error=_error_text(exc))
    record["wall_seconds"] = time.perf_counter() - started
    record["finished_at"] = _now()
    return sanitize(record)


def _fill_record(record: dict, task: Task, config: RunConfig) -> None:
    from kansr.verify import check, round_floats

    equation = task.equation
    data = generate_data(equation, task.seed, n_rows=config.n_rows,
                         train_rows=config.train_rows, noise=task.noise)
    record.update(n_train=len(data.y_train), n_test=len(data.y_test))
    method = load_method(task.method_ref or task.method)
    names = list(equation.variables)
    started = time.perf_counter()
    try:
        extra = {}
        if "output_name" in inspect.signature(method).parameters:
            extra["output_name"] = equation.output  # methods that read units need it
        found = method(data.X_train, data.y_train, names, config.time_limit, task.seed, **extra)
    finally:
        record["seconds"] = time.perf_counter() - started
    expr = _as_expression(found, names)
    record["found_raw"] = str(expr)
    simplified = _simplified(expr, config.verify_timeout)
    record.update(found_simplified=str(simplified), complexity=complexity(simplified),
                  found_rounded=str(round_floats(expr)))
    symbols = equation.symbols
    from kansr.verify import evaluate

    record["r2_train"] = r2_score(data.y_train, evaluate(expr, symbols, data.X_train))
    r2_test = r2_score(data.y_test, evaluate(expr, symbols, data.X_test))
    record["r2_test"] = r2_test
    record["accuracy"] = bool(r2_test is not None and r2_test > 0.999)
    if r2_test is not None and r2_test > 0.5:
        verdict = check(expr, equation.expr, symbols, equation.ranges,
                        rng=np.random.default_rng([task.seed, 7919]),
                        timeout=config.verify_timeout)
        record.update(symbolic=verdict.symbolic, numeric=verdict.numeric,
                      exact=verdict.recovered)


def sanitize(record: dict) -> dict:
    """JSON-safe copy: non-finite floats -> None, numpy scalars -> Python."""
    clean: dict[str, object] = {}
    for name, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        clean[name] = value
    return clean


# ------------------------------------------------------------------ isolated subprocess


def _child_env(config: RunConfig) -> dict[str, str]:
    env = dict(os.environ)
    paths = [p for p in sys.path if p and Path(p).exists()]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    threads = str(max(1, config.threads_per_task))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = threads
    return env


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def run_task_isolated(task: Task, config: RunConfig) -> dict:
    """Run ``task`` in a fresh subprocess under the hard limit; always returns a record."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kansr-task-") as tmp:
        task_file, result_file, log_file = (Path(tmp) / n for n in ("task.json", "result.json", "log.txt"))
        task_file.write_text(json.dumps({"task": task_to_dict(task), "config": asdict(config)}))
        command = [sys.executable, "-c", "from kansr.bench.runner import child_main; child_main()",
                   str(task_file), str(result_file), str(os.getpid())]
        with log_file.open("wb") as log_handle:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_handle,
                                       stderr=subprocess.STDOUT, env=_child_env(config),
                                       start_new_session=True)
            outcome = _babysit(process, config.hard_limit)
        if outcome == "ok" and result_file.exists():
            return json.loads(result_file.read_text())
        record = base_record(task, config)
        elapsed = time.perf_counter() - started
        record.update(seconds=elapsed, wall_seconds=elapsed, finished_at=_now())
        if outcome == "timeout":
            record.update(status="timeout", error="timeout")
        elif outcome == "stopped":
            record.update(status="interrupted", error="interrupted")
        else:
            tail = log_file.read_text(errors="replace")[-_ERROR_TAIL:]
            record.update(status="crash", error=f"crashed (exit code {process.returncode})\n{tail}")
        return sanitize(record)


def _babysit(process: subprocess.Popen, hard_limit: float) -> str:
    """Wait for ``process``; kill its group on timeout or stop. Returns ok/timeout/stopped/crash."""
    deadline = time.monotonic() + hard_limit
    while True:
        try:
            code = process.wait(timeout=0.2)
            return "ok" if code == 0 else "crash"
        except subprocess.TimeoutExpired:
            pass
        if _STOP.is_set():
            _kill_group(process)
            return "stopped"
        if time.monotonic() >= deadline:
            _kill_group(process)
            return "timeout"


def task_to_dict(task: Task) -> dict:
    """Plain-data form of a task."""
    return {"equation": task.equation.to_dict(), "method": task.method, "seed": task.seed,
            "noise": task.noise, "method_ref": task.method_ref}


def task_from_dict(data: dict) -> Task:
    """Inverse of :func:`task_to_dict`."""
    return Task(Equation.from_dict(data["equation"]), data["method"], int(data["seed"]),
                float(data["noise"]), data.get("method_ref", ""))


def _watchdog(parent_pid: int, limit: float) -> None:
    """Exit this (child) process when its parent dies or it outlives ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(1.0)
    os._exit(4)


def child_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the task subprocess: ``TASK_JSON RESULT_JSON PARENT_PID``."""
    args = list(sys.argv[1:] if argv is None else argv)
    task_path, result_path, parent_pid = Path(args[0]), Path(args[1]), int(args[2])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    payload = json.loads(task_path.read_text())
    config = RunConfig(**payload["config"])
    threading.Thread(target=_watchdog, args=(parent_pid, config.hard_limit + 30),
                     daemon=True).start()
    record = execute_task(task_from_dict(payload["task"]), config)
    partial = result_path.with_suffix(".part")
    partial.write_text(json.dumps(record, allow_nan=False))
    partial.replace(result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for threads a method may have left behind


# ------------------------------------------------------------------------ results file


def read_results(path: str | Path, *, repair: bool = False) -> list[dict]:
    """Records of a JSONL file; a truncated last line is ignored (and cut off if ``repair``).

    Unparsable lines elsewhere are logged and skipped.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict] = []
    offset = 0
    for raw in data.splitlines(keepends=True):
        line = raw.strip()
        complete = raw.endswith(b"\n")
        if line:
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                if complete:
                    log.warning("%s: skipping unreadable line at byte %d", path, offset)
                else:
                    log.warning("%s: dropping truncated last line at byte %d", path, offset)
                    if repair:
                        with path.open("r+b") as handle:
                            handle.truncate(offset)
                    break
        if not complete and line and repair:  # valid JSON but no newline: add one
            with path.open("ab") as handle:
                handle.write(b"\n")
        offset += len(raw)
    return records


class ResultWriter:
    """Append records to a JSONL file, flushed and fsynced one by one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        """Append one record durably."""
        self._handle.write(json.dumps(sanitize(record), allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- driver


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
        "inline": _iter_inline, "process": _iter_process, "dask": _iter_dask}
    if backend not in runners:
        raise ValueError(f"unknown backend {backend!r}; choose from {sorted(runners)}")
    bar = _progress_bar(len(tasks), summary.skipped, enabled=progress)
    _STOP.clear()
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
        _STOP.set()
        summary.interrupted = True
        log.warning("interrupted: %d tasks finished this run; rerun to resume", summary.finished)
    finally:
        _close_quietly(stream)
        if bar is not None:
            bar.close()
    return summary


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
    entry = {"started_at": _now(), "argv": sys.argv, "backend": backend, "tasks": total,
             "pending": pending, "config": asdict(config), "kansr_version": _version(),
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


def _iter_inline(tasks: Sequence[Task], config: RunConfig, **_: object) -> Iterable[dict]:
    for task in tasks:
        yield execute_task(task, config)


def _iter_process(tasks: Sequence[Task], config: RunConfig, *, workers: int,
                  **_: object) -> Iterable[dict]:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kansr-task")
    futures = {pool.submit(run_task_isolated, t, config): t for t in tasks}
    try:
        for future in as_completed(futures):
            yield _result_or_crash(future.result, futures[future], config)
    finally:
        _STOP.set()  # kills running children if we leave early (Ctrl-C, error)
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)


def _iter_dask(tasks: Sequence[Task], config: RunConfig, *, workers: int,
               scheduler: str | None, processes: bool = True, **_: object) -> Iterable[dict]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    futures = {}
    try:
        for task in tasks:
            future = client.submit(run_task_isolated, task, config, pure=False,
                                   key=f"kansr-{task.key}-{time.time_ns()}")
            futures[future] = task
        for future in as_completed(list(futures)):
            yield _result_or_crash(future.result, futures[future], config)
    finally:
        client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()


def _result_or_crash(get: Callable[[], dict], task: Task, config: RunConfig) -> dict:
    """The task's record, or a crash record when the executor itself failed."""
    try:
        return get()
    except Exception as exc:  # noqa: BLE001 - e.g. a Dask worker died
        record = base_record(task, config)
        record.update(status="crash", error=_error_text(exc), finished_at=_now())
        return sanitize(record)
