"""Evaluation: batched generation on held-out rows, the metrics that score it, and chat with a run."""
