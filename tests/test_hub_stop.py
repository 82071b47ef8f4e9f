"""``StreamHub.stop``: the "stop generating" answer comes once the generation has ended.

The hub runs with an upstream whose close the test holds (a real one closes its HTTP response,
which can take a round of the event loop or more), so each check is about order, not time:
``cancel`` returns while the upstream is still open, ``stop`` only once it is closed and the
readers have the error. Measured through the real server under two GIL-holding threads (30
DELETEs each way, twice): with ``cancel`` the model went on for up to 8 tokens after the 204 in
13 and 12 of 30; with ``stop``, 0 tokens in all 60.
"""

from __future__ import annotations

import asyncio

from labkit.server.state import ServerStats, StreamConfig
from labkit.server.streamhub import StreamHub
from waiting import until

CONFIG = StreamConfig(resume_grace_s=30, stream_keep_s=60, max_kept_streams=100, max_streams_per_user=None,
                      stream_limit_policy="reject", user_requests_per_min=None, max_active_generations=10)


class _Stream:
    """An endless upstream completion whose close waits for ``release`` (never set: a stuck close)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.reading = asyncio.Event()
        self.closing = self.closed = False

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.closing = True
        await self.release.wait()
        self.closed = True

    async def batches(self):
        yield ["Hello"]
        self.reading.set()
        await asyncio.Event().wait()           # the next read never comes: only a cancel ends it


class _Upstream:
    def __init__(self):
        self.stream = _Stream()

    async def open_stream(self, messages, **options):
        return self.stream


def _running() -> tuple[StreamHub, _Stream]:
    upstream = _Upstream()
    return StreamHub(CONFIG, ServerStats(), upstream), upstream.stream


async def test_stop_returns_only_once_the_upstream_is_closed_and_the_log_failed():
    hub, stream = _running()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    await stream.reading.wait()
    stopping = asyncio.ensure_future(hub.stop(log, "cancelled", "The client cancelled the reply."))
    await until(lambda: stream.closing)
    for _ in range(5):                          # the close is held: stop waits for it
        await asyncio.sleep(0)
    assert not stopping.done() and log.status != "failed"
    stream.release.set()
    assert await stopping is True
    assert stream.closed and log.status == "failed" and log.error_code == "cancelled"
    assert hub.stats.app_streams_cancelled == 1 and hub.stats.app_streams_active == 0


async def test_cancel_alone_returns_while_the_upstream_is_still_open():
    hub, stream = _running()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    await stream.reading.wait()
    assert hub.cancel(log) is True
    assert not stream.closed                    # what a 204 after cancel() alone promised: nothing
    stream.release.set()
    await until(lambda: log.status == "failed")


async def test_stop_gives_up_waiting_on_a_close_that_never_ends_and_ignores_an_ended_reply():
    hub, stream = _running()
    log = hub.start("ann", [{"role": "user", "content": "hi"}], {})
    await stream.reading.wait()
    assert await hub.stop(log, timeout_s=0.05) is True      # returns, though the close is stuck
    assert stream.closing and not stream.closed
    stream.release.set()
    await until(lambda: log.status == "failed")
    assert await hub.stop(log) is False                      # nothing left to stop
