"""The tasks one connection started, kept until each ends, so that closing it can cancel the rest.

A Realtime connection (WebSocket or WebRTC) runs a reply, transcriptions and pumps as tasks of its
own. Each is held here (the event loop keeps only a weak reference to a task) and dropped the moment
it ends; :meth:`TaskSet.cancel` cancels whatever still runs when the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine

__all__ = ["TaskSet"]


class TaskSet:
    def __init__(self):
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Run ``coro`` as a task held until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self, wait: bool = True) -> None:
        """Cancel every task still running except the caller's own (a task may close its connection);
        with ``wait``, until each has ended (its exception, if any, is not raised here)."""
        current = asyncio.current_task()
        others = [task for task in self._tasks if task is not current]
        for task in others:
            task.cancel()
        if wait:
            for task in others:
                with contextlib.suppress(BaseException):
                    await task
