"""Oracles for the structure tests: a trained network as a function of the user's inputs."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..kan import KAN

# Rows per forward pass: bounds the memory of the basis tensors on large test batches.
CHUNK = 65536


def network_oracle(model: KAN, x_center=0.0, x_scale=1.0, y_center: float = 0.0,
                   y_scale: float = 1.0, output: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """f(X) = y_scale * model((X - x_center) / x_scale)[:, output] + y_center.

    X: (N, d) in the user's units; returns (N,) float64. The centres and scales are the ones
    the network was trained with (the estimator's x_center_, x_scale_, y_center_, y_scale_),
    e.g. ``network_oracle(est.kan_, est.x_center_, est.x_scale_, est.y_center_, est.y_scale_)``.
    """
    x_center = np.asarray(x_center, dtype=np.float64)
    x_scale = np.asarray(x_scale, dtype=np.float64)

    def oracle(X: np.ndarray) -> np.ndarray:
        Xs = (np.asarray(X, dtype=np.float64) - x_center) / x_scale
        out = np.empty(len(Xs))
        with torch.no_grad():
            for start in range(0, len(Xs), CHUNK):
                xb = torch.as_tensor(Xs[start:start + CHUNK], dtype=model.dtype,
                                     device=model.device)
                out[start:start + CHUNK] = model(xb)[:, output].cpu().numpy()
        return out * y_scale + y_center

    return oracle
