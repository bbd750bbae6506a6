"""Tests for kansr.structure.transforms: each output transform is undone exactly (on data and on
formulas), applies only where defined, and the probe ranks the transform that makes a law
additive first."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from kansr.structure.transforms import (TRANSFORMS, OutputTransform, applicable_transforms,
                                        probe_transforms)

A, B = sympy.symbols("a b", positive=True)
RNG = np.random.default_rng(0)
X = RNG.uniform(1, 5, size=(800, 2))


def _values(expr, X=X):
    return sympy.lambdify([A, B], expr, "numpy")(X[:, 0], X[:, 1]) * np.ones(len(X))


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("sign", [1, -1])
def test_transform_round_trips_on_data(name, sign):
    t = OutputTransform(name, sign)
    y = sign * RNG.uniform(0.1, 0.95 if name == "arctanh" else 10, 500)
    z = t.forward(y)
    np.testing.assert_allclose(t.inverse_values(z), y, rtol=1e-12)


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("sign", [1, -1])
def test_transform_round_trips_on_formulas_and_matches_the_data(name, sign):
    t = OutputTransform(name, sign)
    law = sign * A * B ** 2 / (1 + A)
    if name == "arctanh":  # defined for |y| < 1 only
        law = sign * A / (A + B ** 2)
    z_expr = t.forward_expr(law)
    # the formula for z evaluates to T(y), and its inverse is the law again
    np.testing.assert_allclose(_values(z_expr), t.forward(_values(law)), rtol=1e-12)
    np.testing.assert_allclose(_values(t.inverse(z_expr)), _values(law), rtol=1e-12)
    assert sympy.simplify(t.inverse(z_expr) - law) == 0


def test_inverse_turns_a_formula_for_log_y_into_the_product_law():
    t = OutputTransform("log")
    assert t.inverse(sympy.log(A) + 2 * sympy.log(B) - sympy.log(2)) == A * B ** 2 / 2
    assert OutputTransform("reciprocal").inverse(1 / A + 1 / B) == 1 / (1 / A + 1 / B)
    assert OutputTransform("sqrt", -1).inverse(A + B) == -(A + B) ** 2


def test_applicable_transforms_follow_the_sign_and_zeros_of_y():
    names = lambda y: [str(t) for t in applicable_transforms(y)]  # noqa: E731
    assert names([1.0, 2.0]) == ["y", "log(y)", "1/y", "y^2", "sqrt(y)"]
    assert names([-1.0, -2.0]) == ["y", "log(-y)", "1/y", "y^2", "sqrt(-y)"]
    assert names([0.0, 2.0]) == ["y", "y^2", "sqrt(y)"]
    assert names([-1.0, 2.0]) == ["y", "1/y"]
    assert names([np.nan, 2.0]) == []
    assert names([0.5, -0.2]) == ["y", "1/y", "atanh(y)"]


def test_forward_refuses_values_outside_its_domain():
    with pytest.raises(ValueError, match="not defined"):
        OutputTransform("log").forward([1.0, -1.0])
    with pytest.raises(ValueError, match="unknown output transform"):
        OutputTransform("cube")


@pytest.mark.parametrize("law, first", [
    (A * B ** 2 / 3, "log(y)"),          # product law: additive after log
    (-A / B, "log(-y)"),                 # negative product law
    (A + B ** 2, "y"),                   # already additive
    (1 / (1 / A + 1 / B), "1/y"),        # harmonic sum
    (sympy.sqrt(A ** 2 + B ** 2), "y^2"),  # Euclidean norm
    ((A + sympy.log(B)) ** 2, "sqrt(y)"),
])
def test_probe_ranks_first_the_transform_that_makes_the_law_additive(law, first):
    ranked = probe_transforms(X, _values(law))
    assert str(ranked[0].transform) == first
    assert ranked[0].score < 1e-8 < ranked[1].score
    assert [r.score for r in ranked] == sorted(r.score for r in ranked)


def test_relativistic_addition_is_additive_after_atanh_and_undone_without_tanh():
    u, v = sympy.symbols("u v", positive=True)
    X01 = RNG.uniform(0.05, 0.9, size=(800, 2))
    y = (X01[:, 0] + X01[:, 1]) / (1 + X01[:, 0] * X01[:, 1])
    ranked = probe_transforms(X01, y)
    assert str(ranked[0].transform) == "atanh(y)"
    # the formula for z, a sum of rapidities, comes back as the law itself
    law = OutputTransform("arctanh").inverse(sympy.atanh(u) + sympy.atanh(v))
    assert not law.has(sympy.tanh) and sympy.simplify(law - (u + v) / (1 + u * v)) == 0


def test_probe_subsamples_large_data_and_checks_shapes():
    Xbig = RNG.uniform(1, 5, size=(5000, 2))
    ranked = probe_transforms(Xbig, Xbig[:, 0] * Xbig[:, 1], rng=np.random.default_rng(1))
    assert str(ranked[0].transform) == "log(y)"
    with pytest.raises(ValueError, match="X must be"):
        probe_transforms(Xbig, Xbig[:10, 0])


# --------------------------------------------------------------- the search uses them
def test_search_skips_transforms_when_y_is_already_additive(monkeypatch):
    """No transform makes a + b^2 ten times more additive: no sub-problem is solved."""
    from kansr.solver import core

    def no_solve(*args, **kwargs):
        raise AssertionError("a transformed sub-problem was solved")

    monkeypatch.setattr(core, "solve", no_solve)
    problem = core.Problem(X, X[:, 0] + X[:, 1] ** 2, [A, B])
    assert core._transformed(problem, None, None, 0, 0) == ([], None)


@pytest.mark.slow
def test_reciprocal_sum_is_found_exactly_through_the_reciprocal_transform():
    # 1/y = 1/a + b^2/2 (no pair symmetry in the data: the harmonic sum 1/(1/a + 1/b) is
    # homogeneous, and the data's pairs take it first)
    from kansr import KANSR

    y = 1 / (1 / X[:, 0] + X[:, 1] ** 2 / 2)
    model = KANSR(max_time=60).fit(X, y, variable_names=["a", "b"])
    a, b = sympy.symbols("a b")
    assert model.transform_ == "1/y"
    assert sympy.simplify(model.sympy() - 1 / (1 / a + b ** 2 / 2)) == 0, model.sympy()


def test_harmonic_sum_is_found_exactly():
    from kansr import KANSR

    model = KANSR(max_time=60).fit(X, 1 / (1 / X[:, 0] + 1 / X[:, 1]), variable_names=["a", "b"])
    a, b = sympy.symbols("a b")
    assert sympy.simplify(model.sympy() - a * b / (a + b)) == 0, model.sympy()


@pytest.mark.parametrize("name", ["square", "reciprocal", "sqrt"])
def test_a_known_error_floor_is_carried_through_the_transform(name):
    from kansr.solver.core import transformed_floor

    rng = np.random.default_rng(0)
    y = rng.uniform(1, 3, 20000)
    error = 1e-3 * y.std() * rng.standard_normal(len(y))  # a floor of 1e-6 of var(y)
    t = OutputTransform(name)
    z, z_err = t.forward(y), t.forward(y + error)
    measured = float(np.mean((z_err - z) ** 2) / np.var(z))
    carried = transformed_floor(t, y, z, 1e-6)
    assert carried == pytest.approx(measured, rel=0.05)
    assert transformed_floor(t, y, z, 0.0) == 0.0
