"""The command line: argument handling and clear errors (law discovery itself is in
test_estimator.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from kansr.cli import build_parser, main


def test_parser_knows_fit_demo_and_bench():
    parser = build_parser()
    assert parser.parse_args(["fit", "d.csv", "--target", "y"]).command == "fit"
    assert parser.parse_args(["demo"]).example == "electric_field"
    assert parser.parse_args(["bench", "report", "out"]).command == "bench"


def test_fit_names_a_missing_target_column(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}).to_csv(path, index=False)
    with pytest.raises(SystemExit, match="target column 'y' not in"):
        main(["fit", str(path), "--target", "y"])


def test_fit_reports_bad_data_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": range(20), "label": ["u"] * 20, "y": range(20)}).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y", "--fallback", "none"]) == 2
    assert "label" in capsys.readouterr().err
