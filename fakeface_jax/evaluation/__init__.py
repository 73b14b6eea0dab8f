"""Evaluation: metrics, reports, evaluate and the cross-dataset protocol."""
