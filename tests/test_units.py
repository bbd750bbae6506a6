"""Units and Buckingham-pi reduction (kansr.structure.units)."""

from __future__ import annotations

import csv
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from kansr.bench.feynman import DEFAULT_TABLE, load_equations
from kansr.structure import (
    DEFAULT_UNITS_TABLE,
    Dimension,
    as_dimension,
    buckingham_pi,
    load_units_table,
    parse_unit,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "feynman"


def base(**exps: int) -> Dimension:
    dim = Dimension()
    for name, e in exps.items():
        dim = dim * Dimension.base(name) ** e
    return dim


def test_parse_unit_reads_products_quotients_powers_and_juxtaposition():
    energy = base(kg=1, m=2, s=-2)
    for text in ("kg*m^2/s^2", "kg m**2 s**-2", "kg*m**2*s**(-2)", "J", "N*m", "kg (m/s)^2"):
        assert parse_unit(text) == energy, text
    assert parse_unit("m/s") == base(m=1, s=-1)
    assert parse_unit("1/s") == parse_unit("Hz") == base(s=-1)
    assert parse_unit("kg/m/s") == base(kg=1, m=-1, s=-1)
    assert parse_unit("m^(1/2)").exponents[0] == Fraction(1, 2)
    assert parse_unit("m^0.5") == parse_unit("m^(1/2)")
    assert parse_unit("m^(-3/2)").exponents[0] == Fraction(-3, 2)
    for text in ("", "  ", "1", "rad", "m/m"):
        assert parse_unit(text).dimensionless, text


def test_derived_si_units_expand_to_base_units():
    expected = {
        "N": base(kg=1, m=1, s=-2), "J": base(kg=1, m=2, s=-2), "W": base(kg=1, m=2, s=-3),
        "Pa": base(kg=1, m=-1, s=-2), "C": base(A=1, s=1), "V": base(kg=1, m=2, s=-3, A=-1),
        "A": base(A=1), "Hz": base(s=-1), "K": base(K=1), "ohm": base(kg=1, m=2, s=-3, A=-2),
        "Ohm": base(kg=1, m=2, s=-3, A=-2), "F": base(kg=-1, m=-2, s=4, A=2),
        "T": base(kg=1, s=-2, A=-1), "H": base(kg=1, m=2, s=-2, A=-2), "mol": base(mol=1),
        "cd": base(cd=1),
    }
    for name, dim in expected.items():
        assert parse_unit(name) == dim, name


@pytest.mark.parametrize("text, token", [
    ("kg*foo", "foo"), ("m/sec", "sec"), ("2*m", "2"), ("m^x", "x"), ("m)", ")"), ("m2", "m2"),
])
def test_parse_unit_errors_name_the_bad_token(text, token):
    with pytest.raises(ValueError, match=repr(token).replace("(", r"\(").replace(")", r"\)")):
        parse_unit(text)


def test_as_dimension_reads_dicts_and_vectors_over_the_feynman_bases():
    assert as_dimension({"m": 1, "s": -2}) == base(m=1, s=-2)
    # units.csv column order m, s, kg, K (kelvin), V (volt): a charge is J/V
    assert as_dimension([2, -2, 1, 0, -1]) == parse_unit("C")
    assert as_dimension([0, 0, 0, 1, 0]) == parse_unit("K")
    assert as_dimension((1, 1), bases=("kg", "m")) == base(kg=1, m=1)
    with pytest.raises(ValueError, match="5 base units"):
        as_dimension([1, 2])


def test_units_table_is_read_with_kelvin_renamed_and_matches_the_shared_copy():
    table = load_units_table()
    assert len(table) == 120  # (SOURCES.md says 118; the file lists 120)
    assert table["c"] == {"m": 1, "s": -1, "kg": 0, "K": 0, "V": 0}
    assert as_dimension(table["T"]) == parse_unit("K")
    assert as_dimension(table["q"]) == parse_unit("C")
    assert as_dimension(table["epsilon"]) == parse_unit("F/m")
    if SHARED.exists():
        assert DEFAULT_UNITS_TABLE.read_bytes() == (SHARED / "units.csv").read_bytes()


def test_relativistic_mass_reduces_to_v_over_c_with_prefactor_m0():
    red = buckingham_pi(["m0", "v", "c"], ["kg", "m/s", "m/s"], "kg")
    m0, v, c = red.symbols
    assert red.groups == (v / c,)
    assert red.prefactor == m0
    assert all(s.is_positive for s in red.symbols + red.group_symbols)


def test_like_dimensioned_ratio_puts_the_smaller_scale_variable_on_top():
    names, units = ["m0", "c", "v"], ["kg", "m/s", "m/s"]
    _, c, v = buckingham_pi(names, units, "kg").symbols
    # without scales the later-listed input is the reference (denominator) ...
    assert buckingham_pi(names, units, "kg").groups == (c / v,)
    # ... with scales the larger one is, so the ratio stays below 1 (v < c)
    assert buckingham_pi(names, units, "kg", scales=[3.0, 6.5, 1.5]).groups == (v / c,)


def test_round_trip_through_the_reduced_relativistic_law_recovers_y():
    rng = np.random.default_rng(0)
    X = rng.uniform([1, 1, 3], [5, 2, 10], size=(200, 3))
    y = X[:, 0] / np.sqrt(1 - X[:, 1] ** 2 / X[:, 2] ** 2)
    red = buckingham_pi(["m0", "v", "c"], ["kg", "m/s", "m/s"], "kg")
    X_pi, y_pi = red.transform(X, y)
    assert X_pi.shape == (200, 1)
    reduced = 1 / np.sqrt(1 - X_pi[:, 0] ** 2)
    np.testing.assert_allclose(y_pi, reduced, rtol=1e-12)
    np.testing.assert_allclose(red.inverse_target(X, reduced), y, rtol=1e-12)
    (pi,) = red.group_symbols
    m0, v, c = red.symbols
    law = red.to_original(1 / sp.sqrt(1 - pi**2))
    assert sp.simplify(law - m0 / sp.sqrt(1 - v**2 / c**2)) == 0
    # a formula over a plain Symbol of the same name maps back too
    assert red.to_original(sp.Symbol(pi.name) ** 2) == m0 * v**2 / c**2


def test_coulomb_field_has_no_group_and_a_constant_reduced_target():
    red = buckingham_pi(["q", "epsilon", "r"], ["C", "F/m", "m"], "V/m")
    q, eps, r = red.symbols
    assert red.n_groups == 0 and red.prefactor == q / (eps * r**2)
    X = np.random.default_rng(1).uniform(1, 5, size=(50, 3))
    X_pi, y_pi = red.transform(X, X[:, 0] / (4 * np.pi * X[:, 1] * X[:, 2] ** 2))
    assert X_pi.shape == (50, 0)
    np.testing.assert_allclose(y_pi, 1 / (4 * np.pi), rtol=1e-12)


def test_pendulum_period_scales_as_sqrt_length_over_g():
    red = buckingham_pi(["L", "g", "m", "theta0"], ["m", "m/s^2", "kg", ""], "s")
    L, g, m, theta0 = red.symbols
    assert red.groups == (theta0,) and red.group_symbols == (theta0,)
    assert red.prefactor == sp.sqrt(L / g)
    assert red.to_original(2 * sp.pi) == 2 * sp.pi * sp.sqrt(L / g)
    with pytest.raises(ValueError, match="'L'.*positive"):
        red.prefactor_values(np.array([[-1.0, 9.8, 1.0, 0.1]]))


def test_kinetic_energy_leaves_no_group():
    red = buckingham_pi(["m", "v"], ["kg", "m/s"], "J")
    m, v = red.symbols
    assert red.groups == () and red.prefactor == m * v**2
    X = np.array([[2.0, 3.0], [1.5, 0.5]])
    np.testing.assert_allclose(red.transform(X, X[:, 0] * X[:, 1] ** 2 / 2)[1], 0.5)


def test_dimensionless_inputs_are_their_own_groups_gaussian():
    red = buckingham_pi(["sigma", "theta"], ["", "1"], "")
    sigma, theta = red.symbols
    assert red.groups == (sigma, theta) and red.group_symbols == (sigma, theta)
    assert red.prefactor == 1
    law = sp.exp(-(theta / sigma) ** 2 / 2) / (sp.sqrt(2 * sp.pi) * sigma)
    assert red.to_original(law) == law


def test_gravity_between_points_in_3d_uses_ratios_of_like_quantities():
    names = ["m1", "m2", "G", "x1", "x2", "y1", "y2", "z1", "z2"]
    units = ["kg", "kg", "m^3/(kg*s^2)"] + ["m"] * 6
    red = buckingham_pi(names, units, "N")
    assert red.n_groups == 6
    for g in red.group_exponents:  # every group is a plain ratio a/b of like inputs
        assert sorted(e for e in g if e) == [-1, 1]
    m1, m2, G = red.symbols[:3]
    assert red.prefactor.free_symbols >= {G} and red.prefactor.subs(G, 1).free_symbols & {m1, m2}
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 5, size=(100, 9))
    y = X[:, 2] * X[:, 0] * X[:, 1] / ((X[:, 4] - X[:, 3]) ** 2 + (X[:, 6] - X[:, 5]) ** 2
                                       + (X[:, 8] - X[:, 7]) ** 2)
    X_pi, y_pi = red.transform(X, y)
    # same groups at a rescaled point (lengths x2, masses x3, G x8) -> same reduced target
    scale = np.array([3, 3, 8] + [2] * 6, dtype=float)
    X2_pi, y2_pi = red.transform(X * scale, y * 8 * 9 / 4)
    np.testing.assert_allclose(X2_pi, X_pi, rtol=1e-12)
    np.testing.assert_allclose(y2_pi, y_pi, rtol=1e-12)


def test_inconsistent_units_are_rejected_naming_the_units():
    with pytest.raises(ValueError, match=r"inconsistent units.*'N'.*m \[kg\], v \[m/s\]"):
        buckingham_pi(["m", "v"], ["kg", "m/s"], "N")
    with pytest.raises(ValueError, match="no input carries K"):
        buckingham_pi(["m", "v"], ["kg", "m/s"], "J/K")
    with pytest.raises(ValueError, match="unknown unit 'parsec'"):
        buckingham_pi(["d"], ["parsec"], "m")


def _feynman_outputs() -> dict[str, str]:
    with open(DEFAULT_TABLE, encoding="utf-8-sig", newline="") as fh:
        return {row["Filename"]: row["Output"] for row in csv.DictReader(fh) if row["Filename"]}


def test_every_feynman_equation_reduces_to_a_function_of_its_groups():
    """For each law, y / prefactor is unchanged by every rescaling that fixes the groups."""
    units, outputs = load_units_table(), _feynman_outputs()
    rng = np.random.default_rng(0)
    counts: Counter[int] = Counter()
    broken = []
    for eq in load_equations():
        red = buckingham_pi(eq.variables, [units[v] for v in eq.variables], units[outputs[eq.id]],
                            scales=[math.sqrt(lo * hi) for lo, hi in zip(eq.lows, eq.highs)])
        counts[min(red.n_groups, 3)] += 1
        dims = np.array([[float(e) for e in as_dimension(units[v]).exponents] for v in eq.variables])
        for g in red.group_exponents:
            assert not np.any(np.array(g, dtype=float) @ dims), (eq.id, g)
        law = sp.lambdify(eq.symbols, eq.expr, "numpy")
        X = rng.uniform(eq.lows, eq.highs, size=(40, len(eq.variables)))
        X2 = X * np.exp(rng.uniform(-1, 1, size=(40, dims.shape[1])) @ dims.T)
        np.testing.assert_allclose(red.transform_inputs(X2), red.transform_inputs(X), rtol=1e-9)
        reduced = law(*X.T) / red.prefactor_values(X)
        if not np.allclose(law(*X2.T) / red.prefactor_values(X2), reduced, rtol=1e-9, atol=0):
            broken.append(eq.id)
    # units.csv gives mu_drift kg/s, but I.43.16 (v = mu_drift*q*Volt/d) uses it as a mobility
    assert broken == ["I.43.16"]
    assert dict(counts) == {0: 26, 1: 39, 2: 25, 3: 10}


def test_crowded_wide_columns_enter_the_network_as_logs_and_formulas_agree():
    from kansr.solver import Scaling

    rng = np.random.default_rng(0)
    group = rng.uniform(1, 5, 500) ** 2 / rng.uniform(1, 5, 500) ** 3  # 1/125 .. 25, crowded low
    X = np.column_stack([rng.uniform(1, 100, 500), group, rng.uniform(-1, 1, 500)])
    scaling = Scaling.fit(X, X[:, 0], log_inputs=True)
    assert [scaling.logged(c) for c in range(3)] == [False, True, False]
    Z = scaling.x(X)
    np.testing.assert_allclose(Z.min(0), -1)
    np.testing.assert_allclose(Z.max(0), 1)
    syms = sp.symbols("a w s")
    exprs = scaling.input_exprs(syms, [0, 1, 2])
    for c, e in enumerate(exprs):
        np.testing.assert_allclose(sp.lambdify(syms, e)(*X.T), Z[:, c], rtol=1e-12, atol=1e-12)
    assert Scaling.fit(X, X[:, 0]).x_log is None  # off unless asked (one-variable problems)
