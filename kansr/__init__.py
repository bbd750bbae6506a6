"""kansr: symbolic regression with a Kolmogorov-Arnold Network front end."""

__version__ = "0.1.0"
