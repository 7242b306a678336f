"""Evaluation: batched generation on held-out rows and the metrics that score it."""
