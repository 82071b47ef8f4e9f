"""What a reply's failure tells the Realtime client: pure, one table.

A reply can fail in ways the client should hear about precisely (its prompt is longer than the
model's context window: ``context_length_exceeded``, an ``invalid_request_error``; speech synthesis
is not installed: the message says so and no audio is faked) or because of a bug in the server,
where the client gets a plain ``response_failed`` and the traceback goes to the log, never to the
client. The adapter catches, asks :func:`response_failure`, and feeds the answer to
:meth:`~labkit.realtime.machine.RealtimeSession.fail_response`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..audio.errors import ASRUnavailable, TTSUnavailable
from ..model.profiles import ContextLengthExceeded

__all__ = ["ResponseFailure", "response_failure", "transcription_failure", "TRANSCRIPTION_FAILED"]

#: What a transcription that failed for an unexpected reason says (an unavailable recogniser says why).
TRANSCRIPTION_FAILED = "The speech recogniser failed."


@dataclass(frozen=True)
class ResponseFailure:
    message: str
    code: str = "response_failed"
    type: str = "server_error"
    unexpected: bool = False            # a bug: log the traceback (the client gets only the message)


def response_failure(exc: Exception) -> ResponseFailure:
    if isinstance(exc, ContextLengthExceeded):
        return ResponseFailure(str(exc), code="context_length_exceeded", type="invalid_request_error")
    if isinstance(exc, TTSUnavailable):           # the message is ours (what is missing), never a fake voice
        return ResponseFailure(str(exc))
    return ResponseFailure("The server had an error while generating this response.", unexpected=True)


def transcription_failure(exc: Exception) -> tuple[str, bool]:
    """(message for ``...transcription.failed``, unexpected?): a recogniser that is not installed or is
    busy (a bounded queue) says so at once; anything else is a bug, logged, with a plain message."""
    if isinstance(exc, ASRUnavailable):
        return str(exc), False
    return TRANSCRIPTION_FAILED, True
