"""Tokens with arrival times: what every labkit client yields, so any transport can be measured."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["TimedToken", "TimedStream", "collect", "Clock"]


class Clock:
    """Seconds since a request started (``perf_counter``: monotonic and precise), plus wall time."""

    def __init__(self) -> None:
        self.start_wall = time.time()
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start


@dataclass(frozen=True)
class TimedToken:
    text: str
    t: float                          # seconds since the request was sent
    wall: float                       # time.time() at arrival
    seq: int | None = None            # the server's sequence number, where the transport has one
    sent_wall: float | None = None    # time.time() when the app server sent it, where known
    socket_wall: float | None = None  # time.time() clock: when the kernel received it (labkit.clients.arrival)

    @property
    def delivery_delay(self) -> float | None:
        """Arrival at the application minus the server's send time (same machine, same clock)."""
        return None if self.sent_wall is None else self.wall - self.sent_wall

    @property
    def socket_delivery_delay(self) -> float | None:
        """Arrival at the client's socket (the kernel's stamp) minus the server's send time: the
        transport's delay without the client process's own wait for a core."""
        return None if self.sent_wall is None or self.socket_wall is None else self.socket_wall - self.sent_wall


@dataclass
class TimedStream:
    """One completed request: its tokens with times, and the headline numbers."""

    tokens: list[TimedToken] = field(default_factory=list)
    total_s: float = 0.0              # from sending the request to the end of the response
    finish_reason: str | None = None
    transport: str = ""
    start_wall: float | None = None   # time.time() when the client started (before connecting), where known
    request_wall: float | None = None  # time.time() when the request had been written, where known

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)

    @property
    def ttft_s(self) -> float | None:
        """Time to first token: to the first token that has content."""
        return next((t.t for t in self.tokens if t.text), None)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


async def collect(tokens: AsyncIterator[TimedToken], transport: str = "") -> TimedStream:
    """Drain a client's token iterator into a :class:`TimedStream` (``total_s`` is the last arrival)."""
    result = TimedStream(transport=transport)
    async for tok in tokens:
        result.tokens.append(tok)
    result.total_s = result.tokens[-1].t if result.tokens else 0.0
    result.finish_reason = getattr(tokens, "finish_reason", None)
    return result
