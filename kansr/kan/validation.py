"""Input checks shared by training and the estimator: fail early with a message that helps."""

from __future__ import annotations

import numpy as np
import torch


def _numeric_tensor(name: str, a) -> torch.Tensor:
    """Tensor view of array-like `a`, or a TypeError naming what is not numeric."""
    if torch.is_tensor(a):
        if a.is_complex() or not (a.is_floating_point() or a.dtype != torch.bool):
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {a.dtype}")
        return a
    arr = np.asarray(a)
    if arr.dtype.kind == "O":  # e.g. a list mixing numbers and strings
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            msg = f"{name} must be numeric; could not convert it to float ({err})"
            raise TypeError(msg) from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric (int or float), got numpy dtype {arr.dtype}")
    return torch.as_tensor(arr)


def as_2d_float(name: str, a, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Convert array-like to a finite (N, C) tensor with N >= 1; 1-D input becomes (N, 1)."""
    t = _numeric_tensor(name, a)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(dtype=dtype, device=device)
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = torch.nonzero(bad.any(dim=1)).flatten()[:5].tolist()
        kind = "NaN" if torch.isnan(t).any() else "inf"
        raise ValueError(f"{name} contains {kind} values (first bad rows: {rows}); "
                         "drop or impute them before fitting")
    return t


def check_xy(X, y, n_in: int, n_out: int, *, dtype: torch.dtype,
             device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a training pair for a network with n_in inputs and n_out outputs.

    X: (N, n_in); y: (N, n_out), or (N,) when n_out == 1. A (N,) target for a multi-output
    network, or (N, 1) against (N, m), is an error, never a silent broadcast.
    """
    Xt = as_2d_float("X", X, dtype=dtype, device=device)
    y_arr = _numeric_tensor("y", y)
    if y_arr.ndim == 1 and n_out != 1:
        raise ValueError(f"y has shape {tuple(y_arr.shape)} but the network has {n_out} outputs; "
                         f"pass y with shape (N, {n_out})")
    yt = as_2d_float("y", y_arr, dtype=dtype, device=device)
    if Xt.shape[1] != n_in:
        raise ValueError(f"X has {Xt.shape[1]} columns but the network's width starts with "
                         f"{n_in} inputs")
    if yt.shape[1] != n_out:
        raise ValueError(f"y has {yt.shape[1]} columns but the network has {n_out} outputs")
    if len(Xt) != len(yt):
        raise ValueError(f"X has {len(Xt)} rows but y has {len(yt)}")
    return Xt, yt
