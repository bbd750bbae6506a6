"""Summaries of a benchmark results directory: ``report.md`` and ``rates.png``.

Rates follow SRBench 2021: per equation, the mean over seeds; then the mean over equations.
Published SRBench 2021 exact rates (noise 0) are drawn as labelled reference lines; the
per-equation table puts the SRBench 2021 methods' exact rates (% of 10 seeds, from
``srbench2021_symbolic_solution_rate_noise0.tsv``) beside ours.
"""

from __future__ import annotations

import csv
import logging
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from kansr.bench.feynman import srbench_name
from kansr.bench.records import RESULTS_FILE, read_results

log = logging.getLogger(__name__)

#: SRBench 2021 symbolic solution rates at noise 0 (La Cava et al. 2021, Feynman + Strogatz).
PUBLISHED_EXACT_NOISE0: dict[str, float] = {
    "AI Feynman": 55.8, "AFP_FE": 27.0, "GP-GOMEA": 26.8, "Operon": 16.6, "gplearn": 16.3,
}
#: Published exact rates (%) on Feynman by noise level gamma: PhySO (uses units; Tenachi et
#: al. 2023) and SRBench 2021's curves (La Cava et al. 2021; "~" values read off its figure),
#: as quoted in this project's noise issue. None: not published.
PUBLISHED_EXACT_BY_NOISE: dict[str, dict[float, float | None]] = {
    "PhySO (units)": {0.0: 58.4, 0.001: 58.4, 0.01: 57.9, 0.1: 53.4},
    "AI Feynman": {0.0: 55.8, 0.001: 33.0, 0.01: 13.0, 0.1: 1.0},
    "AFP_FE": {0.0: 27.0, 0.001: 22.0, 0.01: 21.0, 0.1: 13.0},
    "Operon": {0.0: 16.6, 0.001: 13.0, 0.01: 2.0, 0.1: 0.0},
}
#: Columns of the SRBench tsv shown in the per-equation table (tsv column -> label).
SRBENCH_COLUMNS: dict[str, str] = {
    "AIFeynman_sym_pct": "AI Feynman", "AFP_FE_sym_pct": "AFP_FE",
    "GP-GOMEA_sym_pct": "GP-GOMEA", "Operon_sym_pct": "Operon", "gplearn_sym_pct": "gplearn",
}
DEFAULT_SRBENCH_TSV = (Path(__file__).resolve().parents[2] / "benchmarks" / "feynman"
                       / "srbench2021_symbolic_solution_rate_noise0.tsv")


def latest_records(records: Iterable[dict]) -> list[dict]:
    """One record per key (the last one wins)."""
    by_key: dict[str, dict] = {}
    for record in records:
        by_key[str(record.get("key"))] = record
    return list(by_key.values())


def rate(records: Sequence[dict], flag: str) -> float:
    """SRBench averaging of a boolean flag, in %: mean over seeds per equation, then mean."""
    per_equation: dict[str, list[float]] = defaultdict(list)
    for record in records:
        per_equation[record["equation"]].append(1.0 if record.get(flag) else 0.0)
    if not per_equation:
        return float("nan")
    return 100.0 * statistics.fmean(statistics.fmean(v) for v in per_equation.values())


def _quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (linear interpolation), NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]) \
        if 0 < q < 1 else float(min(values) if q == 0 else max(values))


def summarize(records: Sequence[dict]) -> list[dict]:
    """One row per (method, noise): counts, exact %, accuracy %, median and 90th percentile
    seconds, over all tasks and over the exact ones."""
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["method"], float(record["noise"]))].append(record)
    rows = []
    for (method, noise), group in sorted(groups.items()):
        seconds = [r["seconds"] for r in group if r.get("seconds") is not None]
        exact_s = [r["seconds"] for r in group if r.get("exact") and r.get("seconds") is not None]
        rows.append({
            "method": method, "noise": noise, "tasks": len(group),
            "equations": len({r["equation"] for r in group}),
            "failed": sum(1 for r in group if r.get("status") != "ok"),
            "timeouts": sum(1 for r in group if r.get("status") == "timeout"),
            "exact": rate(group, "exact"), "sympy_only": rate(group, "symbolic"),
            "accuracy": rate(group, "accuracy"),
            "median_seconds": _quantile(seconds, 0.5), "p90_seconds": _quantile(seconds, 0.9),
            "exact_median_seconds": _quantile(exact_s, 0.5),
            "exact_p90_seconds": _quantile(exact_s, 0.9),
        })
    return rows


def load_srbench_table(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """SRBench 2021 per-data-set exact rates: data set -> {label: % of seeds}; NA is left out."""
    table = Path(path) if path is not None else DEFAULT_SRBENCH_TSV
    if not table.is_file():
        log.warning("SRBench table not found: %s", table)
        return {}
    with table.open(encoding="utf-8-sig", newline="") as handle:
        return {row["dataset"]: {label: float(row[col]) for col, label in SRBENCH_COLUMNS.items()
                                 if row.get(col) not in (None, "", "NA")}
                for row in csv.DictReader(handle, delimiter="\t")}


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN check


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_section(rows: Sequence[dict]) -> list[str]:
    """Markdown: rates per method and noise level."""
    header = ["method", "noise", "equations", "tasks", "failed", "timeouts", "exact %",
              "sympy-only %", "accuracy %", "median s", "p90 s", "exact: median s",
              "exact: p90 s"]
    body = [[r["method"], f"{r['noise']:g}", str(r["equations"]), str(r["tasks"]),
             str(r["failed"]), str(r["timeouts"]), _fmt(r["exact"]), _fmt(r["sympy_only"]),
             _fmt(r["accuracy"]), _fmt(r["median_seconds"]), _fmt(r["p90_seconds"]),
             _fmt(r["exact_median_seconds"]), _fmt(r["exact_p90_seconds"])] for r in rows]
    return _markdown_table(header, body)


def srbench_same_set(records: Sequence[dict], srbench: dict[str, dict[str, float]]) -> list[str]:
    """Markdown: SRBench methods' mean exact rate over the equations we ran that it has."""
    ours = {srbench_name(r["equation"]) for r in records if float(r["noise"]) == 0.0}
    shared = sorted(ours & set(srbench))
    if not shared:
        return ["No equation of this run is in the SRBench 2021 table."]
    body = []
    for label in SRBENCH_COLUMNS.values():
        values = [srbench[name][label] for name in shared if label in srbench[name]]
        body.append([label, _fmt(statistics.fmean(values)) if values else "n/a",
                     str(len(values))])
    return [f"SRBench 2021 exact rates (noise 0) on the {len(shared)} equations of this run "
            "that it also ran (NA values in its table are left out):", "",
            *_markdown_table(["method", "exact %", "equations"], body)]


def per_equation_section(records: Sequence[dict], srbench: dict[str, dict[str, float]]) -> list[str]:
    """Markdown: per equation at noise 0, our exact % over seeds beside SRBench 2021's."""
    noise0 = [r for r in records if float(r["noise"]) == 0.0]
    methods = sorted({r["method"] for r in noise0})
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in noise0:
        cells[(r["equation"], r["method"])].append(100.0 if r.get("exact") else 0.0)
    equations = list(dict.fromkeys(r["equation"] for r in noise0))
    header = ["equation", *[f"{m} (seeds)" for m in methods], *SRBENCH_COLUMNS.values()]
    body = []
    for eq in equations:
        ours = [f"{_fmt(statistics.fmean(cells[(eq, m)]), 0)} ({len(cells[(eq, m)])})"
                if cells[(eq, m)] else "" for m in methods]
        theirs = srbench.get(srbench_name(eq), {})
        body.append([eq, *ours, *[_fmt(theirs[l], 0) if l in theirs else "-"
                                  for l in SRBENCH_COLUMNS.values()]])
    return _markdown_table(header, body)


def noise_anchor_section(rows: Sequence[dict]) -> list[str]:
    """Markdown: our exact % per noise level beside the published anchors."""
    noises = sorted({0.0, 0.001, 0.01, 0.1} | {float(r["noise"]) for r in rows})
    ours: dict[str, dict[float, float]] = defaultdict(dict)
    for r in rows:
        ours[r["method"]][float(r["noise"])] = r["exact"]
    cell = lambda v: "-" if v is None or v != v else f"{v:.1f}"  # noqa: E731
    lines = ["| method | " + " | ".join(f"noise {g:g}" for g in noises) + " |",
             "|---|" + "---|" * len(noises)]
    for method, by_noise in sorted(ours.items()):
        lines.append(f"| {method} (this run) | "
                     + " | ".join(cell(by_noise.get(g)) for g in noises) + " |")
    for method, by_noise in PUBLISHED_EXACT_BY_NOISE.items():
        lines.append(f"| {method} (published) | "
                     + " | ".join(cell(by_noise.get(g)) for g in noises) + " |")
    return lines


def write_report(directory: str | Path, *, srbench_tsv: str | Path | None = None,
                 plot: bool = True) -> Path:
    """Write ``report.md`` (and ``rates.png`` when ``plot``) into ``directory``."""
    directory = Path(directory)
    results = directory / RESULTS_FILE
    if not results.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} in {directory}")
    records = latest_records(read_results(results))
    rows = summarize(records)
    srbench = load_srbench_table(srbench_tsv)
    lines = ["# Feynman benchmark report", "",
             f"{len(records)} results from `{results}`.", "",
             "Rates are SRBench 2021 style: mean over seeds per equation, then mean over "
             "equations. *exact* = test R^2 > 0.5 and the SRBench sympy rule and the numeric "
             "refit agree; *sympy-only* = the SRBench sympy rule alone (what SRBench "
             "reported); *accuracy* = test R^2 > 0.999. *median s* and *p90 s* are the "
             "median and 90th percentile of the method's fit time, over all tasks and over "
             "the exact ones.",
             "", "## Rates by method and noise level", "", *summary_section(rows), "",
             "## Published anchors", "",
             "SRBench 2021 (La Cava et al. 2021) exact rates at noise 0, over its whole "
             "ground-truth set: " + ", ".join(f"{k} {v:.1f}%" for k, v in
                                              PUBLISHED_EXACT_NOISE0.items()) + ".", "",
             *srbench_same_set(records, srbench), "",
             "## Exact % by noise level beside published anchors", "",
             "PhySO is told the units (compare with `kansr-units`); SRBench 2021's methods "
             "are not. Published values marked '~' in the sources are read off figures.", "",
             *noise_anchor_section(rows), "",
             "## Per equation (noise 0)", "",
             "Ours: exact % over the seeds run (count in brackets). SRBench 2021 columns: % of "
             "its 10 seeds solved exactly at noise 0; '-' = not in SRBench 2021 or NA there.", "",
             *per_equation_section(records, srbench), ""]
    report = directory / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    if plot:
        plot_rates(rows, directory / "rates.png")
    return report


def plot_rates(rows: Sequence[dict], path: str | Path) -> Path:
    """Grouped bars of exact and accuracy % by method and noise, with published anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r["method"] for r in rows})
    noises = sorted({r["noise"] for r in rows})
    lookup = {(r["method"], r["noise"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), sharey=True)
    width = 0.8 / max(1, len(noises))
    for ax, metric in zip(axes, ("exact", "accuracy")):
        for j, noise in enumerate(noises):
            heights = [lookup.get((m, noise), {}).get(metric, 0.0) for m in methods]
            positions = [i + (j - (len(noises) - 1) / 2) * width for i in range(len(methods))]
            ax.bar(positions, [0.0 if h != h else h for h in heights], width,
                   label=f"noise {noise:g}")
        ax.set_xticks(range(len(methods)), methods)
        ax.set_title(f"{metric} solution rate")
        ax.set_ylim(0, 100)
    for k, (name, value) in enumerate(PUBLISHED_EXACT_NOISE0.items()):
        axes[0].axhline(value, color=f"C{k + 4}", linestyle="--", linewidth=1,
                        label=f"{name} {value:.1f}% (published, SRBench 2021, noise 0)")
    axes[0].set_ylabel("% of equations (mean over seeds)")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2,
                  frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
