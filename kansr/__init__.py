"""kansr: symbolic regression with a Kolmogorov-Arnold Network front end.

Pipeline (one subpackage per stage): `kansr.kan` (network) -> `kansr.graph` (DAG) ->
`kansr.match` (function library, edge matching) and `kansr.fallback` (SR engines) ->
`kansr.compose` (formula choice, composition, constants) -> `kansr.KANSR` (estimator);
`kansr.verify` checks a law against a known one; `kansr.bench` runs the Feynman benchmark.
"""

__version__ = "0.1.0"

from .estimator import KANSR  # noqa: E402

__all__ = ["KANSR", "__version__"]
