"""Latency plots: distributions (CDF), token arrival waterfalls, and scatter with a fitted line.

Each function draws on the ``ax`` it is given (or a new one) and returns it, so notebooks can
combine them in one figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..clients.timing import TimedStream

__all__ = ["cdf", "waterfall", "scatter_fit"]


def _axes(ax):
    return ax if ax is not None else plt.subplots(figsize=(7, 3.2))[1]


def cdf(samples: Mapping[str, Sequence[float]], *, ax=None, xlabel: str = "milliseconds", percentiles=(50, 99)):
    """One empirical CDF per named sample, with its percentiles marked: tails show, not just means."""
    ax = _axes(ax)
    for k, (name, values) in enumerate(samples.items()):
        v = np.sort(np.asarray([x for x in values if x is not None], float))
        if v.size == 0:
            continue
        ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=name, color=f"C{k}")
        for p in percentiles:
            ax.axvline(np.percentile(v, p), color=f"C{k}", ls=":", lw=0.8)
    ax.set(xlabel=xlabel, ylabel="share of requests", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return ax


def waterfall(streams: Sequence[TimedStream], *, ax=None, labels: Sequence[str] | None = None):
    """Each request a row: a line from send to last token, a dot per token as it arrived."""
    ax = _axes(ax)
    for row, stream in enumerate(streams):
        times = [t.t for t in stream.tokens]
        if not times:
            continue
        ax.hlines(row, 0, times[-1], color="0.8", lw=1)
        ax.plot(times, [row] * len(times), "|", color=f"C{row % 10}", ms=6)
        ax.plot(times[0], row, "o", color=f"C{row % 10}", ms=4)
    ax.set(xlabel="seconds since the request was sent", yticks=range(len(streams)),
           yticklabels=labels or [f"#{k}" for k in range(len(streams))])
    ax.invert_yaxis()
    return ax


def scatter_fit(x: Sequence[float], y: Sequence[float], *, ax=None, xlabel: str = "", ylabel: str = "",
                label: str = "measured"):
    """Points and their least-squares line; returns the axes and ``(slope, intercept)``."""
    ax = _axes(ax)
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    ax.plot(x, y, "o", ms=4, label=label)
    grid = np.linspace(x.min(), x.max(), 50)
    ax.plot(grid, slope * grid + intercept, "-", label=f"fit: {slope:.4g} per unit + {intercept:.3g}")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    return ax, (slope, intercept)
