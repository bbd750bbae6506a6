"""KAN fit speed in float32 on a CUDA GPU against the CPU, on kan_speed.py's shapes.

    python benchmarks/gpu/speed.py [--fit-repeats F] [--cpu-threads 1,16] [--large]
                                   [--large-cpu-threads T] [--fit-cap S] [--profile]
                                   [--devices cuda,cpu] [--out PATH]

For every shape of `benchmarks/kan_speed.py` (its `SHAPES`, data and FLOP estimate) and
every device: forward (no grad) and forward+backward medians, and a 50-step L-BFGS fit
(`kansr.kan.fit(..., update_grid=False, progress=False)`, as kan_speed.py times it) after a
one-step warm-up fit, `--fit-repeats` times, alternating the devices so that a slow spell
hits all alike. CUDA timings synchronise before the clock stops. The CPU runs with the
given thread counts for torch and every BLAS pool (threadpoolctl); its fit is the compiled
numba path (`fused.NetworkMSE`), the GPU's the fused torch op with autograd. `--large` adds
[10, 32, 1] G=10 on 65,536 rows (the CPU there with `--large-cpu-threads`). A fit stops at
`--fit-cap` seconds (`fit`'s deadline, checked after every step): the table then says how
many steps it made, and `ms per eval` stays comparable. `--profile` prints the CUDA kernels
and their counts for a 2-step fit of [2, 5, 1] (torch.profiler). Prints a markdown table and
writes it to --out after every shape.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: kan_speed
import kan_speed as ks  # noqa: E402

import kansr.kan as kk  # noqa: E402

STEPS = 50


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def median_time(fn, device: str, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device) for _ in range(repeats))


class Runner:
    """One shape on one device (and CPU thread count): passes and fits."""

    def __init__(self, width, grid, X, y, device: str, threads: int | None) -> None:
        self.width, self.grid, self.device, self.threads = width, grid, device, threads
        self.X, self.y = X.to(device), y.to(device)
        self.fits: list[tuple[float, int]] = []
        self.passes: dict[str, float] = {}
        self.error: str | None = None

    def label(self) -> str:
        if self.device.startswith("cuda"):
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return f"cpu, {self.threads} thread{'s' if self.threads != 1 else ''}"

    def _limits(self):
        if self.threads is None:
            return threadpool_limits(limits=None)
        torch.set_num_threads(self.threads)
        return threadpool_limits(limits=self.threads)

    def model(self):
        return kk.KAN(self.width, grid=self.grid, k=ks.K_ORDER, seed=0, device=self.device)

    def prepare(self, repeats: int) -> None:
        with self._limits():
            m = self.model()

            def fwd():
                with torch.no_grad():
                    m(self.X)

            def fwd_bwd():
                m.zero_grad(set_to_none=True)
                torch.mean((m(self.X) - self.y) ** 2).backward()

            self.passes = {"fwd": median_time(fwd, self.device, repeats),
                           "fwd_bwd": median_time(fwd_bwd, self.device, repeats)}
            kk.fit(self.model(), self.X, self.y, steps=1, update_grid=False, progress=False)

    def fit_once(self, cap: float) -> None:
        with self._limits():
            fresh, hist = self.model(), []
            seconds = timed(lambda: hist.append(kk.fit(
                fresh, self.X, self.y, steps=STEPS, update_grid=False, progress=False,
                deadline=time.perf_counter() + cap)), self.device)
            h = hist[-1]
            self.fits.append((seconds, h.n_evals, h.train_loss[-1], len(h.train_loss)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--cpu-threads", default="1", help="comma-separated CPU thread counts")
    ap.add_argument("--repeats", type=int, default=20, help="timed fwd and fwd+bwd passes")
    ap.add_argument("--fit-repeats", type=int, default=3)
    ap.add_argument("--large", action="store_true", help="add [10, 32, 1] on 65,536 rows")
    ap.add_argument("--large-cpu-threads", type=int, default=None,
                    help="CPU threads on the large shape (default: the largest --cpu-threads)")
    ap.add_argument("--fit-cap", type=float, default=60.0, help="seconds per fit at most")
    ap.add_argument("--profile", action="store_true", help="CUDA kernel counts of a short fit")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA not available: the GPU rows are skipped")
        devices.remove("cuda")
    threads = [int(t) for t in args.cpu_threads.split(",") if t]
    torch.manual_seed(0)

    shapes = [(w, g, n, False) for w, g, n in ks.SHAPES]
    if args.large:
        shapes.append(([10, 32, 1], 10, 65536, True))
    rows = []
    for width, grid, n, large in shapes:
        X, y = ks.make_data(width[0], n)  # float32, as kan_speed.py
        runners = []
        for device in devices:
            if device == "cpu":
                runners += [Runner(width, grid, X, y, "cpu", t) for t in
                            ([args.large_cpu_threads or max(threads)] if large else threads)]
            else:
                runners.append(Runner(width, grid, X, y, device, None))
        for r in runners:
            try:
                r.prepare(args.repeats)
            except Exception as exc:  # noqa: BLE001 - report it in the table, go on
                r.error = f"{type(exc).__name__}: {exc}"
        for _ in range(1 if large else args.fit_repeats):
            for r in runners:
                if r.error is None:
                    try:
                        r.fit_once(args.fit_cap)
                    except Exception as exc:  # noqa: BLE001
                        r.error = f"{type(exc).__name__}: {exc}"
        f_fwd, f_fb = ks.flops(width, grid, n)
        base = next((r for r in runners if r.device == "cpu" and r.fits), None)
        base_t = min(base.fits)[0] if base is not None else None
        for r in runners:
            shape = f"{width} G={grid} B={n}"
            if r.error is not None:
                rows.append([shape, r.label(), "error: " + r.error[:200]] + [""] * 8)
                print(" | ".join(rows[-1]), flush=True)
                continue
            best, evals, loss, steps = min(r.fits)
            med = statistics.median(f[0] for f in r.fits)
            ratio = "" if base_t is None or r is base else f"{base_t / best:.2f}x"
            rows.append([
                shape, r.label(), f"{r.passes['fwd'] * 1e3:.3f}",
                f"{r.passes['fwd_bwd'] * 1e3:.3f}", f"{best:.3f} / {med:.3f}",
                str(steps) if steps == STEPS else f"{steps} (capped)", str(evals),
                f"{best / evals * 1e3:.3f}", ratio, f"{loss:.2e}",
                f"{f_fb / r.passes['fwd_bwd'] / 1e9:.1f}",
            ])
            print(f"[{time.strftime('%H:%M:%S')}]", " | ".join(rows[-1]), flush=True)
        text = table(rows, args)
        if args.out:  # after every shape: a run cut short keeps the shapes it finished
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
    print("\n" + table(rows, args))
    if args.profile and "cuda" in devices:
        profile()


def table(rows: list[list[str]], args) -> str:
    header = ["shape", "device", "fwd ms", "fwd+bwd ms", f"fit {STEPS} steps s (min / median)",
              "steps", "fit evals", "ms per eval", "speed-up over first CPU row",
              "final train MSE", "fwd+bwd GFLOP/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    info = (f"{dt.datetime.now().isoformat(timespec='seconds')}; {platform.machine()} "
            f"{os.cpu_count()} cores; GPU {gpu}; torch {torch.__version__}; float32; "
            f"fwd/fwd+bwd medians of {args.repeats}; fits: {args.fit_repeats} per device "
            f"(1 on the large shape), alternated, each capped at {args.fit_cap:g} s")
    return "\n".join(lines) + f"\n\nMachine: {info}.\n"


def profile() -> None:
    """Which CUDA kernels a 2-step fit of [2, 5, 1] on 1,000 rows launches, and how often."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    X, y = ks.make_data(2, 1000)
    X, y = X.cuda(), y.cuda()
    kk.fit(kk.KAN([2, 5, 1], seed=0, device="cuda"), X, y, steps=1, update_grid=False,
           progress=False)
    model = kk.KAN([2, 5, 1], seed=0, device="cuda")
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        hist = kk.fit(model, X, y, steps=2, update_grid=False, progress=False)
        torch.cuda.synchronize()
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    # a scalar read (item(), float(t)) is one _local_scalar_dense: a copy to the host and a sync
    syncs = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")
    print(f"\nprofile: 2-step fit of [2, 5, 1], {hist.n_evals} evaluations: "
          f"{kernels} CUDA kernel launches ({kernels / hist.n_evals:.0f} per evaluation), "
          f"{syncs} scalar reads to the host, each a sync ({syncs / hist.n_evals:.1f} per "
          "evaluation)")
    print(events.table(sort_by="count", row_limit=25))


if __name__ == "__main__":
    main()
