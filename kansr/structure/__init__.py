"""Structure before search: dimensional analysis (units, Buckingham pi groups).

Stage input: variable names and their units; output: a :class:`DimensionalReduction`, plain
data that maps a problem to its dimensionless form and a formula back.
"""

from kansr.structure.pi_groups import DimensionalReduction, buckingham_pi
from kansr.structure.units import (
    DEFAULT_UNITS_TABLE,
    FEYNMAN_BASES,
    SI_BASES,
    UNITS,
    Dimension,
    as_dimension,
    load_units_table,
    parse_unit,
)

__all__ = [
    "DEFAULT_UNITS_TABLE",
    "FEYNMAN_BASES",
    "SI_BASES",
    "UNITS",
    "Dimension",
    "DimensionalReduction",
    "as_dimension",
    "buckingham_pi",
    "load_units_table",
    "parse_unit",
]
