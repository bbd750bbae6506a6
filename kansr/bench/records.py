"""Result records of the benchmark: the schema, scoring, and the JSONL results file.

Records are appended to ``OUT/results.jsonl`` (flushed and fsynced) as soon as each task
finishes. On start, existing lines are read (a truncated last line, e.g. after ``kill -9``, is
cut off) and their keys are never run again, whatever their status.

Record schema (one JSON object per line): see :data:`RECORD_FIELDS`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import socket
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

if TYPE_CHECKING:
    from kansr.bench.tasks import RunConfig, Task

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"

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

#: Characters of a traceback kept in a record's ``error``.
ERROR_TAIL = 2000


def utc_now() -> str:
    """The current UTC time, ISO format to the second (a record's ``finished_at``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def kansr_version() -> str:
    """``kansr.__version__`` of this process, or "unknown"."""
    try:
        from kansr import __version__
    except Exception:  # noqa: BLE001
        return "unknown"
    return str(__version__)


def base_record(task: Task, config: RunConfig) -> dict:
    """Record fields known before the task runs; the rest are null/False."""
    record: dict[str, object] = {name: None for name in RECORD_FIELDS}
    record.update(
        key=task.key, equation=task.equation.id, srbench_name=task.equation.srbench_name,
        method=task.method, seed=task.seed, noise=task.noise,
        true_formula=task.equation.formula, exact=False, accuracy=False,
        time_limit=config.time_limit, kansr_version=kansr_version(), host=socket.gethostname(),
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


def error_text(exc: BaseException) -> str:
    """A record's ``error``: the exception and the last `ERROR_TAIL` characters of its traceback."""
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc}\n{tail[-ERROR_TAIL:]}"


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


# ------------------------------------------------------------------------- results file


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
