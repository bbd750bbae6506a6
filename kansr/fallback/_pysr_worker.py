"""Child process running PySR: ``python -m kansr.fallback._pysr_worker DIR``.

Reads ``DIR/data.npz`` (arrays ``X``, ``y``) and ``DIR/options.json``
(``PySRRegressor`` keyword arguments), fits, and writes
``DIR/equations.json``: a list of ``{"sympy": srepr, "complexity", "loss"}``
rows in variables ``x0, x1, ...``. Run with ``DIR`` as working directory so
PySR's own output files stay there.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import sympy

logger = logging.getLogger("kansr.fallback._pysr_worker")


def adapt_options(options: dict[str, Any], accepted: set[str] | None) -> dict[str, Any]:
    """Map ``parallelism="serial"`` to pre-1.0 PySR's ``multithreading/procs``.

    ``accepted`` is the set of keyword names the regressor takes (None: any).
    """
    opts = dict(options)
    if accepted is not None and "parallelism" in opts and "parallelism" not in accepted:
        if opts.pop("parallelism") == "serial":
            opts.update(multithreading=False, procs=0)
    return opts


def _accepted_options(cls: type) -> set[str] | None:
    """Keyword names ``cls`` accepts, or None when it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def run(workdir: Path) -> int:
    """Fit PySR on the data in ``workdir`` and write ``equations.json``."""
    from pysr import PySRRegressor  # imported only in the child process

    data = np.load(workdir / "data.npz")
    options = json.loads((workdir / "options.json").read_text())
    model = PySRRegressor(**adapt_options(options, _accepted_options(PySRRegressor)))
    model.fit(data["X"], data["y"])
    table = model.equations_
    rows = [
        {
            "sympy": sympy.srepr(row["sympy_format"]),
            "complexity": int(row["complexity"]),
            "loss": float(row["loss"]),
        }
        for _, row in table.iterrows()
    ]
    (workdir / "equations.json").write_text(json.dumps(rows))
    logger.info("wrote %d equations", len(rows))
    return 0


def main(argv: list[str]) -> int:
    """Entry point: one argument, the work directory."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m kansr.fallback._pysr_worker WORKDIR\n")
        return 2
    logging.basicConfig(level=logging.INFO)
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
