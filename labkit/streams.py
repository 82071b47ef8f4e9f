"""Resumable streams, pure: a reply is a *resource* that outlives the connection reading it.

The tutorial streams a reply straight from the model into one socket. When that socket drops
(a train enters a tunnel, a laptop sleeps, a proxy times out) the rest of the reply is lost, and
asking again costs a whole new generation. Here the generation writes into a :class:`StreamLog`
and connections only *read* it: a reader that comes back says the last token it has
(``Last-Event-ID`` over SSE, ``last_seq`` over WebSocket) and gets exactly the tokens after it.
Nothing lost, nothing twice.

Kept streams cost memory, so the :class:`StreamRegistry` bounds them: a finished stream is kept
``keep_s`` seconds for late readers, then forgotten (a later resume gets a clear "expired" error,
not a vague "not found"); at most ``max_streams`` are kept; one stream holds at most
``max_chars`` characters. Time is passed in, so the tests need no clock and no sleeping.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from .protocol.errors import CodedError

__all__ = ["StreamLog", "StreamRegistry", "StreamGone", "RegistryFull", "RUNNING", "DONE", "FAILED"]

RUNNING, DONE, FAILED = "running", "done", "failed"


class StreamGone(CodedError, LookupError):
    """A resume for a stream that is not kept (``code``: ``stream_not_found`` or ``stream_expired``)."""


class RegistryFull(RuntimeError):
    """Every kept stream is still running: the server is at its limit of open streams."""


@dataclass
class StreamLog:
    """Everything one reply has produced so far. ``seq`` numbers the tokens from 0."""

    id: str
    user: str
    messages: list[dict]                 # the conversation that was asked (WebSocket resume restores it)
    created: float
    max_chars: int = 64_000
    tokens: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)      # wall-clock time each token was produced
    status: str = RUNNING
    finish_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished: float | None = None
    chars: int = 0

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def append(self, content: str, wall: float) -> int:
        """Record the next token and return its ``seq``; past ``max_chars`` the stream fails instead."""
        if not self.running:
            raise RuntimeError(f"stream {self.id} is {self.status}; nothing can be appended")
        if self.chars + len(content) > self.max_chars:
            self.fail("stream_too_long", f"The reply passed the {self.max_chars}-character limit of a kept stream.",
                      wall)
            return -1
        self.tokens.append(content)
        self.times.append(wall)
        self.chars += len(content)
        return len(self.tokens) - 1

    def finish(self, finish_reason: str, now: float) -> None:
        if self.running:
            self.status, self.finish_reason, self.finished = DONE, finish_reason, now

    def fail(self, code: str, message: str, now: float) -> None:
        if self.running:
            self.status, self.error_code, self.error_message, self.finished = FAILED, code, message, now

    def after(self, last_seq: int) -> list[tuple[int, str]]:
        """The tokens a reader who has everything up to ``last_seq`` is missing (``-1``: all of them)."""
        start = max(0, last_seq + 1)
        return list(enumerate(self.tokens[start:], start))

    def summary(self) -> dict:
        return {"id": self.id, "status": self.status, "tokens": len(self.tokens), "content": self.text,
                "finish_reason": self.finish_reason,
                "error": None if self.status != FAILED else {"code": self.error_code, "message": self.error_message}}


class StreamRegistry:
    """The kept streams, by id: creation, lookup with clear errors, expiry and a hard bound."""

    def __init__(self, keep_s: float = 120.0, max_streams: int = 10_000, max_chars: int = 64_000,
                 remember_expired: int = 10_000):
        self.keep_s, self.max_streams, self.max_chars = keep_s, max_streams, max_chars
        self._streams: OrderedDict[str, StreamLog] = OrderedDict()     # oldest first
        self._expired: OrderedDict[str, None] = OrderedDict()          # ids only, so late resumes get a clear error
        self._remember_expired = remember_expired
        self._last_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self):
        return iter(list(self._streams.values()))

    def create(self, user: str, messages: list[dict], now: float, stream_id: str | None = None) -> StreamLog:
        self.sweep(now, force=len(self._streams) >= self.max_streams)
        if len(self._streams) >= self.max_streams:
            oldest_done = next((s for s in self._streams.values() if not s.running), None)
            if oldest_done is None:
                raise RegistryFull(f"the server is streaming {len(self._streams)} replies, its limit")
            self._forget(oldest_done.id)
        log = StreamLog(stream_id or "st_" + secrets.token_urlsafe(9), user, messages, now, self.max_chars)
        self._streams[log.id] = log
        return log

    def get(self, stream_id: str, now: float) -> StreamLog:
        self.sweep(now)
        log = self._streams.get(stream_id)
        if log is not None:
            return log
        if stream_id in self._expired:
            raise StreamGone("stream_expired", f"Stream {stream_id} finished more than {self.keep_s:g} s ago and is "
                                               f"no longer kept; ask again to get a new reply.")
        raise StreamGone("stream_not_found", f"No stream with id {stream_id!r}.")

    def active(self, user: str) -> list[StreamLog]:
        """The user's running streams, oldest first."""
        return [s for s in self._streams.values() if s.user == user and s.running]

    def sweep(self, now: float, force: bool = False) -> list[str]:
        """Forget finished streams older than ``keep_s``; return their ids.

        A sweep looks at every kept stream, so it runs at most every ``keep_s / 4`` (and at most every
        second) unless ``force``d: with thousands of streams, sweeping on every call would cost
        time proportional to the square of their number. A stream is thus forgotten between ``keep_s``
        and ``1.25 * keep_s`` after it finished."""
        if not force and now - self._last_sweep < min(1.0, self.keep_s / 4):
            return []
        self._last_sweep = now
        gone = [s.id for s in self._streams.values()
                if not s.running and s.finished is not None and now - s.finished > self.keep_s]
        for stream_id in gone:
            self._forget(stream_id)
        return gone

    def _forget(self, stream_id: str) -> None:
        self._streams.pop(stream_id, None)
        self._expired[stream_id] = None
        while len(self._expired) > self._remember_expired:
            self._expired.popitem(last=False)
