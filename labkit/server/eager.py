"""Running a coroutine in the caller's own step until it first has to wait (:func:`run_eagerly`).

The relay's writers use it so that a write to a socket that is not paused costs no task and no trip
through the event loop's queue: the app's :class:`~labkit.server.streamhub.Push` (one reply, many
readers) and the model server's scheduled streams (:mod:`labkit.server.modelstream`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["run_eagerly", "quiet_future"]


def quiet_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """A future whose exception nobody may await (a stream's ``done``, a reader's acceptance): marked
    retrieved as it completes, so asyncio never logs "exception was never retrieved" for it."""
    future = loop.create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


def run_eagerly(coro) -> tuple[bool, Any]:
    """Run the coroutine ``coro`` now, in the caller's own step, until it returns or first has to wait.

    ``(True, result)`` when it returned without waiting: the usual case of a send to a socket that
    is not paused (uvicorn writes to the transport at once), so no task is made and nothing goes
    through the event loop's queue. Else ``(False, task)``: a task runs the rest of it. This is
    Python 3.12's eager task start (``eager_start=True``), which 3.11 lacks. An exception ``coro``
    raises before waiting is raised here. ``coro`` must not tie itself to the current task
    (``asyncio.timeout``, anyio cancel scopes): the part before its first wait runs in the caller's.
    """
    try:
        signal = coro.send(None)
    except StopIteration as e:
        return True, e.value
    task = asyncio.ensure_future(_Rest(coro, signal))
    task.add_done_callback(lambda _: _cancel_unstarted(coro))
    return False, task


def _cancel_unstarted(coro) -> None:
    """A task cancelled before its first step never passes the cancellation on: do it here, so the
    coroutine's cleanup runs (it is still suspended at its first wait)."""
    if coro.cr_frame is None:                  # it finished: nothing to do
        return
    try:
        coro.throw(asyncio.CancelledError())
    except BaseException:                      # noqa: BLE001 - it ended, as a cancelled coroutine does
        return
    coro.close()                               # it waited again while cancelled: close it for good


class _Rest:
    """The rest of a coroutine that :func:`run_eagerly` started: hands its first wait (``signal``)
    to the task running it, then goes on as ``await coro`` would (values and exceptions passed in)."""

    def __init__(self, coro, signal):
        self.coro, self.signal = coro, signal

    def __await__(self):
        coro, signal = self.coro, self.signal
        while True:
            try:
                value = yield signal
            except BaseException as e:          # cancelled (or closed): into the coroutine, as await would
                try:
                    signal = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    signal = coro.send(value)
                except StopIteration as stop:
                    return stop.value
