"""Notebook widgets (ipywidgets + matplotlib)."""

from .chat import ChatBox

__all__ = ["ChatBox"]
