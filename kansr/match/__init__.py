"""Stage 4: match trained KAN edges against a library of primitive functions.

Public API::

    load_library(spec)                  # None -> default, path -> TOML, Library -> itself
    Library, Primitive                  # the primitive library
    match_edge(x, y, library, ...)      # ranked list[EdgeFit] for one edge
    fit_primitive(x, y, prim, ...)      # best c*f(a*x+b)+d for one primitive
    match_composite(x, y, library, ...) # best c*f(A*g(x)+B)+d, two primitives composed
    match_nested(x, y, fits, library)   # best c*f(A*g(a*x+b)+B)+d, inner g from direct fits
"""

from kansr.match.composite import match_composite, match_nested
from kansr.match.edge import EdgeFit, fit_const, fit_primitive, match_edge, rank_fits, score_fit
from kansr.match.library import Library, LibraryError, Primitive, default_library_path, load_library

__all__ = [
    "EdgeFit",
    "Library",
    "LibraryError",
    "Primitive",
    "default_library_path",
    "fit_const",
    "fit_primitive",
    "load_library",
    "match_composite",
    "match_edge",
    "match_nested",
    "rank_fits",
    "score_fit",
]
