"""One Feynman equation end to end with KANSR on a given device, scored as the benchmark does.

    python benchmarks/gpu/feynman_one.py [--equation I.12.1] [--devices cuda,cpu]
                                         [--time-limit 60] [--seed 0] [--out PATH]

Data as `kansr bench feynman` makes it (`generate_data`: SRBench 2021 sampling, seed
`--seed`, no noise); the estimator as the benchmark's kansr method builds it
(`KANSR(random_state=seed, max_time=time_limit)`) plus `device=`; the verdict as the
benchmark's (`verify.check`: exact = symbolic and numeric, when R^2 on the test rows is
above 0.5). One markdown row per device: found formula, exact, R^2 test, seconds.
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from kansr import KANSR
from kansr.bench.feynman import generate_data, load_equations, select_equations
from kansr.bench.records import r2_score
from kansr.verify import check, evaluate, rename_to_plain, round_floats


def run(equation, device: str, seed: int, time_limit: float) -> list[str]:
    data = generate_data(equation, seed)
    names = list(equation.variables)
    t0 = time.perf_counter()
    model = KANSR(random_state=seed, max_time=time_limit, device=device)
    model.fit(data.X_train, data.y_train, variable_names=names)
    seconds = time.perf_counter() - t0
    expr = rename_to_plain(model.sympy(), names)
    r2 = r2_score(data.y_test, evaluate(expr, equation.symbols, data.X_test))
    exact = False
    if r2 is not None and r2 > 0.5:
        verdict = check(expr, equation.expr, equation.symbols, equation.ranges,
                        rng=np.random.default_rng([seed, 7919]))
        exact = verdict.recovered
    net = model.kan_.device.type
    return [equation.id, device, f"`{equation.formula}`", f"`{round_floats(expr)}`",
            "yes" if exact else "no", "n/a" if r2 is None else f"{r2:.12f}", f"{seconds:.1f}",
            f"{net}, {model.kan_}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--equation", default="I.12.1", help="an id, or several, comma-separated")
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1,
                    help="KANSR's n_threads (its default, 1); the benchmark runs so too")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    equations = select_equations(load_equations(), args.equation.split(","))
    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA not available: the GPU rows are skipped")
        devices.remove("cuda")
    header = ["equation", "device", "true", "found (rounded)", "exact", "R^2 test", "seconds",
              "network"]
    rows = []
    for equation in equations:
        for device in devices:
            try:
                rows.append(run(equation, device, args.seed, args.time_limit))
            except Exception as exc:  # noqa: BLE001 - the row says what failed
                traceback.print_exc()
                rows.append([equation.id, device, f"`{equation.formula}`",
                             f"error: {type(exc).__name__}: {str(exc)[:300]}", "no", "", "",
                             ""])
            print(" | ".join(rows[-1]), flush=True)
            text = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                             + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
            if args.out:  # after every row: a run cut short keeps what it finished
                Path(args.out).write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
