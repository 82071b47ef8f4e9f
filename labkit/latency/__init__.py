"""Latency measurement: summaries of samples (metrics, load runners and plots grow here)."""

from .stats import PERCENTILES, summarize

__all__ = ["summarize", "PERCENTILES"]
