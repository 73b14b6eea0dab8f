"""Experiments: sweeps, cross-validation, learning curves and analyses of the data."""
