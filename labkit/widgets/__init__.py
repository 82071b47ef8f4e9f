"""Notebook widgets (ipywidgets + matplotlib)."""

from .chat import ChatBox
from .rms import LiveVAD

__all__ = ["ChatBox", "LiveVAD"]
