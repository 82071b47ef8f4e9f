"""Delivery in the producer's own step (``StreamHub.open_push``, ``run_eagerly``), events in, events out.

The hub runs here with an upstream whose reads the test hands over one by one, so each check is
about order and ownership, never about time: a batch is delivered inside the producer's step (by
the producer task, before its next read), a client that cannot take it holds up neither the
producer nor another reader, and what it missed comes later in one batch, once each, in order.
"""

from __future__ import annotations

import asyncio

import pytest

from labkit.server.state import ServerStats, StreamConfig
from labkit.server.eager import quiet_future, run_eagerly
from labkit.server.streamhub import StreamHub
from labkit.streams import End, Heartbeat, Token
from waiting import until

CONFIG = StreamConfig(resume_grace_s=0.05, stream_keep_s=60, max_kept_streams=100, max_streams_per_user=None,
                      stream_limit_policy="reject", user_requests_per_min=None, max_active_generations=10)


class _Stream:
    """One upstream completion whose reads are the lists put into ``reads`` (None: the end)."""

    def __init__(self):
        self.reads: asyncio.Queue = asyncio.Queue()
        self.finish_reason = None
        self.closed = False

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.closed = True

    async def batches(self):
        while (read := await self.reads.get()) is not None:
            yield read
        self.finish_reason = "stop"


class _Upstream:
    def __init__(self):
        self.stream = _Stream()

    async def open_stream(self, messages, **options):
        return self.stream


def _hub() -> tuple[StreamHub, _Stream]:
    upstream = _Upstream()
    return StreamHub(CONFIG, ServerStats(), upstream), upstream.stream


def _tokens(batches) -> list[tuple[int, str]]:
    return [(e.seq, e.content) for batch in batches for e in batch if isinstance(e, Token)]


async def test_run_eagerly_finishes_a_coroutine_that_never_waits_in_the_callers_step():
    steps = []

    async def send():
        steps.append(asyncio.current_task())
        return 42

    assert run_eagerly(send()) == (True, 42)
    assert steps == [asyncio.current_task()]           # no task was made for it


async def test_run_eagerly_hands_the_rest_of_a_waiting_coroutine_to_a_task():
    gate, seen = asyncio.get_running_loop().create_future(), []

    async def send():
        seen.append("before")
        seen.append(await gate)
        return "sent"

    finished, task = run_eagerly(send())
    assert not finished and seen == ["before"]          # ran up to its wait, here
    gate.set_result("value")
    assert await task == "sent" and seen == ["before", "value"]


async def test_run_eagerly_raises_early_errors_and_cancels_into_the_coroutine():
    async def broken():
        raise ValueError("bad")

    with pytest.raises(ValueError):
        run_eagerly(broken())
    cleaned = []

    async def stuck():
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    _, task = run_eagerly(stuck())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]


async def test_a_read_is_delivered_by_the_producer_before_its_next_read():
    hub, stream = _hub()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    batches, delivered_by = [], []

    async def deliver(batch):
        batches.append(batch)
        delivered_by.append(asyncio.current_task().get_name())
        return True

    push = hub.open_push(log, deliver)
    stream.reads.put_nowait(["a", "b"])
    await until(lambda: _tokens(batches) == [(0, "a"), (1, "b")], 10, "the read was delivered")
    assert stream.reads.empty()
    stream.reads.put_nowait(["c"])
    stream.reads.put_nowait(None)
    assert await push.wait() == "ended"
    push.close()
    assert _tokens(batches) == [(0, "a"), (1, "b"), (2, "c")]
    assert isinstance(batches[-1][-1], End)
    # every batch with a token was written in the producer task's own step: no reader task per client
    assert {name for name, batch in zip(delivered_by, batches) if any(isinstance(e, Token) for e in batch)} \
        == {f"produce-{log.id}"}


async def test_a_client_that_cannot_take_a_batch_holds_up_neither_the_producer_nor_another_reader():
    hub, stream = _hub()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    gate = asyncio.Event()
    slow, fast = [], []

    async def deliver_slow(batch):
        slow.append(batch)
        if len(slow) == 1:
            await gate.wait()            # a paused socket: this send waits
        return True

    async def deliver_fast(batch):
        fast.append(batch)
        return True

    slow_push, fast_push = hub.open_push(log, deliver_slow), hub.open_push(log, deliver_fast)
    for content in "abcde":
        stream.reads.put_nowait([content])
    await until(lambda: len(_tokens(fast)) == 5, 10, "the fast reader got every token")
    assert len(slow) == 1 and _tokens(slow) == []      # stuck in its first send (the stage change)
    stream.reads.put_nowait(None)
    assert await fast_push.wait() == "ended"
    assert not log.running                              # the producer finished regardless
    gate.set()
    assert await slow_push.wait() == "ended"
    # what it missed came in one batch after the send it was stuck in: once each, in order
    assert len(slow) == 2 and _tokens(slow) == [(i, c) for i, c in enumerate("abcde")]
    for push in (slow_push, fast_push):
        push.close()
    assert hub.readers(log) == 0


async def test_a_send_that_waits_too_long_ends_the_push_and_frees_the_reader():
    hub, stream = _hub()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    cancelled = []

    async def deliver(batch):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return True

    push = hub.open_push(log, deliver, send_timeout_s=0.05)
    stream.reads.put_nowait(["a"])
    assert await push.wait() == "timed_out"
    assert cancelled == [True]
    push.close()
    assert hub.readers(log) == 0
    stream.reads.put_nowait(None)


async def test_silence_is_a_heartbeat_and_a_failing_delivery_is_raised_to_its_reader_only():
    hub, stream = _hub()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    beats, other = [], []

    async def deliver_beats(batch):
        beats.append(batch)
        return True

    async def deliver_broken(batch):
        if any(isinstance(e, Token) for e in batch):
            raise RuntimeError("a bug in one writer")
        return True

    async def deliver_other(batch):
        other.append(batch)
        return True

    beating = hub.open_push(log, deliver_beats, heartbeat_s=0.02)
    broken, healthy = hub.open_push(log, deliver_broken), hub.open_push(log, deliver_other)
    await until(lambda: [Heartbeat()] in beats, 10, "a heartbeat during silence")
    stream.reads.put_nowait(["a"])
    with pytest.raises(RuntimeError):
        await broken.wait()
    stream.reads.put_nowait(None)
    assert await healthy.wait() == "ended" and _tokens(other) == [(0, "a")]
    assert await beating.wait() == "ended"
    for push in (beating, broken, healthy):
        push.close()


async def test_a_quiet_futures_exception_is_never_reported_as_not_retrieved():
    """Only this test's own futures are counted: a collection may also find an earlier test's
    garbage (a CI worker once reported a task of another test's here), collected first anyway."""
    import gc

    loop, reported = asyncio.get_running_loop(), []
    marker = RuntimeError("nobody awaits this")

    def handler(_loop, context):
        if context.get("exception") is marker:
            reported.append(context["message"])

    gc.collect()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(handler)
    try:
        for make in (quiet_future, lambda lp: lp.create_future()):      # the plain one shows what is avoided
            future = make(loop)
            future.set_exception(marker)
            await asyncio.sleep(0)                                       # its done callbacks run
            del future
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == ["Future exception was never retrieved"]         # the plain future's only
