"""Drift detection against the frozen reference profile of a ModelVersion."""
