"""The network stage: B-spline KAN with sum and product nodes, training, pruning, plotting."""

from .batched import fit_batched
from .init import additive_fit_error, init_separable_product, product_fit_error
from .layer import KANLayer
from .symbolic import torch_function
from .network import KAN, Trace, normalize_width
from .plot import plot
from .prune import Attribution, attribution, prune, remove_node, shrink
from .train import History, compile_kernels, fit

__all__ = ["KAN", "KANLayer", "Trace", "History", "Attribution", "fit", "prune", "attribution",
           "remove_node", "shrink", "normalize_width", "torch_function", "plot",
           "init_separable_product", "additive_fit_error", "product_fit_error",
           "compile_kernels"]
