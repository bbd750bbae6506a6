"""Tests for kansr.structure.separability and .decompose: each separability and symmetry test
passes on a law with that structure and fails on one without it, both on the exact formula and
on a KAN trained on 1,000 rows of it (queried through `network_oracle`); the sub-problems and
the recombination rebuild the law exactly."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import sympy
import torch

from kansr.kan import KAN, fit
from kansr.structure.decompose import (affine_parts, decompose, disjoint_pairs, pairs_part,
                                      recombine, shear_part, split_parts, symmetry_part)
from kansr.structure.oracle import network_oracle
from kansr.structure.separability import (SeparabilityResult, Support, affine_tests,
                                          all_splits, candidate_splits, interaction_matrix,
                                          offset_constant, pair_moves, relevance_tests,
                                          separability_tests, shear_tests, split_tests,
                                          symmetry_tests)




# name: (law, lo, hi, KAN width)
LAWS = {
    "sum_of_product_and_sin": (lambda X: X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]),
                               [-1, -1, -1], [1, 1, 1], [3, (2, 1), 1]),
    "product_with_exp": (lambda X: X[:, 0] * np.exp(X[:, 1]), [1, -1], [3, 1], [2, (0, 1), 1]),
    "offset_product": (lambda X: 1 + X[:, 0] * X[:, 1], [-1, -1], [1, 1], [2, (0, 1), 1]),
    "difference_square": (lambda X: (X[:, 0] - X[:, 1]) ** 2 + X[:, 2],
                          [-1, -1, -1], [1, 1, 1], [3, 5, 1]),
    "ratio": (lambda X: X[:, 0] / X[:, 1], [1, 1], [3, 3], [2, 3, 1]),
}


@functools.lru_cache(maxsize=None)
def _trained(name: str):
    """(oracle, tol) of a KAN trained on 1,000 rows of LAWS[name] in scaled units; tol is its
    validation RMSE / std(y), as the estimator would pass it."""
    law, lo, hi, width = LAWS[name]
    lo, hi = np.array(lo, float), np.array(hi, float)
    rng = np.random.default_rng(0)
    X, Xv = (lo + (hi - lo) * rng.random((n, len(lo))) for n in (1000, 500))
    y, yv = law(X), law(Xv)
    xc, xs, yc, ys = (hi + lo) / 2, (hi - lo) / 2, y.mean(), y.std()
    torch.set_num_threads(1)
    model = KAN(width, grid=5, seed=0, dtype="float64")
    fit(model, torch.tensor((X - xc) / xs), torch.tensor((y[:, None] - yc) / ys), steps=60,
        progress=False)
    oracle = network_oracle(model, xc, xs, yc, ys)
    tol = float(np.sqrt(np.mean((oracle(Xv) - yv) ** 2)) / yv.std())
    assert tol < 0.02, f"the KAN for {name} did not fit (relative RMSE {tol:.3g})"
    return oracle, tol


def _oracle(name: str, source: str):
    law, lo, hi, _ = LAWS[name]
    oracle, tol = (law, 0.0) if source == "formula" else _trained(name)
    return oracle, np.array(lo, float), np.array(hi, float), tol


def _find(results, test, split=None, pair=None) -> SeparabilityResult:
    for r in results:
        # ratio pairs come oriented (smaller over larger magnitude): either order matches
        same_pair = r.pair == pair or (test in ("ratio", "homogeneous") and pair is not None
                                       and r.pair == pair[::-1])
        if r.test == test and r.split == split and same_pair:
            return r
    raise AssertionError(f"no {test} result for {split or pair}")


SOURCES = ["formula", "network"]


# ------------------------------------------------------------------------- split tests
@pytest.mark.parametrize("source", SOURCES)
def test_additive_split_found_for_product_plus_sin_and_only_for_that_split(source):
    oracle, lo, hi, tol = _oracle("sum_of_product_and_sin", source)
    res = split_tests(oracle, lo, hi, tol, np.random.default_rng(1))
    assert _find(res, "additive", ((0, 1), (2,))).passed
    assert not _find(res, "additive", ((0,), (1, 2))).passed
    assert not _find(res, "additive", ((0, 2), (1,))).passed
    assert not any(r.passed for r in res if r.test != "additive")
    # and f depends on x0, x1 only through x0 * x1
    sym = symmetry_tests(oracle, lo, hi, tol, np.random.default_rng(1), pairs=[(0, 1), (1, 2)])
    assert {(r.test, r.pair) for r in sym if r.passed} == {("product", (0, 1))}
    # the symmetry ranks first: its part is the data itself, one variable fewer
    ranked = [r for r in separability_tests(oracle, lo, hi, tol, np.random.default_rng(2))
              if r.passed]
    assert [(r.test, r.pair or r.split) for r in ranked[:2]] == [("product", (0, 1)),
                                                                ("additive", ((0, 1), (2,)))]
    # last, the lines: f is affine in x0 and in x1 (not in x2)
    assert sorted((r.test, r.variable) for r in ranked[2:]) == [("affine", 0), ("affine", 1)]


@pytest.mark.parametrize("source", SOURCES)
def test_multiplicative_split_found_for_x0_exp_x1_not_additive(source):
    oracle, lo, hi, tol = _oracle("product_with_exp", source)
    res = split_tests(oracle, lo, hi, tol, np.random.default_rng(1))
    assert _find(res, "multiplicative", ((0,), (1,))).passed
    assert not _find(res, "additive", ((0,), (1,))).passed
    offset = _find(res, "offset_product", ((0,), (1,)))
    assert offset.passed and abs(offset.constant) < 0.05  # a product is an offset-product, c=0
    assert separability_tests(oracle, lo, hi, tol, np.random.default_rng(2))[0].test \
        == "multiplicative"


@pytest.mark.parametrize("source", SOURCES)
def test_offset_product_finds_the_offset_of_one_plus_x0_x1(source):
    oracle, lo, hi, tol = _oracle("offset_product", source)
    res = split_tests(oracle, lo, hi, tol, np.random.default_rng(1))
    offset = _find(res, "offset_product", ((0,), (1,)))
    assert offset.passed and offset.constant == pytest.approx(1.0, abs=0.05)
    assert not _find(res, "multiplicative", ((0,), (1,))).passed
    assert not _find(res, "additive", ((0,), (1,))).passed


@pytest.mark.parametrize("source", SOURCES)
def test_offset_product_fails_on_a_sum_of_two_products(source):
    oracle, lo, hi, tol = _oracle("sum_of_product_and_sin", source)
    res = split_tests(oracle, lo, hi, tol, np.random.default_rng(1))
    assert not any(r.passed for r in res if r.test == "offset_product")


def test_offset_constant_recovers_c_from_a_rank_one_grid():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=12), rng.normal(size=9)
    c, residual = offset_constant(-2.5 + np.outer(u, v))
    assert c == pytest.approx(-2.5, abs=1e-9) and residual < 1e-9


# ------------------------------------------------------------------------- symmetries
@pytest.mark.parametrize("source", SOURCES)
def test_difference_symmetry_of_squared_difference_not_sum(source):
    oracle, lo, hi, tol = _oracle("difference_square", source)
    res = symmetry_tests(oracle, lo, hi, tol, np.random.default_rng(1))
    assert _find(res, "difference", pair=(0, 1)).passed
    for kind in ("sum", "product", "ratio"):
        assert not _find(res, kind, pair=(0, 1)).passed
    assert not _find(res, "difference", pair=(0, 2)).passed


@pytest.mark.parametrize("source", SOURCES)
def test_ratio_symmetry_of_x0_over_x1(source):
    oracle, lo, hi, tol = _oracle("ratio", source)
    res = symmetry_tests(oracle, lo, hi, tol, np.random.default_rng(1))
    assert _find(res, "ratio", pair=(0, 1)).passed
    for kind in ("difference", "sum", "product"):
        assert not _find(res, kind, pair=(0, 1)).passed
    ranked = separability_tests(oracle, lo, hi, tol, np.random.default_rng(2))
    passed = {(r.test, r.split or r.pair or r.variable) for r in ranked if r.passed}
    # x0/x1 is also a product of factors x0 and 1/x1 (and so an offset-product), and a line
    # in x0 (the network's test may see its error along the line; never a line in x1)
    passed -= {("ratio", (1, 0)), ("affine", 0)}  # alike magnitudes: both orientations
    assert passed == {("ratio", (0, 1)), ("multiplicative", ((0,), (1,))),
                      ("offset_product", ((0,), (1,)))}
    if source == "formula":
        assert ("affine", 0) in {(r.test, r.variable) for r in ranked if r.passed}


def test_product_symmetry_on_a_box_spanning_zero():
    law = lambda X: np.sin(X[:, 0] * X[:, 1])  # noqa: E731
    res = symmetry_tests(law, [-1, -2], [1, 2], 0.0, np.random.default_rng(0))
    assert _find(res, "product", pair=(0, 1)).passed
    assert not _find(res, "ratio", pair=(0, 1)).passed


@pytest.mark.parametrize("kind", ["difference", "sum", "product", "ratio"])
def test_pair_moves_stay_in_the_box_and_keep_the_combination(kind):
    rng = np.random.default_rng(0)
    lo, hi = np.array([-1.0, 0.5, -3.0]), np.array([2.0, 4.0, -0.5])
    X = lo + (hi - lo) * rng.random((500, 3))
    for i, j in ((0, 1), (1, 2), (0, 2)):
        Y = pair_moves(kind, X, i, j, lo, hi, rng)
        assert np.all((Y >= lo) & (Y <= hi))
        keep = {"difference": lambda Z: Z[:, i] - Z[:, j], "sum": lambda Z: Z[:, i] + Z[:, j],
                "product": lambda Z: Z[:, i] * Z[:, j], "ratio": lambda Z: Z[:, i] / Z[:, j]}[kind]
        np.testing.assert_allclose(keep(Y), keep(X), rtol=1e-9, atol=1e-12)
        assert np.mean(np.abs(Y - X).sum(1) > 1e-3) > 0.5  # most points really move


# ------------------------------------------------------------------------- many variables
def test_all_splits_counts_each_split_once():
    splits = all_splits(4)
    assert len(splits) == 2 ** 3 - 1 and len({frozenset(s[0]) for s in splits}) == 7


def test_candidate_splits_find_the_additive_groups_in_ten_variables():
    def law(X):
        return X[:, 0] * X[:, 3] + np.sin(X[:, 1] * X[:, 5] * X[:, 7]) + X[:, 2:].sum(1)

    lo, hi = -np.ones(10), np.ones(10)
    linked = interaction_matrix(law, lo, hi, np.random.default_rng(0)) > 1e-6
    assert linked[0, 3] and linked[1, 5] and not linked[0, 1] and not linked[2, 4]
    splits = candidate_splits(law, lo, hi, 0.0, np.random.default_rng(0))
    assert ((0, 3), (1, 2, 4, 5, 6, 7, 8, 9)) in splits
    assert ((0, 2, 3, 4, 6, 8, 9), (1, 5, 7)) in splits
    res = split_tests(law, lo, hi, 0.0, np.random.default_rng(0))  # d > 8: candidates only
    assert _find(res, "additive", ((0, 3), (1, 2, 4, 5, 6, 7, 8, 9))).passed


# ------------------------------------------------------------------------- sub-problems
X0, X1, X2 = sympy.symbols("x0 x1 x2")


def _close(expr, law, lo, hi):
    fn = sympy.lambdify([X0, X1, X2][:len(lo)], expr, "numpy")
    lo, hi = np.array(lo, float), np.array(hi, float)
    X = lo + (hi - lo) * np.random.default_rng(5).random((200, len(lo)))
    np.testing.assert_allclose(fn(*X.T), law(X), rtol=1e-9, atol=1e-9)


def test_additive_parts_are_slices_and_recombine_exactly():
    law, lo, hi, _ = LAWS["sum_of_product_and_sin"]
    dec = split_parts(law, ((0, 1), (2,)), lo, hi, np.random.default_rng(0), n=300)
    g, h = dec.parts
    assert g.columns == (0, 1) and h.columns == (2,) and g.X.shape == (300, 2)
    r = dec.ref
    np.testing.assert_allclose(g.y, g.X[:, 0] * g.X[:, 1] + np.sin(2 * r[2]))
    np.testing.assert_allclose(h.y, r[0] * r[1] + np.sin(2 * h.X[:, 0]))
    g_expr = X0 * X1 + sympy.sin(2 * r[2])
    h_expr = r[0] * r[1] + sympy.sin(2 * X2)
    _close(recombine(dec, [g_expr, h_expr], [X0, X1, X2]), law, lo, hi)


def test_multiplicative_and_offset_parts_recombine_exactly():
    rng = np.random.default_rng(0)
    law, lo, hi, _ = LAWS["product_with_exp"]
    dec = split_parts(law, ((0,), (1,)), lo, hi, rng, test="multiplicative")
    r = dec.ref
    np.testing.assert_allclose(dec.parts[1].y, r[0] * np.exp(dec.parts[1].X[:, 0]))
    parts = [X0 * sympy.exp(r[1]), r[0] * sympy.exp(X1)]
    _close(recombine(dec, parts, [X0, X1]), law, lo, hi)

    law, lo, hi, _ = LAWS["offset_product"]
    result = _find(split_tests(law, lo, hi, 0.0, rng), "offset_product", ((0,), (1,)))
    dec = decompose(law, result, lo, hi, rng)
    assert dec.constant == pytest.approx(1.0)
    r = dec.ref
    _close(recombine(dec, [1 + X0 * r[1], 1 + r[0] * X1], [X0, X1]), law, lo, hi)


def test_symmetry_part_replaces_the_pair_by_its_combination():
    law, lo, hi, _ = LAWS["difference_square"]
    data = np.random.default_rng(3).uniform(-1, 1, (400, 3))
    dec = symmetry_part(law, (0, 1), "difference", lo, hi, np.random.default_rng(0), X=data)
    (part,) = dec.parts
    assert part.names(["x0", "x1", "x2"]) == ["x2", "difference_x0_x1"]
    np.testing.assert_allclose(part.X, np.column_stack([data[:, 2], data[:, 0] - data[:, 1]]))
    np.testing.assert_allclose(part.y, law(data))
    u, z = sympy.symbols("difference_x0_x1 x2", positive=True)  # other assumptions: matched by name
    _close(recombine(dec, [u ** 2 + z], [X0, X1, X2]), law, lo, hi)
    with pytest.raises(ValueError, match="not among its variables"):
        recombine(dec, [X0 + z], [X0, X1, X2])


def test_symmetry_part_keeps_the_datas_own_values():
    law, lo, hi, _ = LAWS["difference_square"]
    data = np.random.default_rng(3).uniform(-1, 1, (400, 3))
    measured = law(data) + 0.01  # not what the oracle says: the part must keep these
    dec = symmetry_part(law, (0, 1), "difference", lo, hi, np.random.default_rng(0), X=data,
                        y=measured)
    (part,) = dec.parts
    np.testing.assert_array_equal(part.y, measured)
    assert not part.from_oracle
    with pytest.raises(ValueError, match="one value per row"):
        symmetry_part(law, (0, 1), "difference", lo, hi, np.random.default_rng(0), X=data,
                      y=measured[:10])


def test_disjoint_pair_symmetries_merge_into_one_part():
    # a sum of three products: each product pair passes on its own, and the three together
    # leave one part that is a plain sum of three inputs
    law = lambda X: X[:, 0] * X[:, 1] + X[:, 2] * X[:, 3] + X[:, 4] * X[:, 5]  # noqa: E731
    lo, hi = np.ones(6), np.full(6, 5.0)
    ranked = separability_tests(law, lo, hi, 1e-4, np.random.default_rng(0))
    merged = disjoint_pairs([r for r in ranked if r.passed])
    assert sorted((r.test, r.pair) for r in merged) == [
        ("product", (0, 1)), ("product", (2, 3)), ("product", (4, 5))]
    data = np.random.default_rng(1).uniform(1, 5, (300, 6))
    dec = decompose(law, merged, lo, hi, np.random.default_rng(0), X=data, y=law(data))
    (part,) = dec.parts
    names = [f"x{k}" for k in range(6)]
    assert dec.test == "product+product+product"
    np.testing.assert_allclose(part.y, part.X.sum(axis=1))
    syms = sympy.symbols(names)
    whole = recombine(dec, [sum(sympy.Symbol(n) for n in part.names(names))], syms)
    assert sympy.expand(whole - (syms[0] * syms[1] + syms[2] * syms[3] + syms[4] * syms[5])) == 0
    # pairs sharing a variable do not merge, nor do two homogeneous pairs
    with pytest.raises(ValueError, match="share no variable"):
        pairs_part(law, [merged[0], SeparabilityResult("sum", 0, 1, pair=merged[0].pair)],
                   lo, hi, np.random.default_rng(0))
    scaled = [SeparabilityResult("homogeneous", 0, 1, pair=p, degree=1.0) for p in [(0, 1), (2, 3)]]
    assert disjoint_pairs(scaled) == scaled[:1]


def _lorentz_data(n=3000, seed=0):
    """Rows of (u, w) = (v/c, c*t/x) as a Lorentz length transform's dimensionless groups
    give them: the two cannot both be large, so they fill only part of their box."""
    rng = np.random.default_rng(seed)
    v, c, t, x = (rng.uniform(a, b, n) for a, b in [(1, 2), (3, 20), (1, 2), (5, 10)])
    return np.column_stack([v / c, c * t / x])


def _lorentz(X):
    return (1 - X[:, 0] * X[:, 1]) / np.sqrt(1 - X[:, 0] ** 2)


def test_affine_test_finds_the_input_a_law_is_a_line_in():
    # (1 - u w)/sqrt(1 - u^2): a line in w, no split or pair symmetry
    data = _lorentz_data()
    lo, hi = data.min(0), data.max(0)
    support = Support(data)
    ranked = separability_tests(_lorentz, lo, hi, 1e-4, np.random.default_rng(0), X=data,
                                support=support)
    # (the shear, w -> u w, makes it a product: see the shear test below)
    assert [(r.test, r.variable) for r in ranked if r.passed] == [("shear", None),
                                                                   ("affine", 1)]
    # without the data's rows the box is sampled: the same verdicts
    plain = affine_tests(_lorentz, lo, hi, 1e-4, np.random.default_rng(0))
    assert [r.variable for r in plain if r.passed] == [1]
    # a curve in every input is no line: sqrt(x0) exp(x1)
    curve = affine_tests(lambda X: np.sqrt(X[:, 0]) * np.exp(X[:, 1]), [1, 0], [5, 1], 1e-3,
                         np.random.default_rng(0))
    assert not any(r.passed for r in curve)


def test_support_covers_the_datas_region_only():
    data = _lorentz_data()
    support = Support(data)
    assert support.covered(data).all()
    lo, hi = data.min(0), data.max(0)
    assert not support.covered(hi[None])[0]  # v/c and c*t/x both at their largest: no row
    with pytest.raises(ValueError, match="at least 3 rows"):
        Support(data[:2])


def test_affine_parts_are_intercept_and_slope_and_recombine_exactly():
    data = _lorentz_data()
    lo, hi = data.min(0), data.max(0)
    # a spike (a spline stretch no row pinned down) bends the lines through it: those rows
    # are left out, so it cannot reach the parts
    w3 = lo[1] + 3 * (hi[1] - lo[1]) / 7  # one of the values the lines go through

    def spiky(X):
        return _lorentz(X) + 50.0 * ((np.abs(X[:, 0] - 0.1) < 0.01) & (np.abs(X[:, 1] - w3) < 0.1))

    dec = affine_parts(spiky, 1, lo, hi, np.random.default_rng(0), X=data[:1000],
                       support=Support(data))
    g, h = dec.parts
    assert dec.affine == (1, 0.0)  # 0 is within reach of w's range: the law's own intercept
    assert g.columns == h.columns == (0,) and 500 < len(g.y) < 1000
    u = g.X[:, 0]
    np.testing.assert_allclose(g.y, 1 / np.sqrt(1 - u ** 2), rtol=1e-9)
    np.testing.assert_allclose(h.y, -u / np.sqrt(1 - u ** 2), rtol=1e-9)
    assert h.error_gain < 1 < g.error_gain  # the slope divides by the span, the intercept extrapolates
    U, W = sympy.symbols("u w")
    whole = recombine(dec, [1 / sympy.sqrt(1 - U ** 2), -U / sympy.sqrt(1 - U ** 2)], [U, W])
    assert sympy.simplify(whole - (1 - U * W) / sympy.sqrt(1 - U ** 2)) == 0
    # far from 0 the intercept is taken at the range's centre: f = g + (w - a) h
    far = lambda X: X[:, 0] + X[:, 0] ** 2 * X[:, 1]  # noqa: E731
    dec = affine_parts(far, 1, [1, 100], [2, 101], np.random.default_rng(0), n=50)
    assert dec.affine == (1, 100.5)
    whole = recombine(dec, [U + 100.5 * U ** 2, U ** 2], [U, W])
    assert sympy.simplify(whole - (U + U ** 2 * W)) == 0
    with pytest.raises(ValueError, match="input that varies"):
        affine_parts(far, 1, [1, 100], [2, 100], np.random.default_rng(0))


def test_shear_finds_the_power_that_makes_a_law_separate():
    # (1 - u w)/sqrt(1 - u^2) = g(u) h(u w): no split in (u, w), a product in (u, u w)
    data = _lorentz_data()
    support = Support(data)
    found = shear_tests(_lorentz, data, 1e-4, np.random.default_rng(0), support=support)
    passed = [(r.pair, r.degree) for r in found if r.passed]
    assert passed == [((0, 1), 1.0)]
    # an additive law in (u, w / u^2) too, and with the inverse power
    additive = shear_tests(lambda X: np.sin(X[:, 0]) + np.exp(-X[:, 1] / X[:, 0] ** 2), data,
                           1e-4, np.random.default_rng(0), support=support)
    assert [(r.pair, r.degree) for r in additive if r.passed] == [((0, 1), -2.0)]
    # a law that already separates needs no shear; one that separates under none gets none
    assert shear_tests(lambda X: X[:, 0] * np.exp(X[:, 1]), data, 1e-4,
                       np.random.default_rng(0), support=support) == []
    none = shear_tests(lambda X: np.sin(3 * X[:, 0] + X[:, 1]), data, 1e-4,
                       np.random.default_rng(0), support=support)
    assert none and not any(r.passed for r in none)


def test_shear_is_found_on_a_network_trained_on_the_data():
    data = _lorentz_data()
    y = _lorentz(data)
    logs = np.log(data)  # the network reads the positive, wide-ranging groups as logs
    lo, hi = logs.min(0), logs.max(0)
    xc, xs, yc, ys = (hi + lo) / 2, (hi - lo) / 2, y.mean(), y.std()
    torch.set_num_threads(1)
    # the solver's mixed shape (a sum node and a product node)
    model = KAN([2, (2, 1), 1], grid=10, seed=0, dtype="float64")
    fit(model, torch.tensor((logs[:2500] - xc) / xs), torch.tensor((y[:2500, None] - yc) / ys),
        steps=200, progress=False)
    in_logs = network_oracle(model, xc, xs, yc, ys)
    oracle = lambda X: in_logs(np.log(X))  # noqa: E731
    tol = float(np.sqrt(np.mean((oracle(data[2500:]) - y[2500:]) ** 2)) / y.std())
    assert tol < 0.02
    found = shear_tests(oracle, data, tol, np.random.default_rng(0), support=Support(data))
    assert [(r.pair, r.degree) for r in found if r.passed] == [((0, 1), 1.0)]


def test_shear_part_is_the_data_in_new_coordinates_and_recombines_exactly():
    data = _lorentz_data(500)
    y = _lorentz(data)
    dec = decompose(_lorentz, SeparabilityResult("shear", 0.0, 1.0, pair=(0, 1), degree=1.0),
                    data.min(0), data.max(0), np.random.default_rng(0), X=data, y=y)
    (part,) = dec.parts
    assert not part.from_oracle and part.names(["u", "w"]) == ["u", "w_u_pow_1"]
    np.testing.assert_allclose(part.X[:, 1], data[:, 0] * data[:, 1])
    np.testing.assert_array_equal(part.y, y)
    U, W, P = sympy.symbols("u w w_u_pow_1", positive=True)
    whole = recombine(dec, [(1 - P) / sympy.sqrt(1 - U ** 2)], [U, W])
    assert sympy.simplify(whole - (1 - U * W) / sympy.sqrt(1 - U ** 2)) == 0
    with pytest.raises(ValueError, match="data's rows"):
        decompose(_lorentz, SeparabilityResult("shear", 0.0, 1.0, pair=(0, 1), degree=1.0),
                  data.min(0), data.max(0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="column 0 > 0"):
        shear_part(SeparabilityResult("shear", 0.0, 1.0, pair=(0, 1), degree=1.0), -data, y)


def test_a_homogeneous_pair_merges_with_a_ratio():
    # a weighted mean (m1 r1 + m2 r2)/(m1 + m2): m2/m1 is a ratio symmetry and (r1, r2) a
    # homogeneous pair of degree 1, so f = r2 F(r1/r2, m2/m1) in one step
    law = lambda X: (X[:, 0] * X[:, 2] + X[:, 1] * X[:, 3]) / (X[:, 0] + X[:, 1])  # noqa: E731
    lo, hi = np.ones(4), np.full(4, 5.0)
    ranked = separability_tests(law, lo, hi, 1e-4, np.random.default_rng(0))
    merged = disjoint_pairs([r for r in ranked if r.passed])
    assert sorted((r.test, tuple(sorted(r.pair))) for r in merged) == [
        ("homogeneous", (2, 3)), ("ratio", (0, 1))]
    data = np.random.default_rng(1).uniform(1, 5, (300, 4))
    dec = decompose(law, merged, lo, hi, np.random.default_rng(0), X=data, y=law(data))
    (part,) = dec.parts
    names = ["m1", "m2", "r1", "r2"]
    m1, m2, r1, r2 = syms = sympy.symbols(names, positive=True)
    u, q = (sympy.Symbol(n) for n in part.names(names))  # r-ratio first, then the m-ratio
    i, j = merged[0].pair if merged[0].test == "homogeneous" else merged[1].pair
    law_sym = (m1 * r1 + m2 * r2) / (m1 + m2)
    q_is_m2_over_m1 = part.names(names)[1] == "ratio_m2_m1"
    # F(u, q) from the law: f / x_j at x_i = u x_j
    part_law = law_sym / syms[j]
    F = part_law.subs(syms[i], u * syms[j])
    F = sympy.simplify(F.subs(m2, q * m1) if q_is_m2_over_m1 else F.subs(m1, q * m2))
    assert not F.free_symbols - {u, q}, F
    np.testing.assert_allclose(part.y, sympy.lambdify([u, q], F)(*part.X.T), rtol=1e-12)
    assert sympy.simplify(recombine(dec, [F], syms) - law_sym) == 0


def test_homogeneous_pair_gives_a_power_times_a_function_of_the_ratio():
    # a normal density in theta with width sigma: f(l*theta, l*sigma) = f / l, so
    # f = sigma^-1 F(theta / sigma), with F a one-variable Gaussian
    law = lambda X: np.exp(-(X[:, 1] / X[:, 0]) ** 2 / 2) / (np.sqrt(2 * np.pi) * X[:, 0])
    lo, hi = np.array([1.0, 1.0]), np.array([3.0, 3.0])
    ranked = separability_tests(law, lo, hi, 1e-4, np.random.default_rng(0))
    # alike magnitudes: both orientations are offered, the only structures that hold
    assert {(r.test, r.pair, r.degree) for r in ranked if r.passed} == {
        ("homogeneous", (1, 0), -1.0), ("homogeneous", (0, 1), -1.0)}
    best = next(r for r in ranked if r.test == "homogeneous" and r.pair == (1, 0))
    data = np.random.default_rng(1).uniform(1, 3, (300, 2))
    dec = decompose(law, best, lo, hi, np.random.default_rng(0), X=data, y=law(data))
    (part,) = dec.parts
    u = sympy.Symbol(part.names(["sigma", "theta"])[0])
    np.testing.assert_allclose(part.y, np.exp(-part.X[:, 0] ** 2 / 2) / np.sqrt(2 * np.pi))
    sigma, theta = sympy.symbols("sigma theta")
    whole = recombine(dec, [sympy.exp(-u ** 2 / 2) / sympy.sqrt(2 * sympy.pi)], [sigma, theta])
    truth = sympy.exp(-(theta / sigma) ** 2 / 2) / (sympy.sqrt(2 * sympy.pi) * sigma)
    assert sympy.simplify(whole - truth) == 0, whole


def test_relevance_tests_find_the_column_the_law_ignores():
    law = lambda X: 1 / X[:, 1]  # noqa: E731 - x0 plays no part
    lo, hi = np.array([1.0, 1.0]), np.array([5.0, 5.0])
    results = relevance_tests(law, lo, hi, 1e-6, np.random.default_rng(0))
    assert [(r.variable, r.passed) for r in results] == [(0, True), (1, False)]


def test_network_parts_give_the_law_from_the_network():
    oracle, lo, hi, tol = _oracle("product_with_exp", "network")
    result = separability_tests(oracle, lo, hi, tol, np.random.default_rng(0))[0]
    dec = decompose(oracle, result, lo, hi, np.random.default_rng(0))
    g, h = dec.parts  # g is linear in x0, h exponential in x1, each up to the network's error
    r = dec.ref
    np.testing.assert_allclose(g.y, g.X[:, 0] * np.exp(r[1]), atol=0.1)
    np.testing.assert_allclose(h.y, r[0] * np.exp(h.X[:, 0]), atol=0.1)


def test_split_tests_query_an_oracle_where_the_data_are():
    # x0 * (x1 + x2) on rows where x2 stays near x1 (x0 independent of both): an oracle
    # right there and wild off the band (a network between samples) passes the split
    # {x0} | {x1, x2} queried at the data's rows, and fails it on the box
    rng = np.random.default_rng(0)
    x1 = rng.uniform(1, 3, 2000)
    X = np.column_stack([rng.uniform(1, 3, 2000), x1, x1 + rng.uniform(-0.2, 0.2, 2000)])
    law = lambda Z: Z[:, 0] * (Z[:, 1] + Z[:, 2]) + np.where(  # noqa: E731
        np.abs(Z[:, 2] - Z[:, 1]) > 0.3, np.sin(7 * Z[:, 0]), 0.0)
    lo, hi = X.min(axis=0), X.max(axis=0)
    on_data = _find(split_tests(law, lo, hi, 1e-3, np.random.default_rng(1), X=X,
                                support=Support(X)), "multiplicative", ((0,), (1, 2)))
    on_box = _find(split_tests(law, lo, hi, 1e-3, np.random.default_rng(1)),
                   "multiplicative", ((0,), (1, 2)))
    assert on_data.passed and not on_box.passed


def test_pair_symmetries_and_dropped_columns_are_checked_on_the_data():
    from kansr.solver.recursion import ReductionCheck

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (3000, 4))
    y = np.sin(2 * (X[:, 0] - X[:, 1])) * X[:, 2]  # x3 idle
    check = ReductionCheck(X, y)
    pair = lambda kind, i, j: SeparabilityResult(kind, 0.1, 1.0, pair=(i, j))  # noqa: E731
    assert check.passes([], pair("difference", 0, 1))
    for wrong in [pair("sum", 0, 1), pair("ratio", 0, 1), pair("product", 1, 2),
                  pair("difference", 2, 3)]:
        assert not check.passes([], wrong), wrong
    # a pair the network passes but the data contradict is left out of the merged part,
    # whatever its rank
    ranked = [pair("product", 0, 3), pair("difference", 0, 1), pair("ratio", 2, 3)]
    assert disjoint_pairs(ranked, check.passes) == [pair("difference", 0, 1)]
    assert check.keeps([0, 1, 2]) and not check.keeps([0, 1, 3]) and not check.keeps([1, 2, 3])


def test_power_law_factors_are_found_on_the_data():
    from kansr.solver.recursion import power_factors

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (3000, 4))
    y = X[:, 0] ** 2 * np.sin(X[:, 1]) / np.sqrt(X[:, 2]) * np.exp(X[:, 3] / 3)
    assert sorted(power_factors(X, y)) == [(0, 2.0), (2, -0.5)]
    # a factor that is no power (exp) stays; a law that changes sign keeps its power factors
    # (the elasticities of |y|), not the factor that changes sign
    assert power_factors(X, np.exp(X[:, 0]) * X[:, 1]) == [(1, 1.0)]
    assert power_factors(X, X[:, 0] * (X[:, 1] - 2)) == [(0, 1.0)]
    assert power_factors(X, X[:, 2] ** 2 * (1 + 2 * np.cos(X[:, 3]))) == [(2, 2.0)]


def test_a_homogeneous_pair_on_noisy_data_passes_the_data_check():
    # y = exp(-(x0/x1)^2/2)/x1 with 1 % noise: the part y*x1 in x0/x1 carries the noise times
    # x1, which the check carries along (held to the data's relative noise, it failed)
    from kansr.solver.recursion import ReductionCheck

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(-2, 2, 5000), rng.uniform(1, 3, (5000, 2))])
    law = np.exp(-(X[:, 0] / X[:, 1]) ** 2 / 2) / X[:, 1]
    y = law + 0.01 * np.sqrt(np.mean(law ** 2)) * rng.normal(size=5000)
    check = ReductionCheck(X, y)
    right = SeparabilityResult("homogeneous", 0.1, 1.0, pair=(0, 1), degree=-1.0)
    wrong = SeparabilityResult("homogeneous", 0.1, 1.0, pair=(0, 2), degree=-1.0)
    assert check.passes([], right) and not check.passes([], wrong)


def test_pair_symmetries_are_read_from_the_data_without_a_network():
    # the local slopes propose pairs, the data check keeps the true ones: a difference (x3
    # idle), two disjoint pairs at once, none where y is no function of any pair's combination
    from kansr.solver.recursion import ReductionCheck, data_pairs

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (3000, 4))
    found = lambda y, Z=X: {(r.test, frozenset(r.pair))  # noqa: E731
                            for r in data_pairs(Z, y, ReductionCheck(Z, y))}
    assert found(np.sin(2 * (X[:, 0] - X[:, 1])) * X[:, 2]) == {("difference", frozenset({0, 1}))}
    assert found(X[:, 0] / X[:, 1] + np.sin(X[:, 2] * X[:, 3])) == {
        ("ratio", frozenset({0, 1})), ("product", frozenset({2, 3}))}
    assert found(X[:, 0] * X[:, 1] + X[:, 1] * X[:, 2] + X[:, 0] * X[:, 2], X[:, :3]) == set()


def test_a_homogeneous_pair_from_the_data_divides_by_the_column_away_from_zero():
    # exp(-(x0/x1)^2/2)/x1 * x2 with x0 crossing zero: degree -1 in (x0, x1), and the part is a
    # function of x0/x1 (the normal density), not of x1/x0, which blows up at x0 = 0
    from kansr.solver.recursion import ReductionCheck, data_pairs

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(-2, 2, 3000), rng.uniform(1, 3, (3000, 2))])
    y = np.exp(-(X[:, 0] / X[:, 1]) ** 2 / 2) / X[:, 1] * X[:, 2]
    [pair] = data_pairs(X, y, ReductionCheck(X, y))
    assert (pair.test, pair.pair, pair.degree) == ("homogeneous", (0, 1), -1.0)


def test_a_homogeneous_pair_from_the_data_is_a_ratio_mostly_below_one():
    # x2 x1^2 / sqrt(1 - (x0/x1)^2), x0 in [1, 2], x1 in [3, 10]: degree 2 in (x0, x1), the
    # part a function of x0/x1 (1/sqrt(1 - u^2)), not of x1/x0 (u^3/sqrt(u^2 - 1) times x0^2)
    from kansr.solver.recursion import ReductionCheck, data_pairs

    rng = np.random.default_rng(0)
    X = rng.uniform([1, 3, 1], [2, 10, 3], (3000, 3))
    y = X[:, 2] * X[:, 1] ** 2 / np.sqrt(1 - (X[:, 0] / X[:, 1]) ** 2)
    pairs = [(r.test, r.pair, r.degree) for r in data_pairs(X, y, ReductionCheck(X, y))]
    assert ("homogeneous", (0, 1), 2.0) in pairs


def test_product_parts_are_sliced_at_a_reference_among_the_datas_rows():
    # x2 * (x0 + x1) on rows where x1 stays near x0; the oracle is right on that band and wild
    # off it (a network between samples): parts sliced at a data row recombine to the law on
    # the data, where a reference drawn from the box would leave the band
    rng = np.random.default_rng(0)
    x0 = rng.uniform(1, 3, 2000)
    X = np.column_stack([x0, x0 + rng.uniform(-0.1, 0.1, 2000), rng.uniform(1, 3, 2000)])
    law = lambda Z: Z[:, 2] * (Z[:, 0] + Z[:, 1]) + np.where(  # noqa: E731
        np.abs(Z[:, 1] - Z[:, 0]) > 0.2, 5 * np.sin(7 * Z[:, 2]), 0.0)
    lo, hi = X.min(axis=0), X.max(axis=0)
    result = SeparabilityResult("multiplicative", 0.0, 1.0, split=((0, 1), (2,)))
    dec = decompose(law, result, lo, hi, np.random.default_rng(0), X=X)
    g, h = dec.parts
    np.testing.assert_allclose(g.y * h.y / dec.f_ref, law(X), rtol=1e-10)


@pytest.mark.parametrize("test", ["multiplicative", "additive"])
def test_a_splits_second_part_comes_from_the_data_once_the_first_is_known(test):
    # g(w) = 1 - w fitted to the oracle's slice as 1.050 - 1.049 w: the data divided by (or
    # less) it are refitted until they depend on the second input alone, and the values
    # then hold h(u) = 1/sqrt(1 - u^2) to round-off, not to the network's error
    from kansr.solver.recursion import _second_part_from_data
    from kansr.structure.decompose import Decomposition, Part

    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.uniform(0.1, 0.9, 2000), rng.uniform(0.1, 0.67, 2000)])
    g = lambda w: 1 - w  # noqa: E731
    h = lambda u: 1 / np.sqrt(1 - u ** 2)  # noqa: E731
    ref = np.array([0.5, 0.4])
    if test == "multiplicative":
        f = lambda X: g(X[:, 0]) * h(X[:, 1])  # noqa: E731
    else:
        f = lambda X: g(X[:, 0]) + h(X[:, 1])  # noqa: E731
    f_ref = float(f(ref[None])[0])
    parts = (Part((0,), rows[:, [0]], f(np.column_stack([rows[:, 0], np.full(2000, 0.4)]))),
             Part((1,), rows[:, [1]], f(np.column_stack([np.full(2000, 0.5), rows[:, 1]]))))
    dec = Decomposition(test, parts, ref=ref, f_ref=f_ref)
    w, u = sympy.symbols("w u")
    slice_g = 1.05 - 1.049 * w if test == "multiplicative" else 1.05 * h(0.4) - 1.049 * w
    found = _second_part_from_data(dec, slice_g, ["w", "u"], f(rows), 1e-5, 0)
    assert found is not None
    refitted, values = found
    whole = recombine(dec, [refitted, u], [w, u])  # u stands for part two's values here
    whole = sympy.lambdify([w, u], whole)(rows[:, 0], values)
    assert np.allclose(whole, f(rows), rtol=1e-10)
    truth = h(rows[:, 1])
    if test == "multiplicative":
        assert np.std(values / truth) < 1e-8 * np.mean(values / truth)
    else:
        assert np.std(values - truth) < 1e-8
    # a first part of the wrong shape leaves values that depend on both inputs: refused
    assert _second_part_from_data(dec, 1.05 - 1.049 * w ** 2, ["w", "u"], f(rows), 1e-5,
                                  0) is None
