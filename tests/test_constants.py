"""Tests for the constants of a formula: kansr.compose.refit, simplify, snap and front (fast, seeded)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import sympy as sp

from kansr.compose.front import expression_complexity, pareto_front, select_best
from kansr.compose.refit import refit_constants, refit_deadline
from kansr.compose.simplify import clean_expression, simplify_safely
from kansr.compose.snap import default_snap_candidates, prune_terms, snap_constants

x, y = sp.symbols("x y")
F = sp.Float


def _data(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2))


def _floats(expr: sp.Expr) -> list[float]:
    return sorted(float(f) for f in expr.atoms(sp.Float))


def _equivalent(a: sp.Expr, b: sp.Expr, seed: int = 1) -> bool:
    pts = np.random.default_rng(seed).uniform(0.2, 1.5, (20, 2))
    fa, fb = sp.lambdify([x, y], a), sp.lambdify([x, y], b)
    return np.allclose(fa(pts[:, 0], pts[:, 1]), fb(pts[:, 0], pts[:, 1]), rtol=1e-9, atol=1e-12)


def test_refit_recovers_perturbed_constants() -> None:
    X = _data()
    true = (1.3, 0.7, 2.1, -0.4)
    Y = true[0] * np.exp(true[1] * np.sin(true[2] * X[:, 0]) + true[3] * X[:, 1] ** 2)
    start = F(1.35) * sp.exp(F(0.68) * sp.sin(F(2.15) * x) + F(-0.38) * y**2)
    fitted, mse = refit_constants(start, [x, y], X, Y)
    assert mse < 1e-20
    assert np.allclose(_floats(fitted), sorted(true), atol=1e-8)
    assert fitted.has(y**2)  # integer exponent untouched


def test_refit_accepts_mapping_and_names() -> None:
    X = _data()
    Y = 2.5 * X[:, 0] + X[:, 1]
    fitted, mse = refit_constants(F(2.0) * x + y, ["x", "y"], {"x": X[:, 0], "y": X[:, 1]}, Y)
    assert mse < 1e-25 and _floats(fitted) == pytest.approx([2.5])


def test_refit_integer_exponents_are_not_parameters() -> None:
    X = _data()
    Y = 3.0 * X[:, 0] ** 2 + 0.5 * X[:, 0] ** 3
    fitted, mse = refit_constants(F(2.0) * x**2 + F(1.0) * x**3, [x, y], X, Y)
    assert mse < 1e-25
    assert fitted.has(x**2) and fitted.has(x**3)
    assert _floats(fitted) == pytest.approx([0.5, 3.0])


def test_refit_float_exponent_is_a_parameter() -> None:
    X = np.abs(_data()) + 0.1
    Y = X[:, 0] ** 1.5
    fitted, mse = refit_constants(x ** F(1.3), [x, y], X, Y)
    assert mse < 1e-20 and _floats(fitted) == pytest.approx([1.5])


def test_refit_handles_non_finite_values() -> None:
    X = _data()
    Y = np.exp(2.0 * X[:, 0])
    # exp(800*x) overflows at the start; the fit must back off, not crash
    fitted, mse = refit_constants(sp.exp(F(800.0) * x), [x, y], X, Y)
    assert mse < 1e-20 and _floats(fitted) == pytest.approx([2.0])
    # log of a negative argument in part of the data: nan residuals are penalised
    Y2 = np.log(X[:, 0] + 2.0)
    fitted2, mse2 = refit_constants(sp.log(x + F(0.5)), [x, y], X, Y2)
    assert np.isfinite(mse2) and mse2 < 1e-20
    assert _floats(fitted2) == pytest.approx([2.0])


def test_refit_rejects_unknown_symbol() -> None:
    z = sp.Symbol("z")
    with pytest.raises(ValueError, match="z"):
        refit_constants(F(1.0) * z, [x, y], _data(), np.zeros(200))


def test_snap_noiseless_simple_values() -> None:
    X = _data()
    Y = np.exp(np.sin(np.pi * X[:, 0]) + 0.5 * X[:, 1] ** 2) + np.sqrt(2) / 2 * X[:, 1]
    start = F(1.0000002) * sp.exp(F(0.99999998) * sp.sin(F(3.1415925) * x) + F(0.49999998) * y**2) + F(
        0.70710677
    ) * y
    snapped = snap_constants(start, [x, y], X, Y)
    expected = sp.exp(sp.sin(sp.pi * x) + y**2 / 2) + sp.sqrt(2) / 2 * y
    assert not snapped.atoms(sp.Float)
    assert sp.simplify(snapped - expected) == 0


def test_snap_keeps_point_nine() -> None:
    X = _data()
    Y = 0.9 * np.sin(X[:, 0]) + X[:, 1]
    snapped = snap_constants(F(0.9000001) * sp.sin(x) + y, [x, y], X, Y)
    coeff = snapped.coeff(sp.sin(x))
    assert coeff != 1
    assert float(coeff) == pytest.approx(0.9, abs=1e-9)  # 9/10 exactly or a refitted 0.9


def test_snap_does_not_cost_accuracy_on_noisy_data() -> None:
    rng = np.random.default_rng(3)
    X = _data(400, seed=3)
    Y = 1.03 * np.sin(X[:, 0]) + 0.4 * X[:, 1] + rng.normal(0.0, 0.01, 400)
    start = F(1.0) * sp.sin(x) + F(0.41) * y
    ref_expr, ref_mse = refit_constants(start, [x, y], X, Y)
    snapped = snap_constants(start, [x, y], X, Y)
    _, mse = refit_constants(snapped, [x, y], X, Y)
    assert mse <= ref_mse * np.exp(2 * 2 / 400) + 1e-12
    assert float(snapped.coeff(sp.sin(x))) == pytest.approx(1.03, abs=0.005)
    assert snapped.coeff(sp.sin(x)) != 1


def test_snap_drops_term_that_data_does_not_need() -> None:
    X = _data()
    Y = np.sin(X[:, 0])
    snapped = snap_constants(F(1.0) * sp.sin(x) + F(1e-9) * y**2, [x, y], X, Y)
    assert snapped == sp.sin(x)


def test_default_candidates_order() -> None:
    cands = default_snap_candidates(0.5000001)
    assert cands[0] == 0 and sp.Rational(1, 2) in cands
    pi_cands = default_snap_candidates(3.1415925)
    assert sp.pi in pi_cands
    assert pi_cands.index(3) < pi_cands.index(sp.pi)  # integers are tried before pi
    assert default_snap_candidates(float("nan")) == [0]


def test_prune_drops_tiny_additive_term() -> None:
    X = _data()
    Y = np.sin(X[:, 0]) + X[:, 1] ** 2
    pruned = prune_terms(F(1.0) * sp.sin(x) + y**2 + F(1e-9) * y + F(-2e-9), [x, y], X, Y)
    assert _equivalent(pruned, sp.sin(x) + y**2)
    assert pruned.coeff(y, 1) == 0 and len(sp.Add.make_args(pruned)) == 2


def test_prune_keeps_needed_terms() -> None:
    X = _data()
    Y = np.sin(X[:, 0]) + 0.01 * X[:, 1]
    pruned = prune_terms(F(1.0) * sp.sin(x) + F(0.01) * y, [x, y], X, Y)
    assert len(sp.Add.make_args(pruned)) == 2


def test_clean_expression_removes_noise() -> None:
    e = F(1.0000003) * sp.exp(F(0.9999999) * sp.sin(x) + y ** F(2.0000001)) - F(2e-7)
    assert clean_expression(e) == sp.exp(sp.sin(x) + y**2)
    assert clean_expression(x ** F(0.5000000001), simplify=False) == sp.sqrt(x)
    kept = clean_expression(F(0.9) * x + F(1e-3), simplify=False)
    assert _floats(kept) == pytest.approx([1e-3, 0.9])


def test_clean_expression_takes_phases_to_their_principal_range() -> None:
    # fits from different starts land on any branch; cos(x - 4 pi) must read (and snap) as
    # cos(x), and each function keeps its own period (tan: pi)
    assert clean_expression(sp.cos(x - F(4 * np.pi)), simplify=False) == sp.cos(x)
    for f, period, phase in [(sp.sin, 2 * np.pi, -4.7168), (sp.cos, 2 * np.pi, 18.8455),
                             (sp.tan, np.pi, 3.5)]:
        out = clean_expression(f(F(2.0) * x + F(phase)), simplify=False)
        (b,) = [v for v in _floats(out) if v != 2.0]
        assert abs(b) <= period / 2 and (b - phase) / period == pytest.approx(
            round((b - phase) / period), abs=1e-12)
        X = _data()
        assert np.allclose(sp.lambdify(x, out)(X[:, 0]),
                           sp.lambdify(x, f(F(2.0) * x + F(phase)))(X[:, 0]))


def test_exponents_snap_to_rationals_only() -> None:
    # 33/(10 pi) = 1.0504 is within reach of the pi-based candidates; a law's exponent is not
    X = np.linspace(1, 5, 200)[:, None]
    odd = 33 / (10 * np.pi)
    out = snap_constants(F(3.0001) * x ** F(1.0503), [x], X, 3 * X[:, 0] ** odd)
    (k,) = [e.exp for e in out.atoms(sp.Pow)]
    assert isinstance(k, sp.Float) and float(k) == pytest.approx(odd, rel=1e-9)
    assert snap_constants(F(3.0001) * x ** F(1.5003), [x], X, 3 * X[:, 0] ** 1.5) \
        == 3 * x ** sp.Rational(3, 2)
    # coefficients keep the pi-based candidates
    assert snap_constants(F(1.5709) * x, [x], X, np.pi / 2 * X[:, 0]) == sp.pi * x / 2


def test_noisy_phases_snap_to_multiples_of_pi_first() -> None:
    # sin(2x + pi/2) at 1 % noise: the rational 11/7 (0.03 % from pi/2) fits as well and used
    # to be tried first; a phase tries multiples of pi first, so the law reads cos(2x)
    rng = np.random.default_rng(0)
    X = np.linspace(-2, 2, 400)[:, None]
    Y = np.sin(2 * X[:, 0] + np.pi / 2) + rng.normal(0.0, 0.01, 400)
    out = snap_constants(sp.sin(F(2.0001) * x + F(1.5712)), [x], X, Y)
    assert sp.simplify(out - sp.cos(2 * x)) == 0, out
    # rational phases still snap where no multiple of pi fits: sin(x + 1) on clean data
    X2 = np.linspace(0, 3, 200)[:, None]
    assert snap_constants(sp.sin(x + F(1.0002)), [x], X2, np.sin(X2[:, 0] + 1)) \
        == sp.sin(x + 1)


def test_a_recombined_formula_refits_its_parts_snapped_constants() -> None:
    # a part snapped on a network's values fixed its phase at 69/(7 pi) where the law has
    # pi: refitted on the rows as a free constant, the whole formula snaps exactly
    from kansr.solver.budget import Budget
    from kansr.solver.formulas import refit_and_polish

    a, t = sp.symbols("a t")
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (2000, 2))
    truth = sp.cos(t) + a * sp.cos(t) ** 2
    yv = sp.lambdify((t, a), truth)(X[:, 0], X[:, 1])
    recombined = (a * (F(0.49989) - F(0.49976) * sp.cos(F(1.99893) * t - 69 / (7 * sp.pi)))
                  + F(0.9993) * sp.cos(F(1.0012) * t - F(12.5707)) - F(0.00074))
    best = refit_and_polish(recombined, [t, a], X, yv, Budget(None))[-1]
    assert sp.simplify(best - truth) == 0, best


def test_simplify_safely_small_and_large() -> None:
    assert simplify_safely(sp.sin(x) ** 2 + sp.cos(x) ** 2) == 1
    big = sp.Add(*[F(0.5 + k) * x**k * sp.exp(F(0.1 * k) * y) / (1 + x) for k in range(60)])
    big = big + sp.Add(*[sp.log(x * y ** (k + 1)) for k in range(20)])
    out = simplify_safely(big, timeout_s=1.0)
    assert isinstance(out, sp.Expr)
    assert _equivalent(out, big)


def test_simplify_safely_stops_its_work_at_the_deadline(monkeypatch) -> None:
    # Past the deadline nothing may keep running: an abandoned sympy thread held the GIL
    # and slowed every later step of a fit for a quarter of an hour.
    import threading
    import time

    from kansr.compose import simplify

    def slow(e):
        time.sleep(30)
        return e

    monkeypatch.setattr(simplify, "_cheap_steps", lambda: [sp.factor_terms, slow])
    threads = threading.active_count()
    e = sp.sin(x) * y + sp.sin(x) * x
    t0 = time.perf_counter()
    out = simplify_safely(e, timeout_s=1.0)
    assert time.perf_counter() - t0 < 5.0
    assert threading.active_count() == threads or not simplify._CAN_FORK
    assert out == sp.factor_terms(e)  # the form found before the deadline is kept


def test_pareto_front_and_select_best() -> None:
    Y = np.linspace(-1.0, 1.0, 50)
    var = float(np.var(Y))
    cands = [
        (x, 1.0),
        (x + 1, 2.0),  # dominated: more complex and worse
        (sp.sin(x) + 1, 0.1),
        (sp.sin(x) + y, 0.5),  # dominated (same complexity as sin(x)+1, worse)
        (sp.sin(x) + 2 * y, 0.09),  # tiny gain for +2 nodes
        (sp.sin(x) * sp.exp(y) + 2 * y, 1e-4),
        (sp.sin(x) * sp.exp(y) + 2 * y + x**3, 0.99e-4),
        (sp.cos(x), float("nan")),
    ]
    front = pareto_front(cands, y=Y)
    assert list(front.columns)[:5] == ["complexity", "loss", "r2", "expression", "sympy"]
    assert list(front["complexity"]) == sorted(front["complexity"])
    assert np.all(np.diff(front["loss"]) < 0)
    kept = set(front["expression"])
    assert str(x + 1) not in kept and str(sp.sin(x) + y) not in kept and str(sp.cos(x)) not in kept
    assert front["r2"].iloc[0] == pytest.approx(1 - 1.0 / var)
    assert isinstance(front["sympy"].iloc[0], sp.Expr)

    best = select_best(front)  # highest score among loss <= 1.5 * min
    assert best["sympy"] == sp.sin(x) * sp.exp(y) + 2 * y
    assert select_best(front, "accuracy")["sympy"] == sp.sin(x) * sp.exp(y) + 2 * y + x**3
    assert select_best(front, "parsimony")["sympy"] == sp.sin(x) * sp.exp(y) + 2 * y
    assert select_best(front, "parsimony", loss_factor=1e4)["sympy"] == sp.sin(x) + 1
    with pytest.raises(ValueError):
        select_best(front, "nope")
    with pytest.raises(ValueError):
        select_best(pd.DataFrame(columns=front.columns))


def test_expression_complexity_counts_nodes() -> None:
    assert expression_complexity(x) == 1
    assert expression_complexity(2 * x) == 3
    assert expression_complexity(sp.sin(x) + 1) == 4


def test_gather_constants_merges_a_factor_hidden_under_a_root():
    from kansr.compose.snap import gather_constants, polish_expression

    x, y = sp.symbols("x y")
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (200, 2))
    target = np.hypot(X[:, 0], X[:, 1])
    expr = 6 * sp.sqrt(sp.Float(1 / 36) * x**2 + sp.Float(1 / 36) * y**2)
    gathered = gather_constants(expr, [x, y], X, target)
    assert sp.simplify(gathered - sp.sqrt(x**2 + y**2)) == 0
    assert polish_expression(expr, [x, y], X, target)[0] == sp.sqrt(x**2 + y**2)


def test_refit_handles_abs_whose_symbolic_derivative_needs_real_symbols():
    x = sp.Symbol("x")  # not declared real: d|p x|/dp would contain re/im Derivatives
    X = np.linspace(-1, 1, 100)[:, None]
    target = np.abs(2 * X[:, 0] - 0.3)
    expr, mse = refit_constants(sp.Float(1.1) * sp.Abs(sp.Float(1.9) * x - sp.Float(0.25)),
                                [x], X, target)
    assert mse < 1e-20


def test_refit_stops_at_its_deadline_keeping_the_start():
    # Past the deadline a refit must not run (a many-constant formula can take minutes on
    # 10,000 rows); outside the block the same refit runs and finds the law.
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 2, (200, 2))
    yv = 3.0 * X[:, 0] * np.exp(X[:, 1])
    start = F(2.5) * x * sp.exp(F(0.9) * y)
    with refit_deadline(time.perf_counter() - 1.0):
        late, late_mse = refit_constants(start, [x, y], X, yv)
    assert late == start
    fitted, mse = refit_constants(start, [x, y], X, yv)
    assert mse < 1e-20 and late_mse > 1e-2


def test_a_redundant_scale_in_a_denominator_merges_and_the_law_snaps():
    # as refitted on Feynman II.11.27: a/(b*x - c) has one scale too many, so none of the
    # three constants sat on a simple value; with one coefficient made 1 the law snaps
    from kansr.compose.snap import polish_expression

    Ef, eps, a, n = sp.symbols("Ef epsilon alpha n")
    law = n * a / (1 - n * a / 3) * eps * Ef
    refitted = 3 * Ef * eps * (-10 - sp.Float(6894788)
                               / (sp.Float(229826.266666667) * a * n - sp.Float(689478.8))) / 10
    X = np.random.default_rng(0).uniform(1, 2, (1000, 4)) * np.array([1, 1, 0.3, 1.0])
    y = sp.lambdify([Ef, eps, a, n], law)(*X.T)
    polished, _ = polish_expression(refitted, [Ef, eps, a, n], X, y)
    assert sp.simplify(polished - law) == 0, polished


def test_an_abs_whose_argument_keeps_its_sign_unfolds_and_the_law_snaps():
    # a fit of 1 + alpha*cos(theta) through an abs primitive: on the data the argument is
    # negative everywhere, so the fold is a sign and the constants around it merge to the law
    from kansr.compose.snap import polish_expression, unfold_abs

    a, t = sp.symbols("alpha theta")
    X = np.random.default_rng(0).uniform(1, 3, (500, 2))
    yv = 1 + X[:, 0] * np.cos(X[:, 1])
    fit = F(3.69523809350207) - F(1.59999999808755) * sp.Abs(
        F(0.625000000747051) * a * sp.cos(t) - F(1.68452381045228))
    polished, _ = polish_expression(fit, [a, t], X, yv)
    assert sp.simplify(polished - (1 + a * sp.cos(t))) == 0, polished
    assert unfold_abs(sp.Abs(a - F(0.5)), [a, t], X, yv) == a - F(0.5)
    # a kink the data show (|alpha - 2|) stays folded; a fold the fit put in a corner
    # (the argument positive on a few rows only) unfolds where the law is smooth
    kink = np.abs(X[:, 0] - 2)
    assert unfold_abs(F(1.0) * sp.Abs(a - F(2.0)), [a, t], X, kink).has(sp.Abs)
    corner = F(3.6) - F(1.5) * sp.Abs(F(0.667) * a * sp.cos(t) - F(0.9))
    assert 0 < (X[:, 0] * np.cos(X[:, 1]) * 0.667 > 0.9).mean() < 0.2  # a corner, not none
    polished, _ = polish_expression(corner, [a, t], X, yv)
    assert sp.simplify(polished - (1 + a * sp.cos(t))) == 0, polished


def test_a_logistic_written_as_tanh_of_a_log_simplifies_to_the_rational_law():
    # a network reading log(m1/m2) (a crowded ratio enters as its log) with a tanh edge
    # writes the weighted mean (m1 r1 + m2 r2)/(m1 + m2) this way
    m1, m2, r1, r2 = sp.symbols("m1 m2 r1 r2", positive=True)
    found = r2 + (r1 - r2) * (sp.tanh(sp.log(m1 / m2) / 2) + 1) / 2
    out = simplify_safely(found, timeout_s=10)
    assert not out.has(sp.tanh, sp.log), out
    assert sp.simplify(out - (m1 * r1 + m2 * r2) / (m1 + m2)) == 0


def test_noisy_constants_snap_to_the_shorter_description() -> None:
    # asin(x) read as pi/2 - acos(x) at 1 % noise: 11/7 (0.03 % from pi/2) fits as well
    # and used to be tried first (all rationals came before any multiple of pi)
    rng = np.random.default_rng(0)
    X = np.linspace(-0.9, 0.9, 400)[:, None]
    Y = np.arcsin(X[:, 0]) + rng.normal(0.0, 0.01, 400)
    out = snap_constants(F(-1.0004) * sp.acos(x) + F(1.5712), [x], X, Y)
    assert not out.atoms(sp.Float), out
    assert sp.simplify((out - sp.asin(x)).rewrite(sp.asin)) == 0, out
    # 4 pi (4 bits) before 88/7 (9.3 bits): a coefficient of a power law
    X2 = np.linspace(1, 5, 400)[:, None]
    Y2 = 4 * np.pi * X2[:, 0] ** 2 * (1 + rng.normal(0.0, 0.01, 400))
    assert snap_constants(F(12.571) * x**2, [x], X2, Y2) == 4 * sp.pi * x**2


def test_an_arcsine_read_as_an_arccosine_plus_half_pi_simplifies_to_the_arcsine() -> None:
    u = sp.Symbol("n") * sp.sin(sp.Symbol("theta"))
    assert simplify_safely(sp.pi / 2 - sp.acos(u)) == sp.asin(u)
    assert simplify_safely(F(1.5) * (sp.acos(u) - sp.pi / 2)) == F(-1.5) * sp.asin(u)
    assert simplify_safely(2 * sp.acos(u) + 1) == 2 * sp.acos(u) + 1  # not shorter: kept


def test_a_cosine_of_a_tiny_argument_becomes_the_power_it_mimics() -> None:
    from kansr.compose.snap import polish_expression, taylor_tiny_arguments

    q, m = sp.symbols("q m")
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (3000, 2))
    law = X[:, 1] * X[:, 0] ** 4 / 8
    look_alike = F(77671.3) * m * (sp.cos(F(0.00179) * q**2) - 1)
    noisy = law * (1 + 0.01 * rng.normal(size=law.size))
    assert polish_expression(look_alike, [q, m], X, noisy)[0] == m * q**4 / 8
    assert polish_expression(look_alike, [q, m], X, law)[0] == m * q**4 / 8
    # a sine the noise-free rows can tell from its argument stays, even at |x| <= 0.1
    x1 = np.linspace(0.0, 0.1, 500)[:, None]
    assert taylor_tiny_arguments(F(2.0) * sp.sin(q), [q], x1, 2 * np.sin(x1[:, 0])) \
        == F(2.0) * sp.sin(q)
