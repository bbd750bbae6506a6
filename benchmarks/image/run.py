"""Image fitting (x, y) -> grey level: KAN vs MLP, SIREN and random-Fourier-feature MLPs.

    python benchmarks/image/run.py           # 64 x 64 camera image, ~4.5k-parameter models (CPU)
    python benchmarks/image/run.py --full    # 256 x 256, ~70k parameters, more steps (GPU)

The image is scikit-image's bundled `data.camera()` (no download); without scikit-image a
synthetic test pattern is generated in code. Pixel centres map to [-1, 1]^2 and grey levels
to [0, 1]. Every model has about the same number of trainable parameters and is trained
full-batch with Adam (learning rate per family); PSNR = 10 log10(1 / MSE) is reported on the
fitted pixels and, as an interpolation check, on the same image sampled at twice the
resolution. Writes results.md, results.json and reconstructions.png next to this file.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from kansr.baselines import MLP, SIREN, FourierFeatureMLP, width_for_params
from kansr.kan import KAN, fit

log = logging.getLogger("image")
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------- data
def synthetic_image(size: int) -> np.ndarray:
    """A deterministic test pattern with edges, a ramp and fine texture, (size, size) in [0, 1]."""
    t = np.linspace(-1, 1, size)
    x, y = np.meshgrid(t, t, indexing="ij")
    img = 0.5 + 0.25 * np.sin(6 * x + 2 * y)
    img += 0.3 * ((x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.2)
    img += 0.1 * np.sin(40 * x * y) * (y > 0)
    img -= 0.3 * ((np.abs(x + 0.5) < 0.2) & (np.abs(y - 0.5) < 0.3))
    return np.clip(img, 0, 1)


def load_image(size: int) -> tuple[np.ndarray, str]:
    """Grey image (size, size) in [0, 1] and its name: camera() if scikit-image is installed."""
    try:
        from skimage import data, transform
    except ImportError:
        log.warning("scikit-image not installed: using a synthetic test pattern")
        return synthetic_image(size), "synthetic"
    img = data.camera().astype(np.float64) / 255.0
    return transform.resize(img, (size, size), anti_aliasing=True), "skimage camera"


def pixel_grid(size: int, dtype: torch.dtype) -> torch.Tensor:
    """Coordinates (size * size, 2) in [-1, 1]^2, row-major like img.reshape(-1)."""
    t = torch.linspace(-1, 1, size, dtype=dtype)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)


def psnr(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of the clipped prediction for targets in [0, 1]."""
    with torch.no_grad():
        mse = float((model(X).clamp(0, 1) - y).pow(2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-30))


# ---------------------------------------------------------------------- models
@dataclass
class Spec:
    """How to build and train one contender."""

    name: str
    build: Callable[[], torch.nn.Module]
    steps: int
    lr: float


def kan_width(target: int, grid: int) -> list[int]:
    """[2, h, h, 1] KAN whose parameter count (G + k + 2 per edge) is nearest `target`."""
    count = lambda w: (grid + 5) * sum(a * b for a, b in zip(w[:-1], w[1:]))
    return width_for_params(target, 2, 1, depth=3, n_params=count)


def contenders(target: int, n_features: int, kan_grid: int, steps: int, kan_steps: int,
               seed: int, device: str) -> list[Spec]:
    """KAN, MLP (ReLU), SIREN and RFF (s = 3, 30) of about `target` parameters each."""
    mlp_w = width_for_params(target, 2, 1, depth=3)
    rff_count = lambda w: sum((a + 1) * b for a, b in zip([2 * n_features, *w[1:-1]], w[1:]))
    rff_w = width_for_params(target, 2, 1, depth=3, n_params=rff_count)
    kw = {"seed": seed, "device": device}
    return [
        Spec(f"KAN {kan_width(target, kan_grid)} G={kan_grid}",
             lambda: KAN(kan_width(target, kan_grid), grid=kan_grid, **kw), kan_steps, 1e-2),
        Spec(f"MLP {mlp_w} ReLU", lambda: MLP(mlp_w, "relu", **kw), steps, 1e-3),
        Spec(f"SIREN {mlp_w} w0=30", lambda: SIREN(mlp_w, 30.0, **kw), steps, 1e-4),
        Spec(f"RFF s=3 m={n_features} {rff_w}",
             lambda: FourierFeatureMLP(rff_w, n_features, 3.0, **kw), steps, 1e-3),
        Spec(f"RFF s=30 m={n_features} {rff_w}",
             lambda: FourierFeatureMLP(rff_w, n_features, 30.0, **kw), steps, 1e-3),
    ]


@dataclass
class Result:
    model: str
    n_params: int
    steps: int
    psnr_fit: float
    psnr_2x: float
    seconds: float


def train_one(spec: Spec, X: torch.Tensor, y: torch.Tensor, X2: torch.Tensor, y2: torch.Tensor
              ) -> tuple[torch.nn.Module, Result]:
    """Full-batch Adam; KAN grids adapt to the pixels during the first 50 steps."""
    model = spec.build()
    is_kan = isinstance(model, KAN)
    t0 = time.perf_counter()
    fit(model, X, y, steps=spec.steps, opt="adam", lr=spec.lr, update_grid=is_kan,
        grid_update_every=10, stop_grid_update_step=50, progress=False, min_rows_per_param=0)
    if X.is_cuda:
        torch.cuda.synchronize()
    res = Result(spec.name, model.n_params(), spec.steps, psnr(model, X, y), psnr(model, X2, y2),
                 time.perf_counter() - t0)
    log.info("%s: %d params, PSNR %.2f dB (2x: %.2f) in %.0fs", res.model, res.n_params,
             res.psnr_fit, res.psnr_2x, res.seconds)
    return model, res


# ---------------------------------------------------------------------- reporting
def save_figure(img: np.ndarray, models: list[torch.nn.Module], results: list[Result],
                X: torch.Tensor, path: Path) -> None:
    """Ground truth and every reconstruction side by side in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = img.shape[0]
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(2.6 * (1 + len(models)), 3.0))
    axes[0].imshow(img, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"target {size}x{size}", fontsize=8)
    for ax, model, res in zip(axes[1:], models, results):
        with torch.no_grad():
            rec = model(X).clamp(0, 1).reshape(size, size).cpu().numpy()
        ax.imshow(rec, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{res.model.split(' [')[0].split(' m=')[0]}\n{res.psnr_fit:.2f} dB, "
                     f"{res.n_params} params", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_table(results: list[Result], meta: dict, path: Path) -> None:
    lines = ["# Image fitting: KAN vs MLP, SIREN, RFF", "", f"Settings: {json.dumps(meta)}", "",
             "| model | params | Adam steps | PSNR fit (dB) | PSNR at 2x res. (dB) | seconds |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.model} | {r.n_params} | {r.steps} | {r.psnr_fit:.2f} | "
                     f"{r.psnr_2x:.2f} | {r.seconds:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="256 px, ~70k params, 5000 steps (GPU)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--params", type=int, default=None, help="target parameter count")
    ap.add_argument("--steps", type=int, default=None, help="Adam steps for the baselines")
    ap.add_argument("--kan-steps", type=int, default=None, help="Adam steps for the KAN")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    size = args.size or (256 if args.full else 64)
    target = args.params or (70_000 if args.full else 4_500)
    steps = args.steps or (5000 if args.full else 2000)
    kan_steps = args.kan_steps or (5000 if args.full else 300)
    n_features = 128 if args.full else 32
    kan_grid = 10
    img, source = load_image(size)
    img2, _ = load_image(2 * size)
    dt, dev = torch.float32, args.device
    X, y = pixel_grid(size, dt).to(dev), torch.tensor(img.reshape(-1, 1), dtype=dt, device=dev)
    X2 = pixel_grid(2 * size, dt).to(dev)
    y2 = torch.tensor(img2.reshape(-1, 1), dtype=dt, device=dev)
    meta = {"image": source, "size": size, "target_params": target, "baseline_steps": steps,
            "kan_steps": kan_steps, "optimizer": "Adam full batch", "lr": "KAN 1e-2, MLP 1e-3, "
            "SIREN 1e-4, RFF 1e-3", "rff_features": n_features, "device": dev,
            "seed": args.seed}
    models, results = [], []
    for spec in contenders(target, n_features, kan_grid, steps, kan_steps, args.seed, dev):
        model, res = train_one(spec, X, y, X2, y2)
        models.append(model)
        results.append(res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "results": [asdict(r) for r in results]}, indent=1))
    write_table(results, meta, args.out / "results.md")
    save_figure(img, models, results, X, args.out / "reconstructions.png")
    log.info("wrote %s", args.out / "results.md")


if __name__ == "__main__":
    main()
