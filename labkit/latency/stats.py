"""Summaries of latency samples: percentiles, mean, count. Values in, plain dicts out (JSON-ready)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["summarize", "PERCENTILES"]

PERCENTILES = (50, 90, 99)


def summarize(values: Iterable[float], scale: float = 1.0, digits: int = 3) -> dict:
    """``{"count", "mean", "p50", "p90", "p99", "max"}`` of ``values`` times ``scale`` (1000: s → ms).

    Percentiles use linear interpolation (numpy's default), so p99 of 100 samples sits between the
    two largest values: with few samples, p99 is close to the maximum. An empty input gives count 0
    and None elsewhere.
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float) * scale
    if arr.size == 0:
        return {"count": 0, "mean": None, **{f"p{q}": None for q in PERCENTILES}, "max": None}
    out = {"count": int(arr.size), "mean": round(float(arr.mean()), digits)}
    for q in PERCENTILES:
        out[f"p{q}"] = round(float(np.percentile(arr, q)), digits)
    out["max"] = round(float(arr.max()), digits)
    return out
