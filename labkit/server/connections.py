"""Tracking WebSocket connections and broadcasting to them: the tutorial's ConnectionManager, done right.

The tutorial's version has three faults that appear as soon as a client vanishes:

* ``broadcast`` sends in a plain loop, so one dead connection raises and the rest never get the
  message (and one slow client delays everyone behind it);
* ``disconnect`` uses ``list.remove``, which raises ``ValueError`` the second time, and the
  error path and the normal path both call it;
* two tasks sending on one socket at once can interleave.

Here sends go out concurrently with a timeout, a failed or timed-out send drops that connection,
``disconnect`` is idempotent, and each connection has a lock so its messages stay whole.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

__all__ = ["ConnectionManager"]


class _Socket(Protocol):
    async def send_text(self, data: str) -> None: ...


class ConnectionManager:
    def __init__(self, send_timeout_s: float = 5.0):
        self.send_timeout_s = send_timeout_s
        self._locks: dict[Any, asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def __contains__(self, ws: object) -> bool:
        return ws in self._locks

    def add(self, ws: _Socket) -> None:
        self._locks.setdefault(ws, asyncio.Lock())

    def disconnect(self, ws: _Socket) -> None:
        """Forget ``ws``; calling it twice, or for a socket never added, is harmless."""
        self._locks.pop(ws, None)

    async def send(self, ws: _Socket, message: dict | str, bounded: bool = True) -> bool:
        """Send to one connection; on failure or timeout drop it and return False (never raise).

        ``bounded=False``: no timeout here, for a caller that bounds the wait itself and may run this
        in another task's step (``StreamHub.push``: ``asyncio.timeout`` would cancel that task)."""
        lock = self._locks.get(ws)
        if lock is None:
            return False
        text = message if isinstance(message, str) else json.dumps(message)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the send in a new task,
            # which costs a trip through the event loop's queue on every message.
            if not bounded:
                async with lock:
                    await ws.send_text(text)
                return True
            async with lock, asyncio.timeout(self.send_timeout_s):
                await ws.send_text(text)
            return True
        except Exception:      # a vanished client shows up as many exception types; all mean "gone"
            self.disconnect(ws)
            return False

    async def broadcast(self, message: dict | str) -> int:
        """Send to every connection at once; returns how many received it. Dead ones are dropped."""
        text = message if isinstance(message, str) else json.dumps(message)
        targets = list(self._locks)          # a snapshot: connections may come and go meanwhile
        results = await asyncio.gather(*(self.send(ws, text) for ws in targets))
        return sum(results)
