"""The Realtime API: the emulator's pure session machine, session config, and an event validator."""

from .machine import RealtimeSession
from .session import RealtimeError, SessionConfig
from .validate import validate_server_event

__all__ = ["RealtimeSession", "RealtimeError", "SessionConfig", "validate_server_event"]
