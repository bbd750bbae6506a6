"""Tests of the SRBench-style equivalence checks in kansr.verify."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import sympy as sp

from kansr.verify import (
    SimplifyTimeout,
    check,
    evaluate,
    numeric_equivalent,
    round_floats,
    run_with_timeout,
    symbolic_equivalent,
)

x, y = sp.symbols("x y")
I_, gamma_, beta_ = sp.Symbol("I"), sp.Symbol("gamma"), sp.Symbol("beta")
RANGES_XY = [(1.0, 3.0), (1.0, 3.0)]


def test_round_floats_three_significant_digits() -> None:
    expr = round_floats(3.14159265 * x + 0.00001 * y + 123456.0 + 0.0012345 * x * y)
    assert expr == sp.Rational(157, 50) * x + 123000 + sp.Rational(123, 100000) * x * y


def test_round_floats_keeps_exact_numbers() -> None:
    expr = sp.pi * x / 2
    assert round_floats(expr) == expr


EQUIVALENT = [
    (x * y, y * x),
    ((x + y) ** 2, x**2 + 2 * x * y + y**2),
    (1.0000 * x * y, x * y),
    (3.14159265 * x, sp.pi * x),  # ratio 3.14/pi is a constant
    (3.14159 * x, sp.pi * x),
    (0.9999 * x, x),
    (x + 0.9999 * x**2, x + x**2),  # 0.9999 rounds to 1.00
    (x + y + 2.5, x + y),  # difference is a constant
    (sp.exp(x) * sp.exp(y), sp.exp(x + y)),
    (sp.sqrt(x**2 * y**2), x * y),  # needs positive variables
    (sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi), 0.398942 * sp.exp(-0.5 * x**2)),
]


@pytest.mark.parametrize(("found", "true"), EQUIVALENT)
def test_equivalent_pairs(found: sp.Expr, true: sp.Expr) -> None:
    verdict = check(found, true, [x, y], RANGES_XY)
    assert verdict.symbolic and verdict.numeric and verdict.recovered


DIFFERENT = [
    (sp.sin(x), x),
    (x * y, x + y),
    (sp.exp(x), sp.exp(2 * x)),
    (0.99 * x**2 + x, x**2 + x),
    (x, x * y),
    (sp.Integer(0), x),
    (sp.Float(1.5), x),
]


@pytest.mark.parametrize(("found", "true"), DIFFERENT)
def test_different_pairs(found: sp.Expr, true: sp.Expr) -> None:
    verdict = check(found, true, [x, y], RANGES_XY)
    assert not verdict.symbolic
    assert not verdict.numeric
    assert not verdict.recovered


def test_sympy_name_clashes() -> None:
    true = 2 * I_ / (gamma_ * beta_)
    found = I_ * 2.0 / beta_ / gamma_
    symbols = [I_, gamma_, beta_]
    verdict = check(found, true, symbols, [(1, 5)] * 3)
    assert verdict.recovered
    assert not check(I_ / beta_, true, symbols, [(1, 5)] * 3).recovered
    assert not check(I_ + gamma_, true, symbols, [(1, 5)] * 3).recovered


def test_numeric_catches_wrong_law_and_nonfinite() -> None:
    assert not numeric_equivalent(sp.log(x - 2), x, [x], [(1.0, 3.0)])
    assert numeric_equivalent(2 * x + 1, x, [x], [(1.0, 3.0)], rng=np.random.default_rng(1))


def test_numeric_needs_ranges_or_sampler() -> None:
    with pytest.raises(ValueError, match="ranges or a sampler"):
        numeric_equivalent(x, x, [x])
    sampler = lambda n, rng: rng.uniform(1, 2, size=(n, 1))  # noqa: E731
    assert numeric_equivalent(3 * x, x, [x], sampler=sampler, n=50)


def test_evaluate_handles_awkward_names() -> None:
    lam = sp.Symbol("lambda")
    values = evaluate(I_ * lam + 1, [I_, lam], np.array([[2.0, 3.0], [1.0, 1.0]]))
    assert values.tolist() == [7.0, 2.0]
    assert evaluate(sp.Integer(4), [x], np.ones((3, 1))).tolist() == [4.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="unknown symbols"):
        evaluate(x + y, [x], np.ones((2, 1)))


def test_run_with_timeout_main_thread_and_worker_thread() -> None:
    import time

    with pytest.raises(SimplifyTimeout):
        run_with_timeout(lambda: time.sleep(2), 0.1)
    assert run_with_timeout(lambda: 5, 1.0) == 5
    box: dict[str, object] = {}

    def in_thread() -> None:
        try:
            run_with_timeout(lambda: time.sleep(1), 0.1)
        except SimplifyTimeout as exc:
            box["error"] = exc

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert isinstance(box.get("error"), SimplifyTimeout)


def test_symbolic_never_raises_on_garbage() -> None:
    assert symbolic_equivalent(sp.zoo * x, x) is False
    assert symbolic_equivalent(sp.nan, x) is False


def test_symbolic_check_is_bounded_on_sprawling_formulas() -> None:
    """expand/cancel of a big formula ran for minutes with no bound (the benchmark recorded
    finished answers as timeouts): the cheap rewrites share the timeout, simplify has its
    own, so the whole check takes at most about 4 timeouts."""
    w, z = sp.symbols("w z")
    found = x * (1 + (x + y + z + w + 2) ** 80)  # expanded: ~2 million terms
    start = time.monotonic()
    assert symbolic_equivalent(found, x, timeout=1.0) is False
    assert time.monotonic() - start < 8.0
    # a plain equivalence is still found at once
    assert symbolic_equivalent(x * y / (4 * sp.pi), 0.25 * y * x / sp.pi, timeout=1.0)
