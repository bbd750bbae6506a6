"""The command line: argument handling, clear errors, and the README's `kansr fit` and
`kansr demo` run end to end (law discovery in depth is in test_estimator.py)."""

from __future__ import annotations

import re
from importlib.metadata import entry_points

import numpy as np
import pandas as pd
import pytest
import sympy

from kansr.cli import build_parser, main


def test_parser_knows_fit_demo_and_bench():
    parser = build_parser()
    assert parser.parse_args(["fit", "d.csv", "--target", "y"]).command == "fit"
    assert parser.parse_args(["demo"]).example == "electric_field"
    assert parser.parse_args(["bench", "report", "out"]).command == "bench"


def test_fit_names_a_missing_target_column(tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y"]) == 2
    assert capsys.readouterr().err == "error: target column 'y' not in ['a', 'b']\n"


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_text(""), "is empty"),
    (lambda p: p.write_text("a,b,y\n"), "has a header but no rows"),
])
def test_unreadable_tables_are_one_line_errors_with_exit_code_2(tmp_path, capsys, make, words):
    path = tmp_path / "d.csv"
    make(path)
    assert main(["fit", str(path), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_library_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": range(20), "y": range(20)}).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y", "--library", str(tmp_path / "no.toml")]) == 2
    assert "no.toml: no such file" in capsys.readouterr().err


def test_fit_reports_bad_data_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": range(20), "label": ["u"] * 20, "y": range(20)}).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y", "--fallback", "none"]) == 2
    assert "label" in capsys.readouterr().err


def _printed_law(out: str, names: list[str]) -> sympy.Expr:
    """The expression on the `law:` line of the output, parsed with plain symbols for names."""
    lines = re.findall(r"^law:\s*(.+)$", out, flags=re.M)
    assert len(lines) == 1, out
    return sympy.sympify(lines[0], locals={n: sympy.Symbol(n) for n in names})


def _same_law(found: sympy.Expr, truth: sympy.Expr) -> bool:
    return found.free_symbols == truth.free_symbols and sympy.simplify(found - truth) == 0


def test_kansr_is_the_cli_entry_point():
    (ep,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "kansr"]
    assert ep.load() is main


def test_fit_prints_the_law_of_a_small_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 3.0, 100)
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": x, "y": 2 * x**2}).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y", "--fallback", "none"]) == 0
    out = capsys.readouterr().out
    x_ = sympy.Symbol("x")
    assert _same_law(_printed_law(out, ["x"]), 2 * x_**2), out
    (r2,) = re.findall(r"^R\^2:\s*(\S+)$", out, flags=re.M)
    assert float(r2) > 0.9999


@pytest.mark.slow
def test_demo_discovers_coulombs_field_law(capsys):
    """The README's first command, `kansr demo` (about 30 s)."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    q, epsilon, r = sympy.symbols("q epsilon r")
    found = _printed_law(out, ["q", "epsilon", "r"])
    assert _same_law(found, q / (4 * sympy.pi * epsilon * r**2)), out
