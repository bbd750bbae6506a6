"""A fit never loses the user's work: bad input is a clear error before any training, small
tables give laws, Ctrl-C returns the best law so far, columns are matched by name, fitted
models pickle, and the estimator works inside scikit-learn."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import warnings

import joblib
import numpy as np
import pandas as pd
import sympy
import pytest
import sympy as sp
import torch
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import kansr.solver.core as core
from kansr import KANSR
from kansr.estimator import TIME_BUDGET_CHECKS
from kansr.verify import check

# Few steps, no refinement, no fallback: seconds per fit, still exact on simple products.
QUICK = dict(fallback=None, refine=(), steps=20, n_restarts=1)


def _rows(n=60, d=2, lo=1.0, hi=5.0, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, (n, d))


@pytest.fixture(scope="module")
def fitted():
    """One quick fit of y = mass * accel from a DataFrame, shared by the read-only tests."""
    X = pd.DataFrame(_rows(80), columns=["mass", "accel"])
    y = X["mass"] * X["accel"]
    return KANSR(random_state=0, **QUICK).fit(X, y), X, y


@pytest.fixture
def no_training(monkeypatch):
    """Any training makes the test fail: the error must come before it."""
    def boom(*args, **kwargs):
        raise AssertionError("training started before the input was checked")
    monkeypatch.setattr(core, "train_shape", boom)


# --------------------------------------------------------------------------- bad data
RNG = np.random.default_rng(0)
BAD_DATA = [
    ("X NaN", np.r_[[[np.nan, 1.0]], RNG.random((19, 2))], np.arange(20.0), ValueError,
     "Input X contains NaN"),
    ("X inf", np.r_[[[np.inf, 1.0]], RNG.random((19, 2))], np.arange(20.0), ValueError,
     "Input X contains infinity"),
    ("y NaN", RNG.random((20, 2)), np.r_[np.nan, np.arange(19.0)], ValueError,
     "Input y contains NaN"),
    ("lengths", RNG.random((20, 2)), np.arange(19.0), ValueError,
     "inconsistent numbers of samples: \\[20, 19\\]"),
    ("one row", RNG.random((1, 2)), np.arange(1.0), ValueError, "1 sample"),
    ("four rows", RNG.random((4, 2)), np.arange(4.0), ValueError, "minimum of 5 is required"),
    ("3-D X", RNG.random((20, 2, 2)), np.arange(20.0), ValueError, "dim 3"),
    ("1-D X", RNG.random(20), np.arange(20.0), ValueError, "Expected 2D array, got 1D array"),
    ("2-column y", RNG.random((20, 2)), RNG.random((20, 2)), ValueError, "y should be a 1d"),
    ("string X", np.array([["a", "b"]] * 20), np.arange(20.0), ValueError, "could not convert"),
    ("empty", np.zeros((0, 2)), np.zeros(0), ValueError, "0 sample"),
]


@pytest.mark.parametrize("case, X, y, exc, words", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_rejected_before_training(case, X, y, exc, words, no_training):
    with pytest.raises(exc, match=words):
        KANSR(**QUICK).fit(X, y)


def test_non_numeric_and_duplicate_columns_are_named(no_training):
    df = pd.DataFrame({"a": np.arange(20.0), "label": ["u"] * 20})
    with pytest.raises(TypeError, match=r"non-numeric columns in X: \['label'\]"):
        KANSR(**QUICK).fit(df, np.arange(20.0))
    dup = pd.DataFrame(RNG.random((20, 2)), columns=["a", "a"])
    with pytest.raises(ValueError, match=r"duplicate variable names \['a'\]"):
        KANSR(**QUICK).fit(dup, np.arange(20.0))


@pytest.mark.parametrize("name", ["a b", "1x", "", "x[0]", "lambda"])
def test_names_that_cannot_be_symbols_are_rejected(name, no_training):
    with pytest.raises(ValueError, match="cannot be formula symbols"):
        KANSR(**QUICK).fit(RNG.random((20, 2)), np.arange(20.0), variable_names=[name, "b"])


def test_y_with_another_index_than_X_is_an_error(no_training):
    X = pd.DataFrame(RNG.random((20, 2)), columns=["a", "b"])
    y = pd.Series(np.arange(20.0), index=np.arange(20) + 100)
    with pytest.raises(ValueError, match="different indexes"):
        KANSR(**QUICK).fit(X, y)


# --------------------------------------------------------------------------- bad parameters
BAD_PARAMS = [
    (dict(max_time=0), ValueError, "max_time=0 is invalid"),
    (dict(max_time=-5), ValueError, "max_time=-5 is invalid"),
    (dict(selection="bogus"), ValueError, "selection='bogus' is invalid"),
    (dict(grid=0), ValueError, "grid=0 is invalid"),
    (dict(steps=2.5), ValueError, "steps=2.5 is invalid"),
    (dict(refine=(3,)), ValueError, "refine=\\(3,\\) is invalid"),
    (dict(fallback="magic"), ValueError, "fallback='magic' is invalid"),
    (dict(dtype="float16"), ValueError, "dtype='float16' is invalid"),
    (dict(device="toaster"), ValueError, "device='toaster' is invalid"),
    (dict(lamb=-1.0), ValueError, "lamb=-1.0 is invalid"),
    (dict(random_state="seed"), ValueError, "cannot be used to seed"),
    (dict(library="/no/such/library.toml"), FileNotFoundError, "no such file"),
    (dict(library=3), ValueError, "library=3 is invalid"),
    (dict(denoise="yes"), ValueError, "denoise='yes' is invalid"),
]


def test_a_library_object_is_a_valid_parameter():
    from kansr.match.library import Library
    from kansr.validation import check_params

    check_params(KANSR(library=Library.default().subset(["x", "sin"])).get_params())


@pytest.mark.parametrize("params, exc, words", BAD_PARAMS, ids=[str(p[0]) for p in BAD_PARAMS])
def test_bad_parameters_are_rejected_before_training(params, exc, words, no_training):
    with pytest.raises(exc, match=words):
        KANSR(**{**QUICK, **params}).fit(_rows(20), np.arange(20.0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_gpu_is_a_clear_error(no_training):
    with pytest.raises(ValueError, match="no CUDA device"):
        KANSR(device="cuda", **QUICK).fit(_rows(20), np.arange(20.0))


@pytest.mark.parametrize("random_state", [None, np.random.RandomState(0),
                                          np.random.default_rng(0)])
def test_random_states_scikit_learn_accepts_work(random_state):
    X = _rows(40)
    model = KANSR(random_state=random_state, **QUICK).fit(X, X[:, 0] * X[:, 1])
    assert model.score(X, X[:, 0] * X[:, 1]) > 0.999


# --------------------------------------------------------------------------- using the model
def test_unfitted_model_raises_scikit_learns_not_fitted_error():
    with pytest.raises(NotFittedError):
        KANSR().predict(np.zeros((3, 2)))
    with pytest.raises(NotFittedError):
        KANSR().sympy()


def test_predict_matches_dataframe_columns_by_name(fitted):
    model, X, y = fitted
    assert list(model.feature_names_in_) == ["mass", "accel"]
    np.testing.assert_array_equal(model.predict(X[["accel", "mass"]]), model.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        model.predict(X.rename(columns={"mass": "weight"}))


def test_predict_with_the_wrong_number_of_columns_says_so(fitted):
    model, X, _ = fitted
    with pytest.raises(ValueError, match="X has 3 features, but KANSR is expecting 2"):
        model.predict(np.ones((4, 3)))


def test_score_with_a_two_column_y_is_a_clear_error(fitted):
    model, X, y = fitted
    with pytest.raises(ValueError, match="different number of output"):
        model.score(X, np.column_stack([y, y]))


def test_law_and_exports_agree_with_predict(fitted):
    model, X, y = fitted
    m, a = sp.symbols("mass accel")
    assert check(model.sympy(), m * a, [m, a], [(1, 5)] * 2).recovered
    expected = model.predict(X)
    np.testing.assert_allclose(model.to_numpy()(X.to_numpy()), expected, rtol=1e-12)
    torch_out = model.to_torch()(torch.as_tensor(X.to_numpy()))
    np.testing.assert_allclose(torch_out.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict(X, use="network"), y, rtol=1e-3)


def test_fitted_model_round_trips_through_pickle_and_joblib(fitted, tmp_path):
    model, X, _ = fitted
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_array_equal(again.predict(X, use="network"), model.predict(X, use="network"))
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.sympy() == model.sympy()


def test_plot_draws_the_network_titled_with_the_law_and_edges_with_their_formulas(fitted):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from kansr.verify import round_floats

    model, X, _ = fitted
    fig = model.plot(X)
    try:
        assert str(model.sympy()) in [t.get_text() for ax in fig.axes for t in ax.texts]
        captions = {ax.get_title() for ax in fig.axes} - {""}
        formulas = {str(round_floats(d["formula"])) for _, _, d in model.graph_.edges(data=True)
                    if d.get("kind") == "activation" and d.get("formula") is not None}
        assert formulas and captions == formulas
    finally:
        plt.close(fig)


def test_selection_changed_after_fit_changes_the_pick(fitted):
    model, X, _ = fitted
    chosen = clone(model).set_params(**model.get_params())  # same params, unfitted
    assert not hasattr(chosen, "equations_")
    model.set_params(selection="accuracy")
    try:
        assert model.best_["loss"] == model.equations_["loss"].min()
    finally:
        model.set_params(selection="best")


# --------------------------------------------------------------------------- odd tables
def test_sympy_names_round_trip_through_their_printed_law():
    X = _rows(60)
    model = KANSR(random_state=0, **QUICK).fit(X, X[:, 0] * X[:, 1], variable_names=["I", "E"])
    law = model.sympy()
    assert {s.name for s in law.free_symbols} == {"I", "E"}
    assert sp.sympify(str(law), locals=model.symbol_table()) == law
    assert sp.I not in law.atoms()


@pytest.mark.parametrize("power", [-300, 300])
def test_extreme_magnitudes_are_rescaled_and_mapped_back(power):
    X = _rows(80)
    scale = 10.0 ** power
    Xs = X * np.array([scale, 1.0])
    y = Xs[:, 0] / scale * X[:, 1] * scale  # y = x0 * x1 in the scaled units: ~1e300 or 1e-300
    model = KANSR(random_state=0, **QUICK).fit(Xs, y)
    x0, x1 = sp.symbols("x0 x1")
    ratio = sp.nsimplify(sp.simplify(model.sympy() / (x0 * x1)), rational=False)
    assert abs(float(ratio) - 1.0) < 1e-9, model.sympy()
    np.testing.assert_allclose(model.predict(Xs), y, rtol=1e-9)


def test_tiny_values_in_a_sum_are_found_as_such():
    X = _rows(80)
    y = 1e-300 * X[:, 0] + 1e-300 * X[:, 1]
    model = KANSR(random_state=0, **QUICK).fit(X, y)
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-9)


def test_constant_target_gives_the_constant_and_constant_columns_are_ignored(caplog):
    X = _rows(30, 3)
    X[:, 2] = 7.0
    with caplog.at_level("WARNING"):
        model = KANSR(**QUICK).fit(X, np.full(30, 2.5))
    assert float(model.sympy()) == 2.5
    model = KANSR(random_state=0, **QUICK).fit(X, X[:, 0] * X[:, 1])
    assert "x2" not in {s.name for s in model.sympy().free_symbols}
    assert "constant input columns ['x2'] ignored" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("n, law", [(30, "m*a"), (50, "x0*x1")])
def test_small_tables_give_the_law(n, law):
    names = ["m", "a"] if law == "m*a" else ["x0", "x1"]
    X = _rows(n, seed=3)
    model = KANSR(random_state=0, max_time=30).fit(X, X[:, 0] * X[:, 1], variable_names=names)
    syms = sp.symbols(names)
    assert check(model.sympy(), syms[0] * syms[1], list(syms), [(1, 5)] * 2).recovered, model.sympy()


# Semi-major axis (AU) and sidereal period (years) of the planets, Ceres and Pluto: measured
# values (NASA planetary fact sheets), rounded to 4-5 digits, so Kepler's law holds only to
# about 1e-4.
KEPLER = [("Mercury", 0.3871, 0.2408), ("Venus", 0.7233, 0.6152), ("Earth", 1.0000, 1.0000),
          ("Mars", 1.5237, 1.8808), ("Ceres", 2.7675, 4.6040), ("Jupiter", 5.2029, 11.862),
          ("Saturn", 9.5367, 29.457), ("Uranus", 19.189, 84.011), ("Neptune", 30.070, 164.79),
          ("Pluto", 39.482, 247.94)]


@pytest.mark.slow
def test_keplers_third_law_from_ten_measured_bodies():
    a = np.array([[r[1]] for r in KEPLER])
    T = np.array([r[2] for r in KEPLER])
    model = KANSR(random_state=0, max_time=60).fit(a, T, variable_names=["a"])
    x = sp.Symbol("a")
    assert model.score(a, T) > 0.9999
    # The measured periods deviate from a^(3/2) by about 0.05% (Pluto: 247.94 against
    # 248.08), five times their rounding, so the data themselves do not snap the
    # coefficient to 1; the law's shape c * a^(3/2) must be on the front, with c within 0.1%.
    shapes = [e for e in model.equations_["sympy"]
              if e.free_symbols == {x} and sp.simplify(e / x ** sp.Rational(3, 2)).is_number]
    assert shapes, model.equations_["expression"].tolist()
    c = float(sp.simplify(shapes[0] / x ** sp.Rational(3, 2)))
    assert abs(c - 1) < 1e-3, shapes[0]


# --------------------------------------------------------------------------- same seed
def test_same_seed_without_a_time_budget_gives_a_bit_identical_result():
    X = _rows(60, seed=5)
    y = np.sin(X[:, 0]) + X[:, 1]
    first = KANSR(random_state=0, **QUICK).fit(X, y)
    second = KANSR(random_state=0, **QUICK).fit(X, y)
    assert str(first.sympy()) == str(second.sympy())
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    np.testing.assert_array_equal(first.equations_["loss"], second.equations_["loss"])


# --------------------------------------------------------------------------- scikit-learn
def test_works_in_pipelines_cross_validation_and_grid_search():
    X = _rows(60)
    y = X[:, 0] * X[:, 1]
    assert is_regressor(KANSR())
    pipe = make_pipeline(StandardScaler(), KANSR(random_state=0, **QUICK)).fit(X, y)
    assert pipe.score(X, y) > 0.99
    assert pipe.predict(X).shape == (60,)
    scores = cross_val_score(KANSR(random_state=0, **QUICK), X, y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.99)
    search = GridSearchCV(KANSR(random_state=0, **QUICK), {"grid": [3, 5]}, cv=2).fit(X, y)
    assert search.best_params_["grid"] in (3, 5)


@pytest.mark.slow
def test_scikit_learn_check_estimator_passes():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(KANSR(max_time=5, **QUICK), on_fail=None,
                                  expected_failed_checks=TIME_BUDGET_CHECKS)
    bad = [r for r in results if r["status"] == "failed"]
    assert not bad, [(r["check_name"], str(r["exception"])[:200]) for r in bad]
    assert sum(r["status"] == "passed" for r in results) >= 45


# --------------------------------------------------------------------------- Ctrl-C, temp dir
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_returns_the_best_law_so_far_and_exits_130(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (2000, 4))
    y = np.sin(X[:, 0]) * X[:, 1] + X[:, 2] ** 2 / X[:, 3]
    pd.DataFrame(np.column_stack([X, y]), columns=["a", "b", "c", "d", "y"]).to_csv(
        tmp_path / "d.csv", index=False)
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    os.mkdir(tmp_path / "tmp")
    proc = subprocess.Popen([sys.executable, "-m", "kansr.cli", "fit", "d.csv", "--target", "y",
                             "--fallback", "none"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(12)  # well into training
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # a hang guard, not a speed test
    assert proc.returncode == 130, err
    assert out.startswith("law:") and "R^2:" in out
    assert "interrupted" in err and "Traceback" not in err
    assert os.listdir(tmp_path / "tmp") == []  # nothing left in the temp dir


def test_interrupted_fit_sets_interrupted_and_warns(monkeypatch):
    from kansr.solver import SearchInterrupted
    import kansr.solver.shapes as shapes

    real_fit = shapes.fit
    calls = {"n": 0}

    def fit_then_ctrl_c(*args, **kwargs):
        calls["n"] += 1
        real_fit(*args, **kwargs)
        if calls["n"] == 2:
            raise SearchInterrupted()

    monkeypatch.setattr(shapes, "fit", fit_then_ctrl_c)
    X = _rows(60)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        model = KANSR(random_state=0, **QUICK).fit(X, X[:, 0] + X[:, 1])
    assert model.interrupted_ and model.sympy() is not None
    assert model.score(X, X[:, 0] + X[:, 1]) > 0.9


# --------------------------------------------------------------------------- units
def test_inconsistent_units_are_rejected_before_training(no_training):
    X = _rows(30)
    with pytest.raises(ValueError, match="inconsistent units"):
        KANSR(**QUICK).fit(X, X[:, 0] * X[:, 1], variable_names=["m", "v"],
                           units=["kg", "m/s"], y_units="K")
    with pytest.raises(ValueError, match="no unit given for variables \\['v'\\]"):
        KANSR(**QUICK).fit(X, X[:, 0], variable_names=["m", "v"], units={"m": "kg"},
                           y_units="kg")
    with pytest.raises(ValueError, match="y_units"):
        KANSR(**QUICK).fit(X, X[:, 0], units=["kg", "m/s"])


def test_units_that_leave_no_group_give_the_law_at_once():
    # Coulomb's field: the units fix the monomial, the reduced target is the constant 1/(4 pi)
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1, 5, 500), rng.uniform(1, 5, 500), rng.uniform(1, 5, 500)])
    y = X[:, 0] / (4 * np.pi * X[:, 1] * X[:, 2] ** 2)
    model = KANSR(random_state=0, max_time=30).fit(
        X, y, variable_names=["q", "epsilon", "r"], units=["A*s", "A^2*s^4/(kg*m^3)", "m"],
        y_units="kg*m/(A*s^3)")
    q, eps, r = sp.symbols("q epsilon r")
    assert len(model.reduction_.groups) == 0
    assert sp.simplify(model.sympy() - q / (4 * sp.pi * eps * r**2)) == 0, model.sympy()


@pytest.mark.slow
def test_normal_density_with_units_is_found_exactly():
    # Feynman I.6.2: both inputs dimensionless, so the groups are the inputs themselves; the
    # law is sigma^-1 times a function of theta/sigma (a homogeneous pair)
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (1000, 2))
    y = np.exp(-(X[:, 1] / X[:, 0]) ** 2 / 2) / (np.sqrt(2 * np.pi) * X[:, 0])
    model = KANSR(random_state=0, max_time=60).fit(X, y, variable_names=["sigma", "theta"],
                                                   units=["", ""], y_units="")
    sigma, theta = sp.symbols("sigma theta")
    truth = sp.exp(-(theta / sigma) ** 2 / 2) / (sp.sqrt(2 * sp.pi) * sigma)
    assert check(model.sympy(), truth, [sigma, theta], [(1, 3), (1, 3)]).recovered, \
        model.sympy()
    assert model.decomposition_.test == "homogeneous"


def test_two_inputs_through_their_product_give_a_one_variable_problem():
    # a function of a*b alone: a one-node network fits it, but its outer edge 3u/(3 - u)
    # is slow to read; the product symmetry leaves a one-variable problem matched directly
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 1, (1000, 2))
    u = X[:, 0] * X[:, 1]
    model = KANSR(random_state=0, max_time=30).fit(X, 3 * u / (3 - u),
                                                   variable_names=["a", "b"])
    a, b = sp.symbols("a b")
    assert sp.simplify(model.sympy() - 3 * a * b / (3 - a * b)) == 0, model.sympy()
    assert model.decomposition_.test == "product"


def test_units_that_contradict_the_data_are_dropped_with_a_warning():
    # a wrong exponent (epsilon's units inverted) makes the units fix a law the data refute
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1, 5, 500), rng.uniform(1, 5, 500), rng.uniform(1, 5, 500)])
    y = X[:, 0] / (4 * np.pi * X[:, 1] * X[:, 2] ** 2)
    with pytest.warns(UserWarning, match="units do not describe these data"):
        model = KANSR(random_state=0, max_time=30).fit(
            X, y, variable_names=["q", "epsilon", "r"],
            units=["A*s", "kg*m^3/(A^2*s^4)", "m"], y_units="kg*m/(A*s^3)")
    q, eps, r = sp.symbols("q epsilon r")
    assert model.reduction_ is None
    assert sp.simplify(model.sympy() - q / (4 * sp.pi * eps * r**2)) == 0, model.sympy()


@pytest.mark.slow
def test_relativistic_mass_with_units_is_found_exactly():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1, 5, 1000), rng.uniform(1, 2, 1000),
                         rng.uniform(3, 10, 1000)])
    y = X[:, 0] / np.sqrt(1 - X[:, 1] ** 2 / X[:, 2] ** 2)
    model = KANSR(random_state=0, max_time=60).fit(
        X, y, variable_names=["m0", "v", "c"], units=["kg", "m/s", "m/s"], y_units="kg")
    m0, v, c = sp.symbols("m0 v c")
    assert [str(g) for g in model.reduction_.groups] == ["v/c"]
    truth = m0 / sp.sqrt(1 - v**2 / c**2)
    assert check(model.sympy(), truth, [m0, v, c], [(1, 5), (1, 2), (3, 10)]).recovered, \
        model.sympy()
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-10)


# ------------------------------------------------------------ formulas valid between the rows
def test_formula_undefined_between_the_rows_is_dropped_from_the_front():
    """A root whose argument turns negative in a gap between two rows fits those rows
    exactly, yet predicts NaN on new data there: it must not reach the front."""
    from kansr.solver.formulas import formula_front

    x = sympy.Symbol("x")
    X = np.sort(np.random.default_rng(0).uniform(0, 2, (60, 1)), axis=0)
    gap = int(np.argmax(np.diff(X[:, 0])))
    mid, width = X[gap:gap + 2, 0].mean(), np.diff(X[:, 0])[gap] / 4
    trap = sympy.sqrt((x - mid) ** 2 - width ** 2)
    y = np.sqrt((X[:, 0] - mid) ** 2 - width ** 2)
    assert np.all(np.isfinite(y))  # every row is fine ...
    front = formula_front([trap, sympy.Abs(x - mid), x], [x], X, y)
    assert trap not in set(front["sympy"])  # ... but not the points between them
    assert sympy.Abs(x - mid) in set(front["sympy"])


# name -> (variables, units, output units, ranges, law): laws whose dimensionless problem
# needs a structure test and a sub-problem's own search, with units.
UNIT_LAWS = {
    # a line in alpha: intercept cos(w t) and slope cos(w t)^2 (the affine test)
    "line_in_one_group": (["x1", "omega", "t", "alpha"], ["m", "1/s", "s", ""], "m",
                          [(1, 3)] * 4,
                          lambda x1, w, t, a: x1 * (sp.cos(w * t) + a * sp.cos(w * t) ** 2)),
    # Feynman I.15.3x, a Lorentz length transform: in the groups (u/c, c t/x) no split holds;
    # the shear c t/x -> u t/x makes it a product of one-variable factors
    "lorentz_length": (["x", "u", "c", "t"], ["m", "m/s", "m/s", "s"], "m",
                       [(5, 10), (1, 2), (3, 20), (1, 2)],
                       lambda x, u, c, t: (x - u * t) / sp.sqrt(1 - u ** 2 / c ** 2)),
    # Feynman I.9.18, gravity between two points in 3-D (the ranges of the Feynman table): the
    # mass ratio is a power-law factor, the coordinates pair into three differences, and
    # 1/y is then a sum of three squares
    "gravity_in_3d": (["m1", "m2", "G", "x1", "x2", "y1", "y2", "z1", "z2"],
                      ["kg", "kg", "m^3/(kg*s^2)"] + ["m"] * 6, "kg*m/s^2",
                      [(1, 2), (1, 2), (1, 2), (3, 4), (1, 2), (3, 4), (1, 2), (3, 4), (1, 2)],
                      lambda m1, m2, G, x1, x2, y1, y2, z1, z2: G * m1 * m2 / (
                          (x2 - x1) ** 2 + (y2 - y1) ** 2 + (z2 - z1) ** 2)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(UNIT_LAWS))
def test_structured_law_with_units_is_found_exactly(name):
    names, units, y_units, ranges, law = UNIT_LAWS[name]
    syms = sp.symbols(names)
    truth = law(*syms)
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(lo, hi, 3000) for lo, hi in ranges])
    y = sp.lambdify(syms, truth, "numpy")(*X.T)
    model = KANSR(random_state=0, max_time=60).fit(X, y, variable_names=names, units=units,
                                                   y_units=y_units)
    assert check(model.sympy(), truth, list(syms), ranges).recovered, model.sympy()


def test_a_shape_whose_pruning_drops_an_input_still_trains_on_every_column():
    # An input the network ignores used to be pruned away, and the next fit, given every
    # column, raised (Feynman II.38.3 with units at 1 % noise: a fit that ended in an error)
    from kansr.solver.shapes import Architecture, TrainSettings, train_shape

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (800, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.01 * rng.normal(size=800)  # x2 is ignored
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    Xt, yt, Xv, yv = t(X[:600]), t(y[:600, None]), t(X[600:]), t(y[600:, None])
    # strong sparsity and a high node threshold: the ignored input is pruned
    net = train_shape(Architecture("mixed", [3, (3, 2), (1, 1), 1]), Xt, yt, Xv, yv,
                      TrainSettings(refine=(), steps=20, lamb=1e-2, node_th=5e-2))
    assert net is not None and net.model.input_ids == [0, 1, 2]
    assert net.val_mse < 5e-2


def test_a_budget_slice_can_be_promised_seconds_of_the_whole_search():
    # nested shares shrink geometrically (four data reductions left a one-input part 1.5 s
    # of 60): `at_least` draws on the whole search's time, never beyond it
    from kansr.solver.budget import Budget

    whole = Budget(60.0)
    deep = whole.slice(0.25).slice(0.25).slice(0.25)
    assert deep.max_time < 1.0
    assert 7.5 < deep.slice(0.5, at_least=8.0).max_time <= 8.0
    assert deep.slice(0.5).max_time < 0.5
    assert Budget(2.0).slice(0.1, at_least=8.0).max_time <= 2.0
    assert Budget(None).slice(0.1, at_least=8.0).max_time is None
