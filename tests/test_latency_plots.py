"""Plots draw what they are given (and nothing leaks between tests)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from labkit.clients.timing import TimedStream, TimedToken  # noqa: E402
from labkit.latency.plots import cdf, scatter_fit, waterfall  # noqa: E402


def test_plots():
    fig, axes = plt.subplots(1, 3)
    cdf({"a": [1, 2, 3], "b": [2, None, 4]}, ax=axes[0])
    assert len(axes[0].get_lines()) >= 2
    streams = [TimedStream(tokens=[TimedToken("x", t, t) for t in (0.1, 0.2, 0.3)]), TimedStream()]
    waterfall(streams, ax=axes[1])
    _, (slope, intercept) = scatter_fit([0, 1, 2, 3], [1, 3, 5, 7], ax=axes[2])
    assert slope == pytest.approx(2) and intercept == pytest.approx(1)
    plt.close(fig)


def test_table_keeps_whole_numbers_whole():
    from labkit.display import table

    text = repr(table([{"a": 150.0, "b": 1540.0, "c": 2.50, "d": 0.0004, "e": None}], digits=0))
    assert "150" in text and "1,540" in text and "15 " not in text.split("\n")[1] + " "
    assert repr(table([{"x": 2.5}], digits=3)).split("\n")[1].strip() == "2.5"
