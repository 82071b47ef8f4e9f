"""SSE responses with the right headers.

Keep-alives during silence are sent by the streams themselves, where the wait is known: the model
server fills a long wait in its schedule with comments, and a reply's readers wake up on a timeout
(``StreamHub.follow(heartbeat_s=...)``). Neither needs a task per token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from ..protocol.sse import SSE_HEADERS

__all__ = ["sse_response"]

def sse_response(body: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> StreamingResponse:
    """A ``text/event-stream`` response with ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``."""
    return StreamingResponse(body, media_type="text/event-stream; charset=utf-8",
                             headers={**SSE_HEADERS, **(headers or {})})
