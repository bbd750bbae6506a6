"""Noisy data: the noise estimate, the thresholds and selection built on it, and laws
recovered exactly from measurements with 1% noise (SRBench's gamma = 0.01)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from kansr import KANSR
from kansr.compose.front import pareto_front, select_best
from kansr.solver.formulas import formula_front
from kansr.solver.noise import (NOISE_FREE_REL, at_noise_floor, denoise, estimate_noise,
                                noise_floor)
from kansr.verify import symbolic_equivalent


def _noisy(f, lows, highs, gamma, n=5000, seed=0):
    """SRBench's protocol: N(0, gamma * RMS(y)) added to y; returns X, noisy y, clean y, std."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(lows, highs, size=(n, len(lows)))
    y = f(X)
    std = gamma * float(np.sqrt(np.mean(y ** 2)))
    return X, y + rng.normal(0.0, std, n), y, std


@pytest.mark.parametrize("gamma", [0.01, 0.1])
def test_noise_estimate_is_close_to_the_truth(gamma):
    X, y, _, std = _noisy(lambda X: X[:, 0] * np.exp(-X[:, 1]) + X[:, 2] ** 2,
                          [1, 0, 1], [3, 2, 2], gamma)
    assert 0.8 * std < estimate_noise(X, y) < 1.3 * std


def test_noise_free_smooth_data_estimate_far_below_any_benchmark_noise():
    X, y, _, _ = _noisy(lambda X: np.sin(X[:, 0]) * X[:, 1], [0, 1], [3, 2], 0.0)
    assert estimate_noise(X, y) < 1e-3 * np.std(y)


def test_noise_estimate_handles_huge_values_and_tiny_tables():
    X, y, _, std = _noisy(lambda X: X[:, 0] * X[:, 1], [1, 1], [2, 2], 0.01)
    assert 0.8e300 * std < estimate_noise(X, 1e300 * y) < 1.3e300 * std
    assert estimate_noise(X[:5], y[:5]) == 0.0  # too few rows to tell


def test_noise_floor_trusts_the_networks_when_they_beat_the_estimate():
    assert noise_floor(1e-4, 1e-9) == 0.0        # curvature, not noise: noise-free rules
    assert noise_floor(1e-4, 0.9e-4) == 0.9e-4   # both agree: the smaller bound
    assert noise_floor(1e-4, 1e-2) == 1e-4       # a poor network: the local estimate
    assert noise_floor(NOISE_FREE_REL / 2) == 0.0
    assert at_noise_floor(0.8e-4, 1e-4) and not at_noise_floor(2e-4, 1e-4)


def test_denoise_removes_most_of_the_noise():
    X, y, clean, std = _noisy(lambda X: X[:, 0] ** 2 + np.cos(X[:, 1]), [0, 0], [2, 3], 0.1)
    assert np.mean((denoise(X, y) - clean) ** 2) < 0.3 * std ** 2


def test_mdl_selection_prefers_the_law_within_the_noise():
    x = sp.Symbol("x")
    sigma2 = 1e-4
    front = pareto_front([(x, 0.3), (x ** 2, 1.3 * sigma2), (x ** 2 + sp.sin(x) / 10, sigma2),
                          (x ** 2 + sp.sin(x) / 10 + sp.Float(1e-3) * x ** 5, 0.9995 * sigma2)])
    # the 30% worse approximation loses, and so does the overfit formula
    assert select_best(front, "mdl", n_rows=10_000)["sympy"] == x ** 2 + sp.sin(x) / 10
    assert select_best(front, "auto", n_rows=10_000, noisy=True)["sympy"] == \
        x ** 2 + sp.sin(x) / 10
    assert select_best(front, "auto", noisy=False).equals(select_best(front, "best"))
    with pytest.raises(ValueError, match="n_rows"):
        select_best(front, "mdl")


def test_front_prefers_the_snapped_constant_the_noise_cannot_tell_apart():
    x = sp.Symbol("x")
    X, y, _, _ = _noisy(lambda X: np.exp(-X[:, 0] ** 2 / 2), [0], [3], 0.01)
    fitted = np.polyfit(X[:, 0] ** 2, np.log(np.clip(y, 1e-3, None)), 1)[0]
    assert abs(fitted + 0.5) > 1e-5  # the noise moved the free constant
    front = formula_front([sp.exp(sp.Float(fitted) * x ** 2), sp.exp(-x ** 2 / 2)], [x], X, y)
    assert front["sympy"].tolist() == [sp.exp(-x ** 2 / 2)]


def test_a_many_constant_look_alike_within_the_noise_does_not_end_the_search():
    from kansr.solver.core import exact_rule
    from kansr.solver.formulas import MAX_NOISY_EXACT_CONSTANTS, near_exact

    x = sp.Symbol("x")
    X, y, _, std = _noisy(lambda X: 2 * X[:, 0], [1], [3], 0.01)
    floor = 2 * std ** 2 / np.var(y)
    # 2x plus negligible wiggles: as close to the data as the law, with too many constants
    look_alike = sp.Float(2.0) * x + sum(sp.Float(1e-9) * sp.sin(k * x)
                                         for k in range(1, MAX_NOISY_EXACT_CONSTANTS + 1))
    assert near_exact([2 * x], [x], X, y, exact_rule(floor, data_noisy=True))
    assert not near_exact([look_alike], [x], X, y, exact_rule(floor, data_noisy=True))
    # a part split off a network carries the network's error as its floor, not noise: its
    # first close reading ends its search whatever its constants
    assert near_exact([look_alike], [x], X, y, exact_rule(floor, data_noisy=False))
    # at round-off (noise-free data) only the fit counts
    assert near_exact([look_alike], [x], X, sp.lambdify(x, look_alike)(X[:, 0]),
                      exact_rule(0.0))
    assert not near_exact([look_alike], [x], X, y, exact_rule(0.0))


def test_estimator_reports_noise_and_noise_free_data():
    X, y, _, std = _noisy(lambda X: X[:, 0] * X[:, 1], [1, 1], [2, 3], 0.05, n=400)
    model = KANSR(max_time=20).fit(X, y)
    assert model.noisy_ and 0.5 * std < model.noise_ < 2 * std
    clean = X[:, 0] * X[:, 1]
    model = KANSR(max_time=20).fit(X, clean)
    assert not model.noisy_ and model.noise_ < 1e-6 * np.std(clean)


LAWS_AT_ONE_PERCENT = [
    ("coulomb", "q/(4*pi*epsilon*r**2)", ["q", "epsilon", "r"], [1, 1, 1], [5, 5, 5]),
    ("kinetic", "m*v**2/2", ["m", "v"], [1, 1], [5, 5]),
    ("gaussian", "exp(-theta**2/2)/sqrt(2*pi)", ["theta"], [1], [3]),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,law,names,lows,highs", LAWS_AT_ONE_PERCENT,
                         ids=[c[0] for c in LAWS_AT_ONE_PERCENT])
def test_law_found_exactly_from_data_with_one_percent_noise(name, law, names, lows, highs):
    syms = sp.symbols(names)
    truth = sp.sympify(law, locals={n: s for n, s in zip(names, syms)})
    f = sp.lambdify(syms, truth, "numpy")
    X, y, _, std = _noisy(lambda X: f(*X.T), lows, highs, 0.01, n=10_000)
    model = KANSR(max_time=60).fit(X, y, variable_names=names)
    assert model.noisy_ and 0.5 * std < model.noise_ < 2 * std
    assert symbolic_equivalent(model.sympy(), truth, positive=True), model.sympy()


def test_denoise_parameter_hands_the_search_the_smoothed_target(monkeypatch):
    import kansr.estimator as est

    X, y, clean, std = _noisy(lambda X: X[:, 0] ** 2 + X[:, 1], [0, 0], [2, 3], 0.1, n=2000)
    seen = {}
    real_search = est.search

    def spy(X_, y_, *args, **kwargs):
        seen["y"] = y_.copy()
        return real_search(X_, y_, *args, **kwargs)

    monkeypatch.setattr(est, "search", spy)
    KANSR(max_time=5, denoise=True).fit(X, y)
    assert np.mean((seen["y"] - clean) ** 2) < 0.3 * std ** 2  # smoothed, not the raw y
    KANSR(max_time=5).fit(X, y)
    np.testing.assert_array_equal(seen["y"], y)


def test_misfit_looks_like_noise_only_when_it_is_noise():
    # the rational matcher is skipped only where the best option leaves noise: white
    # residuals pass, a look-alike's smooth misfit on noise-free rows does not
    from kansr.solver.formulas import _noise_like

    x = sp.Symbol("x")
    X = np.random.default_rng(0).uniform(1, 3, (2000, 1))
    noisy = 2 * X[:, 0] + np.random.default_rng(1).normal(0, 0.01, 2000)
    assert _noise_like(2 * x, [x], X, noisy)
    steep = 1 / (np.exp(X[:, 0] / 3) - 1)  # noise-free; a line misses it smoothly
    assert not _noise_like(-0.9 * x + 3.4, [x], X, steep)
    assert not _noise_like(2 * x, [x], X, 2 * X[:, 0])  # exact: no misfit to judge


def test_a_formula_at_the_noise_level_ends_the_search_only_where_its_misfit_is_noise():
    # the law a*b on 1 % noise settles at the noise floor; on noise-free rows whose curvature
    # was read as noise, a look-alike off by a smooth sine within that floor does not
    from kansr.solver.core import _settles

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (3000, 2))
    a, b = sp.symbols("a b")
    law = X[:, 0] * X[:, 1]
    noise_rel = 1e-4
    noisy = law + np.sqrt(noise_rel * np.var(law)) * rng.normal(size=3000)
    assert _settles([a * b], [a, b], X, noisy, noise_rel) == pytest.approx(noise_rel)
    wiggle = 0.9 * np.sqrt(noise_rel * np.var(law))
    look_alike = a * b + wiggle * sp.sin(3 * a)
    assert _settles([look_alike], [a, b], X, law, noise_rel) is None


def test_a_noisy_one_variable_law_is_not_left_to_the_first_look_alike_within_the_noise():
    # (1 + r^2)/4 at 5 % relative noise: c - c' cos(a r) with a tiny argument reaches the
    # noise first and used to end the polishing there; the parabola, polished too, snaps to
    # no free constants and the front prefers it
    rng = np.random.default_rng(0)
    r = rng.uniform(0.2, 0.67, 3000)
    y = (1 + r ** 2) / 4 + rng.normal(0.0, 0.004, r.size)
    model = KANSR(random_state=0, max_time=30).fit(r[:, None], y, variable_names=["r"])
    law = (1 + sp.Symbol("r") ** 2) / 4
    assert symbolic_equivalent(model.sympy(), law), model.sympy()


def test_units_on_noisy_data_search_the_rows_where_the_prefactor_divides_the_noise_most():
    # -m q^4 / (8 eps^2 h^2 n^2) at 10 % noise: the prefactor m q^4/(eps^2 h^2) spans 1e-4 to
    # 1e3, so y / prefactor over all rows is mostly noise (its law came out 0)
    names = ["m", "q", "epsilon", "h", "n"]
    units = ["kg", "A*s", "A^2*s^4/(kg*m^3)", "kg*m^2/s", ""]
    law = lambda X: -X[:, 0] * X[:, 1] ** 4 / (8 * X[:, 2] ** 2 * X[:, 3] ** 2 * X[:, 4] ** 2)
    X, y, _, _ = _noisy(law, [1] * 5, [5] * 5, 0.1, n=10_000)
    model = KANSR(random_state=0, max_time=30).fit(X, y, variable_names=names, units=units,
                                                   y_units="kg*m^2/s^2")
    m, q, eps, h, n = sp.symbols(names, positive=True)
    assert symbolic_equivalent(model.sympy(), -m * q**4 / (8 * eps**2 * h**2 * n**2),
                               positive=True), model.sympy()


def test_noise_free_rows_are_all_searched_whatever_the_prefactor():
    from kansr.solver.pipeline import _quiet_rows

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (2000, 2))
    prefactor = X[:, 0] ** 4
    y = prefactor * np.sin(X[:, 1])
    assert len(_quiet_rows(prefactor, X[:, 1:], y, 0)) == 2000
    noisy = y + rng.normal(0.0, 0.1 * np.sqrt(np.mean(y ** 2)), y.size)
    kept = _quiet_rows(prefactor, X[:, 1:], noisy, 0)
    assert 400 <= len(kept) < 2000
    # every fifth of the group's range keeps rows
    assert len(np.unique(np.minimum((X[kept, 1] - 1) // 0.8, 4))) == 5


def test_curvature_that_follows_the_prefactor_is_not_taken_for_noise():
    # y = P cos(g1 + g2 g3) on groups g = x / P: where P is small the groups span more, so
    # the local estimate of the noise-free target (curvature) is larger there, as y's noise
    # divided by P would be; on thinned rows curvature grows and noise does not
    from kansr.solver.pipeline import _quiet_rows

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (4000, 4))
    prefactor, groups = X[:, 0], X[:, 1:] / X[:, :1]
    y = prefactor * np.cos(groups[:, 0] + groups[:, 1] * groups[:, 2])
    assert len(_quiet_rows(prefactor, groups, y, 0)) == 4000
    noisy = y + rng.normal(0.0, 0.01 * np.sqrt(np.mean(y ** 2)), y.size)
    assert len(_quiet_rows(prefactor, groups, noisy, 0)) < 4000
