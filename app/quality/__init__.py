"""Evaluation, tuning, benchmarks and judgments: what the app measures about its own search."""
