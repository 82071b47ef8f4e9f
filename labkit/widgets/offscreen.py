"""A matplotlib figure drawn off-screen into an ipywidgets ``Image``: the widgets' one way to show a plot.

The figure uses the Agg canvas directly and is never registered with pyplot, so redrawing it many
times a second leaks nothing and never pops up a second copy of the plot below the cell.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["OffscreenPlot"]


class OffscreenPlot:
    def __init__(self, figsize: tuple[float, float], dpi: int = 90, width: str = "100%"):
        self.fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=width))

    def show(self) -> None:
        """Render the figure into the Image widget."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        self.image.value = buf.getvalue()

    def snapshot(self):
        """The last rendering as a static image (stored in a notebook's output, unlike a widget)."""
        from IPython.display import Image
        return Image(bytes(self.image.value))
