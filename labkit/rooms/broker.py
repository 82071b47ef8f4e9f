"""Where room events live: an ordered, replayable log per room, shared by every server process.

The interface is what a room needs and nothing more: append an event (:meth:`Broker.publish`),
read the events after an id (blocking a little when there are none), read recent history, count
members, and hold a *lease* (only the process that holds a room's lease runs its AI, so a message is
answered once however many processes serve the room) with a *cursor* (the last event the AI
handled, so a new lease holder carries on where the last one stopped).

:class:`RedisBroker` keeps it in Redis Streams (``XADD``/``XREAD``: ordered, replayable ids), a
set per room for members, and a key with an expiry for the lease. :class:`MemoryBroker` does the
same in one process: the default without ``REDIS_URL``, and the reference the tests hold Redis to.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Protocol

from .protocol import event_key

__all__ = ["Broker", "MemoryBroker", "RedisBroker", "make_broker", "MAX_EVENTS"]

#: Events kept per room (AI tokens are events too); older ones are trimmed.
MAX_EVENTS = 20_000


class Broker(Protocol):
    async def publish(self, room: str, event: dict) -> str: ...
    async def read(self, room: str, after: str, block_s: float = 1.0, count: int = 500) -> list[tuple[str, dict]]: ...
    async def history(self, room: str, limit: int) -> list[tuple[str, dict]]: ...
    async def last_id(self, room: str) -> str: ...
    async def trimmed_through(self, room: str) -> str: ...
    async def add_member(self, room: str, member: str) -> int: ...
    async def remove_member(self, room: str, member: str) -> int: ...
    async def hold_lease(self, room: str, owner: str, ttl_s: float) -> bool: ...
    async def release_lease(self, room: str, owner: str) -> None: ...
    async def get_cursor(self, room: str) -> str: ...
    async def set_cursor(self, room: str, event_id: str) -> None: ...
    async def aclose(self) -> None: ...


class MemoryBroker:
    """The broker of a single process."""

    def __init__(self, max_events: int = MAX_EVENTS):
        self.max_events = max_events
        self._events: dict[str, deque] = {}
        self._counter = 0
        self._ms = 0
        self._changed: dict[str, asyncio.Event] = {}
        self._members: dict[str, set] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._cursors: dict[str, str] = {}
        self._trimmed: dict[str, str] = {}

    async def publish(self, room: str, event: dict) -> str:
        self._counter += 1
        self._ms = max(self._ms, int(time.time() * 1000))      # ids never go backwards
        event_id = f"{self._ms}-{self._counter}"
        events = self._events.setdefault(room, deque(maxlen=self.max_events))
        if len(events) == events.maxlen:
            self._trimmed[room] = events[0][0]
        events.append((event_id, event))
        changed = self._changed.pop(room, None)
        if changed is not None:
            changed.set()
        return event_id

    async def read(self, room: str, after: str, block_s: float = 1.0, count: int = 500) -> list[tuple[str, dict]]:
        found = self._after(room, after, count)
        if found or block_s <= 0:
            return found
        changed = self._changed.setdefault(room, asyncio.Event())
        try:
            async with asyncio.timeout(block_s):     # not wait_for: on 3.11 it can swallow a cancellation
                await changed.wait()
        except TimeoutError:
            return []
        return self._after(room, after, count)

    def _after(self, room: str, after: str, count: int) -> list[tuple[str, dict]]:
        key, newer = event_key(after), []
        for event_id, event in reversed(self._events.get(room, ())):     # new events are at the end
            if event_key(event_id) <= key:
                break
            newer.append((event_id, event))
        return newer[::-1][:count]

    async def history(self, room: str, limit: int) -> list[tuple[str, dict]]:
        return list(self._events.get(room, ()))[-limit:]

    async def last_id(self, room: str) -> str:
        events = self._events.get(room)
        return events[-1][0] if events else "0-0"

    async def trimmed_through(self, room: str) -> str:
        """The newest id trimmed away ("0-0": nothing yet): a replay from before it cannot be exact."""
        return self._trimmed.get(room, "0-0")

    async def add_member(self, room: str, member: str) -> int:
        self._members.setdefault(room, set()).add(member)
        return len(self._members[room])

    async def remove_member(self, room: str, member: str) -> int:
        self._members.setdefault(room, set()).discard(member)
        return len(self._members[room])

    async def hold_lease(self, room: str, owner: str, ttl_s: float) -> bool:
        holder = self._leases.get(room)
        now = time.monotonic()
        if holder is None or holder[0] == owner or holder[1] < now:
            self._leases[room] = (owner, now + ttl_s)
            return True
        return False

    async def release_lease(self, room: str, owner: str) -> None:
        if self._leases.get(room, ("",))[0] == owner:
            del self._leases[room]

    async def get_cursor(self, room: str) -> str:
        return self._cursors.get(room, "0-0")

    async def set_cursor(self, room: str, event_id: str) -> None:
        self._cursors[room] = event_id

    async def aclose(self) -> None:
        pass


_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBroker:
    """Rooms in Redis: ``room:<id>`` (a Stream of events), ``room:<id>:members`` (a set),
    ``room:<id>:lease`` (who runs the AI, with an expiry), ``room:<id>:cursor`` (the AI's progress)."""

    def __init__(self, url: str, max_events: int = MAX_EVENTS):
        import redis.asyncio as redis

        self.url, self.max_events = url, max_events
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._hold = self.redis.register_script(_HOLD)
        self._release = self.redis.register_script(_RELEASE)

    async def publish(self, room: str, event: dict) -> str:
        return await self.redis.xadd(f"room:{room}", {"e": json.dumps(event)}, maxlen=self.max_events,
                                     approximate=True)

    async def read(self, room: str, after: str, block_s: float = 1.0, count: int = 500) -> list[tuple[str, dict]]:
        block = int(block_s * 1000) if block_s > 0 else None
        reply = await self.redis.xread({f"room:{room}": after}, count=count, block=block)
        return [(i, json.loads(f["e"])) for _, entries in reply or () for i, f in entries]

    async def history(self, room: str, limit: int) -> list[tuple[str, dict]]:
        entries = await self.redis.xrevrange(f"room:{room}", count=limit)
        return [(i, json.loads(f["e"])) for i, f in reversed(entries)]

    async def last_id(self, room: str) -> str:
        entries = await self.redis.xrevrange(f"room:{room}", count=1)
        return entries[0][0] if entries else "0-0"

    async def trimmed_through(self, room: str) -> str:
        """Where the trimmed part ends. Redis does not record the last id ``XADD MAXLEN`` trimmed, only that
        entries were added that are no longer there (``entries-added`` > ``length``, Redis 7; an older
        Redis says nothing, so then any stream counts as trimmed): the id just before the first kept
        entry stands for it. That is at or after the real one, so a replay it allows is whole."""
        import redis.exceptions

        try:
            info = await self.redis.xinfo_stream(f"room:{room}")
        except redis.exceptions.ResponseError:          # no such stream yet
            return "0-0"
        first = info.get("first-entry")
        if not first or info.get("entries-added", float("inf")) <= info.get("length", 0):
            return info.get("max-deleted-entry-id") or "0-0"
        ms, n = event_key(first[0])
        before = f"{ms}-{n - 1}" if n else f"{ms - 1}-{2**64 - 1}"
        deleted = info.get("max-deleted-entry-id") or "0-0"
        return max(before, deleted, key=event_key)

    async def add_member(self, room: str, member: str) -> int:
        async with self.redis.pipeline() as p:
            p.sadd(f"room:{room}:members", member)
            p.scard(f"room:{room}:members")
            return (await p.execute())[1]

    async def remove_member(self, room: str, member: str) -> int:
        async with self.redis.pipeline() as p:
            p.srem(f"room:{room}:members", member)
            p.scard(f"room:{room}:members")
            return (await p.execute())[1]

    async def hold_lease(self, room: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._hold(keys=[f"room:{room}:lease"], args=[owner, int(ttl_s * 1000)]))

    async def release_lease(self, room: str, owner: str) -> None:
        await self._release(keys=[f"room:{room}:lease"], args=[owner])

    async def get_cursor(self, room: str) -> str:
        return await self.redis.get(f"room:{room}:cursor") or "0-0"

    async def set_cursor(self, room: str, event_id: str) -> None:
        await self.redis.set(f"room:{room}:cursor", event_id)

    async def aclose(self) -> None:
        await self.redis.aclose()


def make_broker(redis_url: str | None) -> Broker:
    """Redis when a URL is given, else in memory."""
    return RedisBroker(redis_url) if redis_url else MemoryBroker()
