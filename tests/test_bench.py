"""Tests of the Feynman benchmark harness (tables, data, runner, resume, report, CLI)."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from kansr.bench import methods as method_registry
from kansr.bench.cli import add_bench_parser, main, parse_seeds
from kansr.bench.feynman import (
    DEFAULT_TABLE,
    EquationTableError,
    FormulaError,
    generate_data,
    load_equations,
    parse_formula,
    select_equations,
)
from kansr.bench.records import read_results
from kansr.bench.report import write_report
from kansr.bench.runner import plan_tasks, run_benchmark
from kansr.bench.tasks import RunConfig, task_key

SMALL = ["I.6.2a", "II.13.17", "III.17.37"]  # 1 variable; uses I; uses beta
HEADER = ("Filename,Number,Output,Formula,# variables,"
          + ",".join(f"v{k}_name,v{k}_low,v{k}_high" for k in range(1, 11)))
FAST = RunConfig(time_limit=0.5, n_rows=400, train_rows=200, slack=1.0, overhead=30.0,
                 verify_timeout=5.0)


def _table(tmp_path: Path, rows: list[str], name: str = "table.csv") -> Path:
    path = tmp_path / name
    padded = [row + "," * (HEADER.count(",") - row.count(",")) for row in rows]
    path.write_text("\ufeff" + "\r\n".join([HEADER, *padded, ",,,"]) + "\r\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def equations():
    return select_equations(load_equations(), SMALL)


@pytest.fixture()
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, equations) -> Path:
    """A module of fake methods importable by task subprocesses; returns the call log."""
    calls = tmp_path / "calls.txt"
    formulas = {eq.variables: eq.formula for eq in equations}
    formulas[("x", "gamma")] = "2*x*gamma"  # table A.1 of the CLI test
    source = textwrap.dedent(f"""
        import os, time
        from kansr.bench.feynman import parse_formula
        FORMULAS = {formulas!r}
        CALLS = {str(calls)!r}

        def _log(tag, names, seed):
            with open(CALLS, "a") as handle:
                handle.write(f"{{tag}} {{','.join(names)}} {{seed}}\\n")

        def exact(X, y, names, time_limit, seed):
            _log("exact", names, seed)
            return 1.00001 * parse_formula(FORMULAS[tuple(names)], names)

        def raises(X, y, names, time_limit, seed):
            _log("raises", names, seed)
            raise RuntimeError("boom from fake method")

        def sleeps(X, y, names, time_limit, seed):
            _log("sleeps", names, seed)
            time.sleep(1000)

        def crashes(X, y, names, time_limit, seed):
            os._exit(9)

        def _warm():
            with open(CALLS + ".warm", "a") as handle:
                handle.write("warm\\n")

        exact.warm_up = _warm
    """)
    (tmp_path / "fake_methods_mod.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("exact", "raises", "sleeps", "crashes"):
        method_registry.register_method(f"fake_{name}", f"fake_methods_mod:{name}")
    yield calls
    for name in ("exact", "raises", "sleeps", "crashes"):
        method_registry.unregister_method(f"fake_{name}")
    # the runner's warm-up imported it here: the next test's module logs to its own tmp_path
    sys.modules.pop("fake_methods_mod", None)


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ------------------------------------------------------------------- tables and formulas


def test_parse_formula_keeps_clashing_names_as_symbols() -> None:
    expr = parse_formula("1/(4*pi*epsilon*c**2)*2*I/r + gamma*beta", ["epsilon", "c", "I", "r",
                                                                      "gamma", "beta"])
    names = {s.name for s in expr.free_symbols}
    assert names == {"epsilon", "c", "I", "r", "gamma", "beta"}
    assert all(type(s) is sp.Symbol for s in expr.free_symbols)
    assert not expr.has(sp.I)
    assert parse_formula("ln(x) + arcsin(x/2)", ["x"]) == sp.log(sp.Symbol("x")) + sp.asin(sp.Symbol("x") / 2)


def test_parse_formula_errors() -> None:
    with pytest.raises(FormulaError, match="differ from the listed variables"):
        parse_formula("x*y", ["x"])
    with pytest.raises(FormulaError, match="unknown function"):
        parse_formula("foo(x)", ["x"])
    with pytest.raises(FormulaError, match="cannot parse"):
        parse_formula("x*(", ["x"])
    with pytest.raises(FormulaError, match="empty"):
        parse_formula("  ", ["x"])


def test_default_table_and_errata() -> None:
    table = {eq.id: eq for eq in load_equations()}
    assert len(table) == 100
    assert len(table["I.18.12"].variables) == 3  # '# variables' says 2
    assert len(table["II.37.1"].variables) == 3  # '# variables' says 6
    assert table["I.15.1"].srbench_name == "feynman_I_15_10"
    assert table["III.17.37"].expr.has(sp.Symbol("beta"))
    with pytest.raises(KeyError, match="nope"):
        select_equations(table.values(), ["nope"])


# SHA-256 of the shared copies (../shared/feynman), which the repository's copies must equal
# byte for byte (benchmarks/feynman/README.md); pinned so that CI checks them without ../shared.
DATA_SHA256 = {
    "FeynmanEquations.csv": "54d5de8c56716fa92691c3886da1b8aa3b05d046077504fe0cc231b413af0e4e",
    "srbench2021_symbolic_solution_rate_noise0.tsv":
        "bd6ccc2a714b0bf44f81272a045919163f79f9407c34a78718a369772a39e1ae",
    "units.csv": "8357bad4bced4d64dc4be31194afb3dabd0ba02c93ab2fa8687f75a18ec7ee05",
}


@pytest.mark.parametrize("name", sorted(DATA_SHA256))
def test_repository_copies_are_the_published_bytes(name: str) -> None:
    data = (DEFAULT_TABLE.parent / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == DATA_SHA256[name]


def test_equation_table_keeps_its_published_quirks() -> None:
    raw = DEFAULT_TABLE.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")  # CRLF only
    rows = raw.split(b"\r\n")
    assert rows[-1].strip(b",") == b""  # trailing rows of commas only, ignored by the loader
    assert len([r for r in rows[1:] if r.strip(b",")]) == len(load_equations()) == 100


@pytest.mark.parametrize("name", sorted(DATA_SHA256))
def test_repository_copies_match_the_shared_copies(name: str) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "feynman"
    if not shared.exists():
        pytest.skip("../shared not mounted (the pinned digests above still check the bytes)")
    assert (DEFAULT_TABLE.parent / name).read_bytes() == (shared / name).read_bytes()


@pytest.mark.parametrize(("row", "message"), [
    ("B.1,1,y,,1,x,1,2", "empty formula"),
    ("B.1,1,y,x*(,1,x,1,2", "cannot parse"),
    ("B.1,1,y,x*z,1,x,1,2", "not listed: \\['z'\\]"),
    ("B.1,1,y,x,1,x,2,2", "low >= high"),
    ("B.1,1,y,x,1,x,a,2", "not a number"),
    ("B.1,1,y,x,1,lambda,1,2", "not a valid identifier"),
])
def test_bad_rows_name_the_row(tmp_path: Path, row: str, message: str) -> None:
    path = _table(tmp_path, ["A.1,1,y,2*x,1,x,1,2", row])
    with pytest.raises(EquationTableError, match=message) as info:
        load_equations(path)
    assert "line 3" in str(info.value) and "B.1" in str(info.value)
    errors: list[str] = []
    kept = load_equations(path, skip_bad=True, errors=errors)
    assert [eq.id for eq in kept] == ["A.1"] and len(errors) == 1


def test_duplicate_ids_and_declared_count_ignored(tmp_path: Path) -> None:
    path = _table(tmp_path, ["A.1,1,y,x*z,7,x,1,2,z,1,2", "A.1,2,y,x,1,x,1,2"])
    with pytest.raises(EquationTableError, match="duplicate"):
        load_equations(path)
    (eq,) = load_equations(path, skip_bad=True)
    assert eq.variables == ("x", "z")


# ------------------------------------------------------------------------------ data


def test_generate_data_shapes_seeding_and_noise(equations) -> None:
    eq = equations[1]  # II.13.17, 4 variables
    clean = generate_data(eq, 3, n_rows=1000, train_rows=500)
    assert clean.X_train.shape == (500, 4) and clean.X_test.shape == (250, 4)
    assert np.all(clean.X_train >= eq.lows) and np.all(clean.X_train <= eq.highs)
    again = generate_data(eq, 3, n_rows=1000, train_rows=500)
    assert np.array_equal(clean.X_train, again.X_train)
    assert not np.array_equal(clean.X_train, generate_data(eq, 4, n_rows=1000).X_train[:500])
    noisy = generate_data(eq, 3, n_rows=1000, train_rows=500, noise=0.1)
    assert np.array_equal(noisy.X_train, clean.X_train)
    assert np.array_equal(noisy.y_test, clean.y_test)  # test targets stay clean
    assert np.array_equal(noisy.X_test, clean.X_test)
    scale = np.std(noisy.y_train - clean.y_train) / np.sqrt(np.mean(clean.y_train**2))
    assert 0.08 < scale < 0.12
    uncapped = generate_data(eq, 3, n_rows=1000, train_rows=10_000)
    assert uncapped.X_train.shape == (750, 4)


# ------------------------------------------------------------------ results file


def test_read_results_repairs_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "r2')
    assert [r["key"] for r in read_results(path)] == ["a", "b"]
    assert [r["key"] for r in read_results(path, repair=True)] == ["a", "b"]
    assert path.read_text() == '{"key": "a"}\n{"key": "b"}\n'


# ------------------------------------------------------------------------- runner


def test_harness_records_success_error_and_timeout(tmp_path: Path, fakes: Path, equations) -> None:
    tasks = plan_tasks(equations, ["fake_exact"], [0], [0.0])
    tasks += plan_tasks(equations[:1], ["fake_raises", "fake_sleeps", "fake_crashes"], [0], [0.01])
    summary = run_benchmark(tasks, tmp_path / "out", FAST, backend="process", workers=2,
                            progress=False)
    records = {r["key"]: r for r in read_results(tmp_path / "out" / "results.jsonl")}
    assert summary.finished == len(tasks) == len(records) == 6
    assert summary.failed == 3 and summary.exact == 3
    for eq in equations:
        record = records[task_key(eq.id, "fake_exact", 0, 0.0)]
        assert record["status"] == "ok" and record["error"] is None
        assert record["exact"] and record["symbolic"] and record["numeric"] and record["accuracy"]
        assert record["r2_test"] > 0.999 and record["complexity"] > 1
        assert record["true_formula"] == eq.formula and record["n_train"] == 200
        assert record["kansr_version"]
    first = equations[0].id
    raised = records[task_key(first, "fake_raises", 0, 0.01)]
    assert raised["status"] == "error" and "boom from fake method" in raised["error"]
    assert "Traceback" in raised["error"] and not raised["exact"]
    timed_out = records[task_key(first, "fake_sleeps", 0, 0.01)]
    assert timed_out["status"] == "timeout" and timed_out["error"] == "timeout"
    crashed = records[task_key(first, "fake_crashes", 0, 0.01)]
    assert crashed["status"] == "crash" and "exit code 9" in crashed["error"]
    assert sorted(line.split()[0] for line in _calls(fakes)) == (
        ["exact"] * 3 + ["raises", "sleeps"])
    # the method's warm-up ran once, in the runner, before any task was timed
    assert _calls(Path(str(fakes) + ".warm")) == ["warm"]


def test_resume_after_crash_redoes_nothing(tmp_path: Path, fakes: Path, equations) -> None:
    out = tmp_path / "out"
    tasks = plan_tasks(equations, ["fake_exact", "fake_raises"], [0, 1], [0.0])
    first = run_benchmark(tasks[:8], out, FAST, backend="inline", progress=False)
    assert first.finished == 8
    results = out / "results.jsonl"
    text = results.read_text()
    results.write_text(text[: len(text) - 40])  # kill -9 in the middle of line 8
    calls_before = len(_calls(fakes))
    second = run_benchmark(tasks, out, FAST, backend="inline", progress=False)
    assert second.skipped == 7 and second.finished == len(tasks) - 7
    keys = [r["key"] for r in read_results(results)]
    assert len(keys) == len(set(keys)) == len(tasks)
    assert len(_calls(fakes)) - calls_before == len(tasks) - 7
    third = run_benchmark(tasks, out, FAST, backend="inline", progress=False)
    assert third.finished == 0 and third.skipped == len(tasks)
    # Each run (the first, the resumed ones) logs the code it ran on.
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["pending"] for r in runs] == [8, len(tasks) - 7, 0]
    commit = runs[-1]["source_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)


def test_dask_backend(tmp_path: Path, fakes: Path, equations) -> None:
    pytest.importorskip("distributed")
    tasks = plan_tasks(equations[:2], ["fake_exact"], [0], [0.0])
    summary = run_benchmark(tasks, tmp_path / "out", FAST, backend="dask", workers=2,
                            dask_processes=False, progress=False)
    assert summary.finished == 2 and summary.exact == 2 and summary.failed == 0


def test_unknown_backend_and_method(tmp_path: Path, equations) -> None:
    with pytest.raises(KeyError, match="unknown method"):
        plan_tasks(equations, ["no_such_method"], [0], [0.0])
    tasks = plan_tasks(equations[:1], ["kansr"], [0], [0.0])
    with pytest.raises(ValueError, match="unknown backend"):
        run_benchmark(tasks, tmp_path, FAST, backend="carrier-pigeon", progress=False)


def test_register_method_rejects_unimportable() -> None:
    with pytest.raises(ValueError, match="not importable"):
        method_registry.register_method("lam", lambda *a: sp.Integer(0))
    with pytest.raises(ValueError, match="invalid method name"):
        method_registry.register_method("a|b", "m:f")


def test_operon_model_string_parsing() -> None:
    expr = method_registry.parse_operon("((2.5 * X1) + (X2 ^ 2.0)) - aq(X1, X2)", ["I", "gamma"])
    I_, gamma = sp.Symbol("I"), sp.Symbol("gamma")
    assert expr.free_symbols == {I_, gamma}
    assert sp.simplify(expr - (2.5 * I_ + gamma**2.0 - I_ / sp.sqrt(1 + gamma**2))) == 0


# ------------------------------------------------------------------------ report + CLI


def _record(eq: str, method: str, seed: int, noise: float, exact: bool, acc: bool) -> dict:
    return {"key": task_key(eq, method, seed, noise), "equation": eq, "method": method,
            "seed": seed, "noise": noise, "exact": exact, "symbolic": exact, "accuracy": acc,
            "seconds": 1.0 + seed, "status": "ok"}


def test_report_writes_markdown_and_png(tmp_path: Path) -> None:
    records = [_record("I.6.2a", "m1", s, 0.0, s == 0, True) for s in range(2)]
    records += [_record("I.15.1", "m1", 0, 0.0, False, False),
                _record("I.6.2a", "m1", 0, 0.1, False, True),
                _record("I.6.2a", "m2", 0, 0.0, True, True)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = write_report(tmp_path)
    text = report.read_text()
    assert "| m1 | 0 | 2 | 3 |" in text  # 2 equations, 3 tasks at noise 0
    assert "| 25.0 |" in text  # m1 exact: (50% + 0%) / 2
    # accuracy 50%; seconds 1, 2, 1: median 1, p90 1.8; the one exact task took 1 s
    assert "| 50.0 | 1.0 | 1.8 | 1.0 | 1.0 |" in text
    assert "I.15.1" in text and "AI Feynman" in text and "55.8" in text
    # per noise level, ours beside the anchors: m1 at 0.1 solved nothing exactly
    assert "| m1 (this run) | 25.0 | - | - | 0.0 |" in text
    assert "| PhySO (units) (published) | 58.4 | 58.4 | 57.9 | 53.4 |" in text
    assert (tmp_path / "rates.png").stat().st_size > 1000


def test_cli_parser_and_end_to_end(tmp_path: Path, fakes: Path) -> None:
    parser = argparse.ArgumentParser(prog="kansr")
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "feynman", "--seeds", "0-2,5", "--noise", "0", "0.1",
                              "--only", "I.6.2a", "--workers", "3", "--no-progress"])
    assert args.seeds == [0, 1, 2, 5] and args.noise == [0.0, 0.1] and args.only == ["I.6.2a"]
    assert args.train_rows == 10_000 and callable(args.func)
    assert parse_seeds("3") == [3]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("5-1")
    table = _table(tmp_path, ["A.1,1,y,2*x*gamma,2,x,1,2,gamma,1,2"])
    out = tmp_path / "run"
    code = main(["feynman", "--equations", str(table), "--methods", "fake_exact",
                 "--seeds", "0", "--noise", "0", "--rows", "300", "--backend", "inline",
                 "--out", str(out), "--no-progress", "--report"])
    assert code == 0
    (record,) = read_results(out / "results.jsonl")
    assert record["exact"] and record["equation"] == "A.1"
    assert (out / "report.md").exists() and (out / "rates.png").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
