"""Thin ASGI adapters over labkit's pure cores, and the helpers that run them."""

from .app import create_app
from .connections import ConnectionManager
from .runner import LabServer, lab_server, serve, stop_at_exit
from .state import ServerConfig, ServerStats

__all__ = ["create_app", "ConnectionManager", "LabServer", "serve", "lab_server", "stop_at_exit", "ServerConfig", "ServerStats"]
