"""Generations that outlive their connections: the asyncio side of :mod:`labkit.streams`.

One task per reply (the *producer*) reads tokens from the model and appends them to the reply's
:class:`~labkit.streams.StreamLog`. Connections are *readers* (:meth:`StreamHub.follow`): they
replay what they missed and then wait for more. So a dropped connection loses nothing, and a
second reader (a resumed connection) never makes the model run twice.

Cancellation is still prompt. When the last reader leaves, the generation gets ``resume_grace_s``
to be picked up again (long enough for a reconnect, short enough not to waste the model); after
that, or at once when a client says it is done (a WebSocket closed cleanly, a ``cancel``), the
producer is cancelled, which closes the upstream stream and stops the model within a token.
The "stop generating" button's DELETE answers only once that is done (:meth:`StreamHub.stop`).

With several server processes (``shared``, :mod:`labkit.server.sharedstreams`), every reply is also
mirrored into Redis, and :meth:`StreamHub.find` follows a reply another process is generating.

The decisions (limits, readers, orphans, cancel reasons, what a reader gets next) are
:class:`labkit.streams.StreamMachine`'s; this module holds only the tasks, wake-ups and timers.

Per user: at most ``max_streams_per_user`` replies stream at once (a third tab is refused with
429, or replaces the oldest, by configuration), and requests are rate limited by a token bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..protocol.openai_chat import APIError
from ..ratelimit import KeyedBuckets
from ..streams import (DONE, Heartbeat, ReaderState, RegistryFull, StreamEvent, StreamGone, StreamLog,
                       StreamMachine, StreamReader, TooManyStreams)
from .participants import Participants
from .sharedstreams import SharedStreams
from .state import StreamConfig, ServerStats
from .eager import quiet_future, run_eagerly
from .upstream import Upstream

__all__ = ["StreamHub", "Push", "STOP_WAIT_S"]

#: How long :meth:`StreamHub.stop` waits for a cancelled generation to end (closing the upstream
#: response is one round of the event loop or two; this bounds a model that will not let go).
STOP_WAIT_S = 2.0


class StreamHub:
    def __init__(self, config: StreamConfig, stats: ServerStats, upstream: Upstream,
                 participants: Participants | None = None, shared: SharedStreams | None = None):
        self.config, self.stats, self.upstream, self.shared = config, stats, upstream, shared
        self.participants = participants or Participants()
        self.machine = StreamMachine(keep_s=config.stream_keep_s, max_streams=config.max_kept_streams,
                                     max_streams_per_user=config.max_streams_per_user,
                                     limit_policy=config.stream_limit_policy, resume_grace_s=config.resume_grace_s,
                                     on_forget=self._forget)
        self.registry = self.machine.registry
        self.buckets = (KeyedBuckets(rate=config.user_requests_per_min / 60.0,
                                     capacity=max(1.0, config.user_requests_per_min / 60.0))
                        if config.user_requests_per_min else None)
        self._slots = asyncio.Semaphore(config.max_active_generations)
        self._tasks: dict[str, asyncio.Task] = {}
        self._signals: dict[str, asyncio.Event] = {}
        self._orphan_timers: dict[str, asyncio.TimerHandle] = {}
        self._accepted: dict[str, asyncio.Future] = {}
        self._pushes: dict[str, list[Push]] = {}

    # ---- creating and finding streams -------------------------------------------------------

    def start(self, user: str, messages: list[dict], options: dict) -> StreamLog:
        """Begin a reply for ``user``; raise :class:`APIError` 429 when a limit says no."""
        self.check_rate(user)
        try:
            started = self.machine.start(user, messages)
        except TooManyStreams as e:
            self.stats.streams_rejected += 1
            raise APIError(429, f"You already have {e.active} replies streaming (the limit is {e.limit}). Wait "
                                f"for one to finish or cancel it, then try again.",
                           type="requests", code="too_many_streams", headers={"retry-after": "1"}) from None
        except RegistryFull as e:
            self.participants.request(user)
            raise APIError(503, f"The server is at its limit of open streams ({e}); try again shortly.",
                           type="server_error", code="server_busy", headers={"retry-after": "1"}) from None
        self.participants.request(user)
        for old in started.superseded:
            self._stop_task(old)
        log = started.log
        self._signals[log.id] = asyncio.Event()
        accepted = quiet_future(asyncio.get_running_loop())           # WebSocket readers never await it
        self._accepted[log.id] = accepted
        if self.shared is not None:
            self.shared.started(log.id, user, messages)
        self._tasks[log.id] = asyncio.create_task(self._produce(log, options, accepted), name=f"produce-{log.id}")
        return log

    async def start_accepted(self, user: str, messages: list[dict], options: dict) -> StreamLog:
        """:meth:`start`, then wait until the model accepted the request, so that its errors (an unknown
        model, a rate limit upstream) keep their HTTP status instead of arriving inside the stream."""
        log = self.start(user, messages, options)
        await asyncio.shield(self._accepted[log.id])
        return log

    def get(self, stream_id: str, user: str | None = None) -> StreamLog:
        """The kept stream ``stream_id``, or :class:`APIError` 404 (unknown) / 410 (expired)."""
        try:
            log = self.machine.get(stream_id)
        except StreamGone as e:
            raise APIError(410 if e.code == "stream_expired" else 404, e.message, code=e.code) from None
        if user is not None and log.user != user:
            raise APIError(404, f"No stream with id {stream_id!r}.", code="stream_not_found")
        return log

    async def find(self, stream_id: str, user: str | None = None) -> StreamLog:
        """:meth:`get`, and with ``shared`` streams a reply another process generates, followed from
        Redis into a local copy (its tokens keep their seq and their generating process's times)."""
        try:
            return self.get(stream_id, user)
        except APIError as e:
            if self.shared is None or e.status != 404:
                raise
            meta = await self.shared.meta(stream_id)
            if meta is None or (user is not None and meta["user"] != user):
                raise
        if stream_id in self._tasks:                          # another request adopted it meanwhile
            return self.get(stream_id, user)
        await self.shared.reading(stream_id)              # the caller is about to read: keep it alive there
        if stream_id in self._tasks:
            return self.get(stream_id, user)
        log = self.registry.create(meta["user"], meta["messages"], time.time(), stream_id=stream_id)
        log.accept()
        self._signals[log.id] = asyncio.Event()
        synced = asyncio.get_running_loop().create_future()
        self._tasks[log.id] = asyncio.create_task(self._mirror(log, synced), name=f"mirror-{log.id}")
        with contextlib.suppress(TimeoutError):           # what it has so far is here before a resume is judged
            async with asyncio.timeout(10):
                await asyncio.shield(synced)
        return log

    def expected_tokens(self, options: dict) -> float:
        """How long the reply will probably be: ``max_tokens`` if given, else the recent average."""
        return self.machine.expected_tokens(options.get("max_tokens"))

    def readers(self, log: StreamLog) -> int:
        return self.machine.readers(log)

    # ---- reading ---------------------------------------------------------------------------

    async def batches(self, log: StreamLog, after: int = -1,
                      heartbeat_s: float | None = None) -> AsyncIterator[list[StreamEvent]]:
        """Every event pending for this reader at once (a :class:`~labkit.streams.Stage` change, the
        :class:`~labkit.streams.Token` s after ``after``, :class:`~labkit.streams.End` last), then wait for
        more; ``[Heartbeat()]`` after ``heartbeat_s`` of silence. A writer that fell behind gets a bigger
        batch, never a longer queue. While a reader follows, the generation is never cancelled as orphaned."""
        reader = self._open_reader(log, after)
        try:
            while True:
                changed = self._signals.get(log.id)        # taken before reading: no wake-up is missed
                if reader.events_pending():
                    yield reader.drain()
                    if reader.ended:
                        return
                    continue
                if changed is None:                         # swept meanwhile: it cannot be running
                    yield reader.drain()
                    return
                try:
                    async with asyncio.timeout(heartbeat_s):      # cheap: no task per token
                        await changed.wait()
                except TimeoutError:
                    yield [Heartbeat()]
        finally:
            self._close_reader(reader)

    async def follow(self, log: StreamLog, after: int = -1, heartbeat_s: float | None = None
                     ) -> AsyncIterator[StreamEvent]:
        """:meth:`batches`, one event at a time."""
        async for batch in self.batches(log, after, heartbeat_s):
            for event in batch:
                yield event          # End is always the last of the last batch

    def open_push(self, log: StreamLog, deliver: Callable[[list[StreamEvent]], Awaitable[bool]], after: int = -1,
                  heartbeat_s: float | None = None, send_timeout_s: float | None = None) -> "Push":
        """:meth:`batches` turned around: ``deliver(batch)`` is called by whoever has the events, in
        its own step (the producer, as soon as it has recorded a read's tokens), instead of by a
        reader task it wakes. The usual send to a socket that is not paused then finishes at once
        (:func:`run_eagerly`), so a token is on the socket before the producer's next read, with no
        wake-up and no trip through the event loop's queue per token per client.

        ``deliver`` returns False to stop. One that has to wait (a slow client: the socket is
        paused) goes on in a task of its own while the producer moves on; what comes meanwhile waits
        in the reader and goes out in the next batch (bigger, never a longer queue). A delivery that
        waits longer than ``send_timeout_s`` is cancelled and the push ends (``timed_out``).
        ``[Heartbeat()]`` is delivered after ``heartbeat_s`` of silence.

        Call :meth:`Push.close` when done (the reader then counts as gone: the grace period starts).
        """
        push = Push(self, self._open_reader(log, after), deliver, heartbeat_s, send_timeout_s)
        self._pushes.setdefault(log.id, []).append(push)
        push.kick()                                        # what is there already (a resume's replay)
        return push

    async def push(self, log: StreamLog, deliver: Callable[[list[StreamEvent]], Awaitable[bool]], after: int = -1,
                   heartbeat_s: float | None = None, send_timeout_s: float | None = None) -> str:
        """:meth:`open_push`, until it ends; returns how (:attr:`Push.outcome`). Cancelling it closes it."""
        push = self.open_push(log, deliver, after, heartbeat_s, send_timeout_s)
        try:
            return await push.wait()
        finally:
            push.close()

    def _unregister(self, push: "Push") -> None:
        pushes = self._pushes.get(push.reader.log.id)
        if pushes is not None and push in pushes:
            pushes.remove(push)
            if not pushes:
                del self._pushes[push.reader.log.id]
        self._close_reader(push.reader)

    def cancel(self, log: StreamLog, code: str = "cancelled", message: str = "The reply was cancelled.") -> bool:
        """Stop a running generation now (its readers get an error with ``code``)."""
        task = self._tasks.get(log.id)
        if task is None or task.done():
            return False
        self.machine.request_cancel(log, code, message)
        task.cancel()
        return True

    async def stop(self, log: StreamLog, code: str = "cancelled", message: str = "The reply was cancelled.",
                   timeout_s: float = STOP_WAIT_S) -> bool:
        """:meth:`cancel`, then wait (at most ``timeout_s``) until the generation has ended: its
        upstream response closed and its readers told. For a client that asked to stop ("stop
        generating"), an answer then means it has stopped, not only that it was asked to."""
        task = self._tasks.get(log.id)
        if not self.cancel(log, code, message):
            return False
        await asyncio.wait({task}, timeout=timeout_s)
        return True

    def _stop_task(self, log: StreamLog) -> None:
        task = self._tasks.get(log.id)
        if task is not None and not task.done():
            task.cancel()

    async def aclose(self) -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- limits ----------------------------------------------------------------------------

    def check_rate(self, user: str) -> None:
        if self.buckets is None:
            return
        ok, wait_s = self.buckets.take(user, time.monotonic())
        if not ok:
            self.stats.streams_rejected += 1
            raise APIError(429, f"Too many requests from {user!r}: the limit is "
                                f"{self.config.user_requests_per_min:g} per minute. Try again in {wait_s:.1f} s.",
                           type="requests", code="rate_limit_exceeded",
                           headers={"retry-after": str(max(1, round(wait_s))),
                                    "retry-after-ms": str(max(1, int(wait_s * 1000)))})

    # ---- the producer ----------------------------------------------------------------------

    async def _produce(self, log: StreamLog, options: dict, accepted: asyncio.Future) -> None:
        machine = self.machine
        self.stats.app_streams_active += 1
        finished = False
        try:
            async with self._slots:
                stream = await self.upstream.open_stream(log.messages, **options)
                machine.accepted(log)
                accepted.set_result(None)
                self._notify(log)                           # the stage is now WAITING
                async with stream:
                    async for contents in stream.batches():       # the tokens of one read: one wake-up
                        ok = True
                        for content in contents:
                            if not machine.token(log, content):   # failed: too long, or replaced by a newer request
                                ok = False
                                break
                            if self.shared is not None:
                                seq = len(log.tokens) - 1
                                self.shared.token(log.id, seq, log.tokens[seq], log.times[seq])
                        self._notify(log)
                        if not ok:
                            break
            machine.finished(log, stream.finish_reason)
            finished = log.status == "done"
        except APIError as e:
            machine.failed(log, e.code or "upstream_error", e.message)
            finished = True
            if not accepted.done():
                accepted.set_exception(e)
        except asyncio.CancelledError:
            machine.cancelled(log)
            if not accepted.done():
                accepted.cancel()
            raise
        finally:
            if self.shared is not None:
                self.shared.ended(log.id, _end_of(log))
            self.stats.app_streams_active -= 1
            if not finished:
                self.stats.app_streams_cancelled += 1
            self.participants.reply(log.user, log.times[0] - log.created if log.times else None, len(log.tokens))
            self._notify(log)
            self._tasks.pop(log.id, None)
            self._accepted.pop(log.id, None)
            timer = self._orphan_timers.pop(log.id, None)
            if timer is not None:
                timer.cancel()

    async def _mirror(self, log: StreamLog, synced: asyncio.Future) -> None:
        """The producer of a reply another process generates: its tokens and end, from Redis
        (``synced`` is set once what Redis held at the start has been copied). Its readers count as
        readers of the original (the generating process is told, and keeps it alive)."""
        try:
            async for kind, value in self.shared.follow(log.id, lambda: self.machine.readers(log) > 0):
                if kind == "synced":
                    if not synced.done():
                        synced.set_result(None)
                elif kind == "tokens":
                    for seq, content, t in value:
                        if seq == len(log.tokens):             # in order, each once
                            log.append(content, t)
                    self._notify(log)
                elif value["status"] == DONE:
                    log.finish(value["finish_reason"] or "stop", value["finished"] or time.time())
                else:
                    log.fail(value["error_code"] or "upstream_error", value["error_message"] or "", time.time())
        except asyncio.CancelledError:
            self.machine.cancelled(log)
            raise
        except Exception:
            log.fail("upstream_error", "The process generating this reply could not be followed.", time.time())
        finally:
            if not synced.done():
                synced.set_result(None)
            self._notify(log)
            self._tasks.pop(log.id, None)
            timer = self._orphan_timers.pop(log.id, None)
            if timer is not None:
                timer.cancel()

    def _notify(self, log: StreamLog) -> None:
        for push in tuple(self._pushes.get(log.id, ())):
            push.kick()                                     # delivered here, in this step
        event = self._signals.get(log.id)
        if event is not None:
            event.set()
            self._signals[log.id] = asyncio.Event()

    # ---- readers, orphans, memory -----------------------------------------------------------

    def _open_reader(self, log: StreamLog, after: int) -> StreamReader:
        timer = self._orphan_timers.pop(log.id, None)
        if timer is not None:
            timer.cancel()
        return self.machine.open_reader(log, after)

    def _close_reader(self, reader: StreamReader) -> None:
        log = reader.log
        if self.machine.close_reader(reader) and log.id not in self._orphan_timers:
            self._orphan_timers[log.id] = asyncio.get_running_loop().call_later(
                self.config.resume_grace_s, self._cancel_orphan, log)

    def _cancel_orphan(self, log: StreamLog) -> None:
        self._orphan_timers.pop(log.id, None)
        if self.shared is not None and log.running and not self.machine.readers(log):
            asyncio.create_task(self._cancel_orphan_unless_read_elsewhere(log))   # read through another process?
            return
        if self.machine.orphan_due(log):
            self._stop_task(log)

    async def _cancel_orphan_unless_read_elsewhere(self, log: StreamLog) -> None:
        if await self.shared.has_remote_readers(log.id):
            if log.running and not self.machine.readers(log) and log.id not in self._orphan_timers:
                self._orphan_timers[log.id] = asyncio.get_running_loop().call_later(
                    self.config.resume_grace_s, self._cancel_orphan, log)
        elif self.machine.orphan_due(log):
            self._stop_task(log)

    def _forget(self, stream_ids: list[str]) -> None:
        """Drop the wake-ups of streams the machine no longer keeps (memory stays bounded)."""
        for stream_id in stream_ids:
            self._signals.pop(stream_id, None)


class Push:
    """One reader whose batches are delivered by the producer's step (:meth:`StreamHub.open_push`).

    ``outcome`` says how it ended: ``ended`` (End was delivered), ``stopped`` (``deliver`` returned
    False), ``timed_out`` (a delivery waited longer than ``send_timeout_s``), ``closed``; an exception
    ``deliver`` raised is re-raised by :meth:`wait`."""

    def __init__(self, hub: StreamHub, reader: StreamReader, deliver: Callable[[list[StreamEvent]], Awaitable[bool]],
                 heartbeat_s: float | None, send_timeout_s: float | None):
        self.hub, self.reader, self.deliver = hub, reader, deliver
        self.heartbeat_s, self.send_timeout_s = heartbeat_s, send_timeout_s
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future = quiet_future(self.loop)
        self.outcome: str | None = None
        self._sending: asyncio.Task | None = None     # a delivery that had to wait
        self._send_timer: asyncio.TimerHandle | None = None
        self._last = self.loop.time()
        self._beat: asyncio.TimerHandle | None = (self.loop.call_later(heartbeat_s, self._heartbeat)
                                                  if heartbeat_s else None)

    def kick(self, extra: list[StreamEvent] | None = None) -> None:
        """Deliver what is pending, now, unless a delivery is still on its way (it takes it when done)."""
        if self._sending is not None or self.outcome is not None:
            return
        reader = self.reader
        while extra or reader.events_pending():
            batch = extra or reader.drain()
            extra = None
            try:
                finished, result = run_eagerly(self.deliver(batch))
            except Exception as e:
                self._finish("failed", e)
                return
            if not finished:
                self._sending = result
                result.add_done_callback(self._sent)
                if self.send_timeout_s is not None:
                    self._send_timer = self.loop.call_later(self.send_timeout_s, self._too_slow, result)
                return
            if not self._delivered(result):
                return

    def _delivered(self, ok: Any) -> bool:
        self._last = self.loop.time()
        if ok is False:
            self._finish("stopped")
        elif self.reader.ended:
            self._finish("ended")
        return self.outcome is None

    def _sent(self, task: asyncio.Task) -> None:
        self._sending = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self.outcome is not None:
            return
        if task.cancelled():
            self._finish("timed_out")
        elif task.exception() is not None:
            self._finish("failed", task.exception())
        elif self._delivered(task.result()):
            self.kick()

    def _too_slow(self, task: asyncio.Task) -> None:
        self._send_timer = None
        task.cancel()

    def _heartbeat(self) -> None:
        if self.outcome is not None:
            return
        silent = self.loop.time() - self._last
        if self._sending is not None:                 # a slow client: no keep-alive behind the data
            silent = 0.0
        elif silent >= self.heartbeat_s:
            self.kick([Heartbeat()])
            silent = 0.0
        if self.outcome is None:
            self._beat = self.loop.call_later(max(0.0, self.heartbeat_s - silent), self._heartbeat)

    def _finish(self, outcome: str, error: BaseException | None = None) -> None:
        self.outcome = outcome
        if self._beat is not None:
            self._beat.cancel()
        if not self.done.done():
            if error is not None:
                self.done.set_exception(error)
            else:
                self.done.set_result(outcome)

    async def wait(self) -> str:
        return await asyncio.shield(self.done)

    def close(self) -> None:
        """Stop (a delivery still on its way is cancelled) and detach the reader; twice is harmless."""
        if self.outcome is None:
            self._finish("closed")
        if self._sending is not None:
            self._sending.cancel()
        if self._send_timer is not None:
            self._send_timer.cancel()
        if self.reader.state is not ReaderState.CLOSED:
            self.hub._unregister(self)


def _end_of(log: StreamLog) -> dict:
    """How a reply ended, as other processes need it."""
    return {"status": log.status, "finish_reason": log.finish_reason, "finished": log.finished,
            "error_code": log.error_code, "error_message": log.error_message}
