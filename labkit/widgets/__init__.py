"""Notebook widgets (ipywidgets + matplotlib)."""

from .chat import ChatBox
from .dashboard import Dashboard
from .rms import LiveVAD

__all__ = ["ChatBox", "Dashboard", "LiveVAD"]
