"""Timing of stage-4 edge matching (kansr.match.edge).

Prints, for N = 1000 and N = 200 samples of one KAN-like edge, the median
time of ``fit_primitive`` per primitive and of ``match_edge`` for the whole
default library (which is what the pipeline calls once per edge).

Usage::

    python benchmarks/match_speed.py [--repeats 7] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Callable

import numpy as np

from kansr.match.edge import fit_primitive, match_edge
from kansr.match.library import Library

logger = logging.getLogger("match_speed")


def median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) time of ``fn()`` in ms, via perf_counter / process_time.

    One untimed warm-up call first.  CPU time is less sensitive to other load
    on a shared machine.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def make_edges(n: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A few test edges, x shape (n,), with 1e-4 relative noise (spline-like accuracy)."""
    x = np.sort(rng.uniform(-2.0, 2.0, n))
    clean = {
        "sin": 2.5 * np.sin(1.7 * x + 0.5) - 0.7,
        "x^2": 1.3 * (x - 0.4) ** 2 + 0.2,
        "exp": 0.8 * np.exp(0.9 * x) - 1.0,
        "noise": rng.normal(size=n),
    }
    return {k: (x, y + 1e-4 * np.std(y) * rng.normal(size=n)) for k, y in clean.items()}


def run(n: int, repeats: int, seed: int, lib: Library) -> None:
    """Print the per-primitive and total table for one sample size."""
    edges = make_edges(n, np.random.default_rng(seed))
    x, y = edges["sin"]
    print(f"\nN = {n}  (per-primitive: fit_primitive on the 'sin' edge; median of {repeats})")
    print(f"{'primitive':<10} {'wall ms':>8} {'cpu ms':>8}")
    tot_wall = tot_cpu = 0.0
    for prim in lib:
        wall, cpu = median_ms(lambda: fit_primitive(x, y, prim), repeats)
        tot_wall, tot_cpu = tot_wall + wall, tot_cpu + cpu
        print(f"{prim.name:<10} {wall:8.2f} {cpu:8.2f}")
    print(f"{'sum':<10} {tot_wall:8.2f} {tot_cpu:8.2f}")
    print(f"\nmatch_edge (whole library, top_k=5), N = {n}")
    print(f"{'edge':<10} {'wall ms':>8} {'cpu ms':>8}  best")
    for name, (xe, ye) in edges.items():
        wall, cpu = median_ms(lambda: match_edge(xe, ye, lib), repeats)
        best = match_edge(xe, ye, lib)[0]
        print(f"{name:<10} {wall:8.2f} {cpu:8.2f}  {best.name} (R^2={best.r2:.8f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lib = Library.default()
    for n in (1000, 200):
        run(n, args.repeats, args.seed, lib)


if __name__ == "__main__":
    main()
