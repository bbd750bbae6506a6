"""Choosing a fallback engine by name: the one place that knows every engine."""

from __future__ import annotations

import importlib.util
import logging

from .base import DEFAULT_TIME_LIMIT, FallbackEngine
from .operon import OperonEngine
from . import pysr as _pysr  # looked up at call time (tests stub its Julia probe)

logger = logging.getLogger(__name__)


def get_engine(
    spec: str | FallbackEngine | None,
    *,
    random_state: int = 0,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> FallbackEngine | None:
    """Resolve an engine spec: ``"auto"``, ``"pysr"``, ``"operon"``, None or an engine.

    ``"auto"`` picks PySR when a Julia install is found, else Operon when
    pyoperon is importable, else None. ``"pysr"`` raises RuntimeError
    without Julia/PySR; ``"operon"`` raises ImportError without pyoperon.
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        if isinstance(spec, FallbackEngine):
            return spec
        raise TypeError(f"engine spec must be a str, an engine or None, got {spec!r}")
    key = spec.strip().lower()
    if key == "auto":
        if _pysr.julia_available():
            logger.info("fallback engine: PySR (Julia found)")
            return _pysr.PySREngine(random_state=random_state, time_limit=time_limit)
        if importlib.util.find_spec("pyoperon") is not None:
            logger.info("fallback engine: Operon (no Julia found, pyoperon installed)")
            return OperonEngine(random_state=random_state, time_limit=time_limit)
        logger.info("no fallback engine available (no Julia for PySR, no pyoperon)")
        return None
    if key == "pysr":
        if not _pysr.pysr_installed():
            raise RuntimeError(
                "PySR fallback requested but the pysr package is not installed: "
                "pip install kansr[pysr] (it also needs a Julia install, e.g. via juliaup)"
            )
        if not _pysr.julia_available():
            raise RuntimeError(
                "PySR fallback requested but no Julia install was found (checked "
                "PATH, JULIA_BINDIR, PYTHON_JULIACALL_BINDIR, PYTHON_JULIAPKG_EXE and "
                "juliapkg's install); install Julia (e.g. juliaup) or use engine='operon'"
            )
        return _pysr.PySREngine(random_state=random_state, time_limit=time_limit)
    if key == "operon":
        if importlib.util.find_spec("pyoperon") is None:
            raise ImportError(
                "Operon fallback requested but pyoperon is not installed: "
                "pip install kansr[operon]"
            )
        return OperonEngine(random_state=random_state, time_limit=time_limit)
    raise ValueError(f"unknown fallback engine {spec!r}; use 'auto', 'pysr', 'operon' or None")
