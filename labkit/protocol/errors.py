"""The one shape of a reportable error: a machine-readable ``code`` and a human ``message``.

Every protocol of the lab reports mistakes that way (the app chat's ``error`` frame, a room's, the
Realtime API's ``error`` event, a resume that finds nothing), so their exceptions share this base:
a handler can catch :class:`CodedError` and render ``{"code": e.code, "message": e.message}``
whatever raised it. Each subclass also keeps the built-in base it had (``ValueError``, ...).
"""

from __future__ import annotations

__all__ = ["CodedError"]


class CodedError(Exception):
    """An error with a ``code`` (machine-readable, may be None) and a ``message`` (for people)."""

    def __init__(self, code: str | None, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message}
