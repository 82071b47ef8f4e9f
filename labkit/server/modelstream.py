"""The model server's streams, cheap enough to run thousands beside the app they stand in for.

The simulated model is a remote API in a real deployment, but on a laptop it shares the cores with
the app server and its clients (``bench load``), so every CPU second it spends counts against them.
Three things make a token cheap here, and none changes a byte on the wire:

* :class:`ChunkSchedule` (pure, no clock) renders a token's chunk from a template made once per
  stream: the chunk's JSON around the content, cut at the content's place, so a token costs one
  ``json.dumps`` of its text instead of building and encoding the whole chunk object (the same bytes
  as ``json.dumps(content_chunk(...))``: tested);
* :class:`TokenClock`: one timer per millisecond that has tokens due, for all streams, instead of a
  sleep (a future, a timer and a task wake-up) per token per stream;
* :class:`ScheduledStream` writes what is due from that timer's callback, in its step (through
  :func:`~labkit.server.eager.run_eagerly`: a send to a socket that is not paused finishes at once), so a
  token goes out with no task step, no async generator and no anyio task group per response. A send
  that has to wait (the reader is slow) goes on in a task; what falls due meanwhile goes out with the
  next write, as a stream that fell behind sends what is due in one write.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable

from ..model.schedule import CompletionPlan
from ..protocol import openai_chat as oc
from ..protocol.sse import encode_comment, encode_event
from .eager import quiet_future, run_eagerly
from .state import ServerStats

__all__ = ["ChunkSchedule", "TokenClock", "ScheduledStream", "KEEP_ALIVE"]

KEEP_ALIVE = encode_comment("keep-alive")
_SENTINEL = "\x00labkit-content\x00"                 # JSON-encoded as "\u0000labkit-content\u0000"


def _frame(obj: dict) -> bytes:
    return encode_event(json.dumps(obj, separators=(",", ":")))


class ChunkSchedule:
    """The SSE bytes of one streamed completion, in the order and at the times they are due.

    Pure: :meth:`next_due` says when the next part is due (seconds after the request arrived), and
    :meth:`take` returns that part with every later one already due by ``elapsed`` (one write for a
    stream that fell behind): the role chunk with the first token, one chunk per token, and with the
    last token the finish chunk, the usage chunk (if asked for) and ``[DONE]``. ``fail_after`` (a
    teaching fault) ends the stream after that many tokens with OpenAI's error event instead."""

    def __init__(self, plan: CompletionPlan, model: str, cid: str, created: int, include_usage: bool = False,
                 fail_after: int | None = None):
        self.plan, self.model, self.cid, self.created = plan, model, cid, created
        self.include_usage, self.fail_after = include_usage, fail_after
        self.sent = 0                    # tokens taken so far
        self.ended = False
        template = json.dumps(oc.content_chunk(cid, created, model, _SENTINEL), separators=(",", ":"))
        parts = template.split(json.dumps(_SENTINEL))
        # "data: " + chunk JSON before the content; after it + the event's end (the data is one line:
        # json.dumps escapes every line break, so encode_event would write exactly this)
        self._head, self._tail = (("data: " + parts[0]).encode(), (parts[1] + "\n\n").encode()) \
            if len(parts) == 2 else (None, None)

    def next_due(self) -> float | None:
        """Seconds after the request arrived when the next part is due; None once it has all been taken."""
        if self.ended:
            return None
        due_s = self.plan.due_s
        return due_s[self.sent] if self.sent < len(due_s) else 0.0

    def content_frame(self, token: str) -> bytes:
        """One token's chunk event: ``encode_event(json.dumps(content_chunk(...)))``, from the template."""
        if self._head is None:
            return _frame(oc.content_chunk(self.cid, self.created, self.model, token))
        return self._head + json.dumps(token).encode() + self._tail

    def take(self, elapsed: float) -> tuple[bytes, int]:
        """The next part, and every part after it due by ``elapsed``: the bytes, and how many tokens."""
        plan, out = self.plan, []
        tokens, due_s, n = plan.tokens, plan.due_s, len(plan.tokens)
        i = first = self.sent
        while i < n:
            if i == 0 and not plan.tool_calls:
                out.append(_frame(oc.role_chunk(self.cid, self.created, self.model)))
            if self.fail_after is not None and i >= self.fail_after and not plan.tool_calls:
                out.append(_frame(oc.error_body("The model failed while generating (a fault injected by "
                                                "fail_after_tokens).", type="server_error", code="model_failure")))
                self.sent, self.ended = i, True
                return b"".join(out), i - first
            if plan.tool_calls:               # arguments of function calls, streamed as they are generated
                k = plan.call_of_token[i]
                if i == 0 or plan.call_of_token[i - 1] != k:
                    out.append(_frame(oc.tool_call_start_chunk(self.cid, self.created, self.model, k,
                                                               plan.tool_calls[k], i == 0)))
                out.append(_frame(oc.tool_call_arguments_chunk(self.cid, self.created, self.model, k, tokens[i])))
            else:
                out.append(self.content_frame(tokens[i]))
            i += 1
            if i < n and due_s[i] > elapsed:
                self.sent = i
                return b"".join(out), i - first
        if n == 0:
            out.append(_frame(oc.role_chunk(self.cid, self.created, self.model)))
        out.append(_frame(oc.finish_chunk(self.cid, self.created, self.model, plan.finish_reason)))
        if self.include_usage:
            out.append(_frame(oc.usage_chunk(self.cid, self.created, self.model, plan.usage)))
        out.append(oc.DONE)
        self.sent, self.ended = n, True
        return b"".join(out), n - first

    def behind(self, elapsed: float) -> bool:
        """More than the next part is due already (the stream fell behind)."""
        i, due_s = self.sent, self.plan.due_s
        return i + 1 < len(due_s) and due_s[i + 1] <= elapsed


class TokenClock:
    """One timer per millisecond tick for all the streams of a server: ``call_at(when, callback)`` runs
    ``callback`` at the first tick at or after ``when`` (never before it on the loop's clock), with
    every other callback of that tick, in one timer's step. Returns a handle to :meth:`cancel`."""

    TICK_S = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.get_running_loop()
        self._ticks: dict[int, list[list]] = {}

    def call_at(self, when: float, callback: Callable[[], None]) -> list:
        tick = math.ceil(when / self.TICK_S)
        entry = [callback]
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = []
            self.loop.call_at(max(tick * self.TICK_S, when), self._fire, tick)
        due.append(entry)
        return entry

    @staticmethod
    def cancel(entry: list) -> None:
        entry[0] = None

    def _fire(self, tick: int) -> None:
        for entry in self._ticks.pop(tick, ()):
            callback = entry[0]
            if callback is not None:
                entry[0] = None
                callback()

    def pending(self) -> int:
        """Callbacks waiting (cancelled ones included until their tick): for tests."""
        return sum(len(v) for v in self._ticks.values())


class ScheduledStream:
    """One ``/v1`` stream written on its schedule by :class:`TokenClock` callbacks (see the module doc).

    ``write(chunk)`` is the response's send of one body chunk (a coroutine; it returns True); ``done``
    is set when ``[DONE]`` (or the fault's error) has been written, or holds the exception a write
    raised. :meth:`close` stops it (the client left); twice is harmless. A wait longer than
    ``heartbeat_s`` before the next part is filled with keep-alive comments."""

    def __init__(self, schedule: ChunkSchedule, arrived: float, write: Callable[[bytes], Awaitable[bool]],
                 clock: TokenClock, stats: ServerStats, heartbeat_s: float = 15.0):
        self.schedule, self.arrived, self.write, self.clock = schedule, arrived, write, clock
        self.stats, self.heartbeat_s = stats, heartbeat_s
        self.loop = clock.loop
        self.done: asyncio.Future = quiet_future(self.loop)
        self._timer: list | None = None
        self._sending: asyncio.Task | None = None
        self.closed = self.finished = False
        stats.model_streams_active += 1
        self._arm()

    def _arm(self) -> None:
        due = self.schedule.next_due()
        if due is None:
            self.finished = True
            if not self.done.done():
                self.done.set_result(None)
            return
        at, now = self.arrived + due, self.loop.time()
        if at - now > self.heartbeat_s:
            self._timer = self.clock.call_at(now + self.heartbeat_s, self._beat)
        else:
            self._timer = self.clock.call_at(at, self._due)

    def _due(self) -> None:
        self._timer = None
        if self.closed:
            return
        if self.schedule.behind(self.loop.time() - self.arrived):
            # a batch (the stream fell behind): first let the loop take what came in meanwhile, so a
            # client that hung up closes this stream before the batch goes out (or counts as generated).
            # Two trips: the disconnect's own wake-up is queued behind this timer's first call_soon.
            self.loop.call_soon(self.loop.call_soon, self._send_due)
        else:
            self._send_due()

    def _send_due(self) -> None:
        if self.closed:
            return
        data, tokens = self.schedule.take(self.loop.time() - self.arrived)
        self.stats.tokens_generated += tokens
        self._send(data)

    def _beat(self) -> None:
        self._timer = None
        if not self.closed:
            self._send(KEEP_ALIVE)

    def _send(self, data: bytes) -> None:
        try:
            finished, result = run_eagerly(self.write(data))
        except Exception as e:                   # noqa: BLE001 - the response re-raises it
            self._fail(e)
            return
        if finished:
            self._arm()
            return
        self._sending = result                   # a slow reader: the rest of the send runs in a task
        result.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._sending = None
        if self.closed or task.cancelled():
            return
        if task.exception() is not None:
            self._fail(task.exception())
        else:
            self._arm()

    def _fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self.clock.cancel(self._timer)
            self._timer = None
        if self._sending is not None:
            self._sending.cancel()
        self.stats.model_streams_active -= 1
        if not self.finished:
            self.stats.model_streams_cancelled += 1
