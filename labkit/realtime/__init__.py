"""The Realtime API: the emulator's pure session machine, session config, and an event validator."""

from .machine import RealtimeSession
from .session import RealtimeError, SessionConfig

__all__ = ["RealtimeSession", "RealtimeError", "SessionConfig", "validate_server_event"]


def __getattr__(name: str):
    # the validator imports the OpenAI SDK's Realtime models (hundreds of pydantic classes): the tests
    # use it, the server never does, so it is imported on first use and not with every server
    if name == "validate_server_event":
        from .validate import validate_server_event
        return validate_server_event
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
