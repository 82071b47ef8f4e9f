"""SSE responses with the right headers.

Keep-alives during silence are sent by the streams themselves, where the wait is known: the model
server fills a long wait in its schedule with comments, and a reply's readers get a heartbeat after
a silence (``StreamHub.open_push(heartbeat_s=...)``). Neither needs a task per token.

:class:`PushedEventStream` is the relay's own: its events are written by the reply's producer, in
the step in which it read them (:meth:`~labkit.server.streamhub.StreamHub.open_push`), not by this
response's task, which only starts the response, watches for the client leaving and ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.responses import Response

from ..protocol.sse import SSE_HEADERS

__all__ = ["PushedEventStream"]

MEDIA_TYPE = "text/event-stream; charset=utf-8"


class PushedEventStream(Response):
    """A ``text/event-stream`` response written from outside its own task.

    ``open(write)`` is called once the headers are sent; it returns a handle with
    ``done`` (a future, set when the stream ends) and ``close()``, and calls ``write(chunk)`` (a coroutine: the
    ASGI send of one body chunk, which returns True) whenever it has events; ``first`` goes out in the
    same write as the first chunk (one write less per stream). The response ends when
    the handle ends, or at once when the client disconnects (then ``close()`` counts the reader as
    gone: it is closed in the step that sees the disconnect). The client sees what a ``StreamingResponse``
    of the same events would send: the same headers and bytes.
    """

    media_type = MEDIA_TYPE

    def __init__(self, open: Callable[[Callable[[bytes], Awaitable[bool]]], object], first: bytes = b"",
                 headers: dict[str, str] | None = None):
        self.open, self.first = open, first
        self.status_code, self.background = 200, None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        first = [self.first]             # goes out with the first events (there are always some: a stage)

        async def write(chunk: bytes) -> bool:
            if first:
                chunk = first.pop() + chunk
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            return True

        handle = self.open(write)
        gone = asyncio.ensure_future(_disconnected(receive, handle.close))
        try:
            await asyncio.wait((handle.done, gone), return_when=asyncio.FIRST_COMPLETED)
            left = gone.done()
        finally:
            handle.close()
            gone.cancel()
        if left:
            return                                    # nobody to end it for
        if handle.done.exception() is not None:
            raise handle.done.exception()
        await send({"type": "http.response.body", "body": first.pop() if first else b"", "more_body": False})


async def _disconnected(receive, close: Callable[[], None]) -> None:
    """Wait for the client to leave, then close the handle at once (in this step: before a timer or a
    producer can write to it again)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    close()
