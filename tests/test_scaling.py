"""Slope helpers of the scaling benchmark (benchmarks/scaling/run.py)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling" / "run.py"


@pytest.fixture(scope="module")
def scaling():
    spec = importlib.util.spec_from_file_location("scaling_run", _RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_fit_slope_recovers_minus_four(scaling):
    n = np.array([30, 60, 120, 300, 600, 1500])
    noise = np.exp(np.random.default_rng(0).normal(0, 0.05, len(n)))
    slope, intercept = scaling.fit_slope(n, 7.0 * n**-4.0 * noise)
    assert slope == pytest.approx(-4.0, abs=0.1)
    assert 10**intercept == pytest.approx(7.0, rel=0.5)


def test_fit_slope_exact_line(scaling):
    slope, intercept = scaling.fit_slope([10, 100, 1000], [1e-1, 1e-5, 1e-9])
    assert slope == pytest.approx(-4.0)
    assert intercept == pytest.approx(3.0)


def test_fit_slope_rejects_bad_input(scaling):
    with pytest.raises(ValueError):
        scaling.fit_slope([10], [1.0])
    with pytest.raises(ValueError):
        scaling.fit_slope([10, 20], [1.0, 0.0])


def test_scaling_regime_stops_at_plateau(scaling):
    errs = [1e-1, 1e-2, 1e-3, 1e-4, 9e-5, 2e-4]
    assert scaling.scaling_regime(errs) == 4
    assert scaling.scaling_regime([1.0]) == 1
