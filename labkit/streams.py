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

On top of the log, :class:`StreamMachine` makes every decision the server's stream hub used to make
inline (see :mod:`labkit.server.streamhub`, which keeps only tasks and timers): per-user limits, who
reads what (:class:`StreamReader`, whose :meth:`~StreamReader.drain` hands a writer that fell behind
every pending event at once, typed), when an unread generation is orphaned, and why a cancelled one
stopped. Its clock and id source are injected, like python-websockets' protocol objects.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["StreamLog", "StreamRegistry", "StreamGone", "RegistryFull", "RUNNING", "DONE", "FAILED",
           "StreamStage", "Stage", "Token", "Heartbeat", "End", "StreamEvent", "StreamReader", "ReaderState",
           "StreamStateError", "StreamMachine", "Started", "TooManyStreams"]

RUNNING, DONE, FAILED = "running", "done", "failed"


class StreamStage(enum.StrEnum):
    """Where a reply is, as a reader sees it (the values are the wire names of the progressive chat)."""

    QUEUED = "queued"                          # waiting for a generation slot
    WAITING = "waiting_for_first_token"        # the model accepted the request
    STREAMING = "streaming"                    # it has tokens
    FINISHED = "finished"                      # done or failed


class StreamStateError(RuntimeError):
    """A call the object's state does not allow (a bug in the caller, never the client's fault)."""


class StreamGone(LookupError):
    """A resume for a stream that is not kept (``code``: ``stream_not_found`` or ``stream_expired``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


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
    accepted: bool = False               # the model took the request (its errors would have come first)

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def stage(self) -> StreamStage:
        if not self.running:
            return StreamStage.FINISHED
        if self.tokens:
            return StreamStage.STREAMING
        return StreamStage.WAITING if self.accepted else StreamStage.QUEUED

    def accept(self) -> None:
        """The model accepted the request: the stage moves from queued to waiting for the first token."""
        if not self.running:
            raise StreamStateError(f"stream {self.id} is {self.status}; it cannot be accepted")
        self.accepted = True

    def append(self, content: str, wall: float) -> int:
        """Record the next token and return its ``seq``; past ``max_chars`` the stream fails instead."""
        if not self.running:
            raise StreamStateError(f"stream {self.id} is {self.status}; nothing can be appended")
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


# ---- what a reader receives: typed events ---------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """The reply moved to another stage (sent once per change, before that stage's tokens)."""
    stage: StreamStage


@dataclass(frozen=True)
class Token:
    """One token: its ``seq`` (from 0), its text and the wall-clock time it was produced."""
    seq: int
    content: str
    t: float


@dataclass(frozen=True)
class Heartbeat:
    """Nothing happened for a while (the adapter makes these on a timer, for keep-alives)."""


@dataclass(frozen=True)
class End:
    """The reply ended; ``log`` says how (``status`` done or failed, the text, the error). Always last."""
    log: StreamLog


StreamEvent = Stage | Token | Heartbeat | End


class ReaderState(enum.Enum):
    FOLLOWING = "following"      # events may still come
    ENDED = "ended"              # End was drained: nothing more will
    CLOSED = "closed"            # the connection stopped reading (detached from the stream)


class StreamReader:
    """One connection's position in one reply. Pure: :meth:`drain` returns everything new since the
    last call (a stage change, the tokens after the reader's last ``seq``, then :class:`End` once the
    reply is over), so a writer that fell behind takes it all in one go and may coalesce it."""

    def __init__(self, log: StreamLog, after: int = -1):
        self.log, self.after = log, after
        self.state = ReaderState.FOLLOWING
        self._sent_stage: StreamStage | None = None

    def events_pending(self) -> bool:
        """Would :meth:`drain` return anything now?"""
        if self.state is not ReaderState.FOLLOWING:
            return False
        log = self.log
        return log.stage != self._sent_stage or len(log.tokens) - 1 > self.after or not log.running

    def drain(self) -> list[StreamEvent]:
        if self.state is not ReaderState.FOLLOWING:
            raise StreamStateError(f"the reader of {self.log.id} is {self.state.value}: drain() after "
                                   f"{'End' if self.state is ReaderState.ENDED else 'close()'}")
        log, events = self.log, []
        if log.stage != self._sent_stage:
            self._sent_stage = log.stage
            events.append(Stage(log.stage))
        for seq, content in log.after(self.after):
            events.append(Token(seq, content, log.times[seq]))
            self.after = seq
        if not log.running:
            events.append(End(log))
            self.state = ReaderState.ENDED
        return events

    @property
    def ended(self) -> bool:
        return self.state is ReaderState.ENDED


@dataclass(frozen=True)
class Started:
    """A new reply, and the older ones of the same user it replaced (their generations must stop)."""
    log: StreamLog
    superseded: tuple[StreamLog, ...] = ()


def new_stream_id() -> str:
    return "st_" + secrets.token_urlsafe(9)


class StreamMachine:
    """Every decision about kept replies, with no task, timer or socket: the server's
    :class:`~labkit.server.streamhub.StreamHub` runs the generations and the wake-ups around it.

    * :meth:`start`: the per-user stream limit (refuse with 429, or supersede the oldest) and the
      registry's bound (503), then a new log;
    * the producer's side: :meth:`accepted`, :meth:`token`, :meth:`finished`, :meth:`failed`,
      :meth:`cancelled` (the log fails with the reason :meth:`request_cancel` recorded);
    * readers: :meth:`open_reader` / :meth:`close_reader`, which says when a running reply has nobody
      left reading it (the adapter then gives it ``resume_grace_s`` before :meth:`orphan_due`).

    ``clock`` gives wall-clock seconds (token times, expiry); ``new_id`` names streams; ``on_forget``
    hears the ids of streams no longer kept, so an adapter can drop what it holds for them.
    """

    def __init__(self, *, keep_s: float = 120.0, max_streams: int = 10_000, max_chars: int = 64_000,
                 max_streams_per_user: int | None = None, limit_policy: str = "reject",
                 resume_grace_s: float = 30.0, clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = new_stream_id,
                 on_forget: Callable[[list[str]], None] | None = None):
        if limit_policy not in ("reject", "replace"):
            raise ValueError(f"limit_policy is 'reject' or 'replace', not {limit_policy!r}")
        self.registry = StreamRegistry(keep_s=keep_s, max_streams=max_streams, max_chars=max_chars)
        self.max_streams_per_user, self.limit_policy = max_streams_per_user, limit_policy
        self.resume_grace_s = resume_grace_s
        self.clock, self.new_id, self.on_forget = clock, new_id, on_forget
        self._readers: dict[str, int] = {}
        self._cancel_reasons: dict[str, tuple[str, str]] = {}
        self.typical_tokens = 80.0      # a running average of reply lengths, for progress estimates

    # ---- creating and finding -------------------------------------------------------------------

    def start(self, user: str, messages: list[dict]) -> Started:
        """A new reply for ``user``; raise :class:`TooManyStreams` or :class:`RegistryFull`."""
        superseded = self._make_room_for(user)
        log = self.registry.create(user, messages, self.clock(), self.new_id())
        self._readers[log.id] = 0
        self._forget_swept()
        return Started(log, superseded)

    def _make_room_for(self, user: str) -> tuple[StreamLog, ...]:
        limit = self.max_streams_per_user
        if limit is None:
            return ()
        active = self.registry.active(user)
        if len(active) < limit:
            return ()
        if self.limit_policy == "reject":
            raise TooManyStreams(len(active), limit)
        old = tuple(active[:len(active) - limit + 1])
        for log in old:
            self.request_cancel(log, "superseded", "A newer request from the same user replaced this reply.")
            log.fail("superseded", "A newer request from the same user replaced this reply.", self.clock())
        return old

    def get(self, stream_id: str) -> StreamLog:
        """The kept stream, or :class:`StreamGone` (not found / expired)."""
        try:
            return self.registry.get(stream_id, self.clock())
        finally:
            self._forget_swept()

    def expected_tokens(self, max_tokens: int | None) -> float:
        """How long the reply will probably be: ``max_tokens`` if given, else the recent average."""
        return float(max_tokens or self.typical_tokens)

    # ---- the producer's side --------------------------------------------------------------------

    def accepted(self, log: StreamLog) -> None:
        log.accept()

    def token(self, log: StreamLog, content: str) -> bool:
        """Record a token; False when the producer must stop (the log failed: too long, or replaced)."""
        if not log.running:
            return False
        return log.append(content, self.clock()) >= 0

    def finished(self, log: StreamLog, finish_reason: str | None) -> None:
        log.finish(finish_reason or "stop", self.clock())
        if log.status == DONE:
            self.typical_tokens += 0.2 * (len(log.tokens) - self.typical_tokens)

    def failed(self, log: StreamLog, code: str, message: str) -> None:
        log.fail(code, message, self.clock())

    def request_cancel(self, log: StreamLog, code: str, message: str) -> None:
        """Say why a generation is about to be stopped; :meth:`cancelled` applies it."""
        if log.running:
            self._cancel_reasons[log.id] = (code, message)

    def cancelled(self, log: StreamLog) -> None:
        """The generation stopped because it was cancelled: the log fails with the recorded reason."""
        code, message = self._cancel_reasons.pop(log.id, ("cancelled", "The reply was cancelled."))
        log.fail(code, message, self.clock())

    # ---- readers and orphans --------------------------------------------------------------------

    def open_reader(self, log: StreamLog, after: int = -1) -> StreamReader:
        self._readers[log.id] = self._readers.get(log.id, 0) + 1
        return StreamReader(log, after)

    def close_reader(self, reader: StreamReader) -> bool:
        """Detach a reader; True when its reply is still running and nobody reads it any more (start
        the grace timer). Closing twice is an error: a reader count must never go wrong silently."""
        if reader.state is ReaderState.CLOSED:
            raise StreamStateError(f"the reader of {reader.log.id} is already closed")
        reader.state = ReaderState.CLOSED
        log = reader.log
        if log.id not in self._readers:      # swept while read (it had finished long ago)
            return False
        self._readers[log.id] -= 1
        return self._readers[log.id] == 0 and log.running

    def readers(self, log: StreamLog) -> int:
        return self._readers.get(log.id, 0)

    def orphan_due(self, log: StreamLog) -> bool:
        """The grace period of an unread reply is over: True if it is to be cancelled (then it is recorded
        as abandoned); False if a reader came back, or it ended meanwhile."""
        if self._readers.get(log.id, 0) or not log.running:
            return False
        self.request_cancel(log, "abandoned", f"Nobody read this reply for {self.resume_grace_s:g} s.")
        return True

    def _forget_swept(self) -> None:
        """Drop the reader counts of streams the registry no longer keeps (memory stays bounded)."""
        if len(self._readers) <= len(self.registry):
            return
        kept = {log.id for log in self.registry}
        gone = [k for k in self._readers if k not in kept]
        for stream_id in gone:
            del self._readers[stream_id]
            self._cancel_reasons.pop(stream_id, None)
        if self.on_forget is not None:
            self.on_forget(gone)


class TooManyStreams(Exception):
    """The user already has ``active`` replies streaming; the limit is ``limit``."""

    def __init__(self, active: int, limit: int):
        super().__init__(f"{active} replies streaming, the limit is {limit}")
        self.active, self.limit = active, limit
