"""Where benchmark tasks run: isolated subprocesses under a hard limit, or a Dask cluster.

Each task runs in a fresh Python subprocess (:func:`run_task_isolated`, entry point
:func:`child_main`). The parent kills the subprocess's whole process group after the hard limit
``time_limit * slack + overhead`` and records ``error = "timeout"``; a crash (segfault, out of
memory, ``os._exit``) becomes a record with ``status = "crash"``. Nothing a method does can stop
the run.

Backends (each an iterator of finished records): ``"dask"`` (:func:`iter_dask`:
``LocalCluster`` with one single-threaded worker process per core, or
``Client(scheduler_address)``), ``"process"`` (:func:`iter_process`: a local thread pool
babysitting subprocesses; no Dask needed) and ``"inline"`` (:func:`iter_inline`: no isolation
or hard limit; for debugging).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from kansr.bench.records import ERROR_TAIL, base_record, error_text, sanitize, utc_now
from kansr.bench.tasks import RunConfig, Task, execute_task, task_from_dict, task_to_dict

log = logging.getLogger(__name__)

#: Set to stop the run: babysitters kill their subprocesses, iterators stop.
STOP = threading.Event()


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
        command = [sys.executable, "-c", "from kansr.bench.backends import child_main; child_main()",
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
        record.update(seconds=elapsed, wall_seconds=elapsed, finished_at=utc_now())
        if outcome == "timeout":
            record.update(status="timeout", error="timeout")
        elif outcome == "stopped":
            record.update(status="interrupted", error="interrupted")
        else:
            tail = log_file.read_text(errors="replace")[-ERROR_TAIL:]
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
        if STOP.is_set():
            _kill_group(process)
            return "stopped"
        if time.monotonic() >= deadline:
            _kill_group(process)
            return "timeout"


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


# ----------------------------------------------------------------------------- backends


def iter_inline(tasks: Sequence[Task], config: RunConfig, **_: object) -> Iterable[dict]:
    """Run the tasks one after another in this process (no isolation, no hard limit)."""
    for task in tasks:
        yield execute_task(task, config)


def iter_process(tasks: Sequence[Task], config: RunConfig, *, workers: int,
                 **_: object) -> Iterable[dict]:
    """Run the tasks in isolated subprocesses, ``workers`` at a time; records as they finish."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kansr-task")
    futures = {pool.submit(run_task_isolated, t, config): t for t in tasks}
    try:
        for future in as_completed(futures):
            yield _result_or_crash(future.result, futures[future], config)
    finally:
        STOP.set()  # kills running children if we leave early (Ctrl-C, error)
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)


def iter_dask(tasks: Sequence[Task], config: RunConfig, *, workers: int,
              scheduler: str | None, processes: bool = True, **_: object) -> Iterable[dict]:
    """Run the tasks in isolated subprocesses on Dask workers; records as they finish."""
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
        record.update(status="crash", error=error_text(exc), finished_at=utc_now())
        return sanitize(record)
