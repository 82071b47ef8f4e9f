"""Notebook widgets (ipywidgets + matplotlib; the browser microphone is an anywidget)."""

from .browsermic import BrowserMicrophone
from .chat import ChatBox
from .dashboard import Dashboard
from .rms import LiveVAD

__all__ = ["BrowserMicrophone", "ChatBox", "Dashboard", "LiveVAD"]
