"""Helpers for streamed responses: keep-alives during silence, and SSE responses with the right headers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from starlette.responses import StreamingResponse

from ..protocol.sse import SSE_HEADERS

__all__ = ["with_heartbeats", "sse_response"]

T = TypeVar("T")


async def with_heartbeats(source: AsyncIterator[T], interval_s: float, heartbeat: Callable[[], T]) -> AsyncIterator[T]:
    """Yield from ``source``; whenever it is silent for ``interval_s``, yield ``heartbeat()`` instead.

    Proxies and load balancers close idle connections (nginx after 60 s by default), and a long
    time-to-first-token is exactly such a silence. The pending ``anext`` is kept across heartbeats,
    never cancelled, so no item is lost; if the consumer goes away, the source is closed.
    """
    pending: asyncio.Task | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            if not done:
                yield heartbeat()
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(body: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> StreamingResponse:
    """A ``text/event-stream`` response with ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``."""
    return StreamingResponse(body, media_type="text/event-stream; charset=utf-8",
                             headers={**SSE_HEADERS, **(headers or {})})
