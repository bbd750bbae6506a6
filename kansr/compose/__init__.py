"""The composition stage: choose edge formulas, compose them, refit and snap constants."""
