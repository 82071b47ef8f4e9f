"""Rooms across two server processes on a real Redis: same order everywhere, one answer per message,
and a process that restarts loses nothing for its members."""

from __future__ import annotations

import asyncio

import pytest

from labkit.clients.room import RoomClient as Member, answers_at_least as completes
from labkit.rooms.broker import MemoryBroker, RedisBroker
from labkit.rooms.protocol import event_key
from labkit.server.process import ServerProcess



def app_server(redis_url: str) -> ServerProcess:
    return ServerProcess(["serve", "--port", "0", "--time-scale", "0.05", "--redis-url", redis_url,
                          "--room-lease-s", "1.0"])


@pytest.mark.parametrize("make", ["memory", "redis"])
async def test_both_brokers_behave_alike(make, redis_url):
    broker = MemoryBroker() if make == "memory" else RedisBroker(redis_url)
    room = f"same-{make}"
    try:
        ids = [await broker.publish(room, {"n": i}) for i in range(5)]
        assert [e["n"] for _, e in await broker.read(room, ids[1], block_s=0.1)] == [2, 3, 4]
        assert await broker.read(room, ids[-1], block_s=0.05) == []
        assert [e["n"] for _, e in await broker.history(room, 2)] == [3, 4]
        assert await broker.last_id(room) == ids[-1]
        assert await broker.add_member(room, "a") == 1 and await broker.add_member(room, "b") == 2
        assert await broker.remove_member(room, "a") == 1
        assert await broker.hold_lease(room, "p1", 5) and await broker.hold_lease(room, "p1", 5)
        assert not await broker.hold_lease(room, "p2", 5)
        await broker.release_lease(room, "p2")                      # not the holder: nothing happens
        assert not await broker.hold_lease(room, "p2", 5)
        await broker.release_lease(room, "p1")
        assert await broker.hold_lease(room, "p2", 5)
        await broker.set_cursor(room, ids[2])
        assert await broker.get_cursor(room) == ids[2]
    finally:
        await broker.aclose()


@pytest.mark.parametrize("make", ["memory", "redis"])
async def test_both_brokers_say_exactly_what_they_trimmed(make, redis_url):
    """A replay from before the trimmed part cannot be exact: the broker must say where that part ends
    (or a point after it: Redis trims ``MAXLEN ~`` in whole nodes and does not record the last id trimmed)."""
    broker = MemoryBroker(max_events=5) if make == "memory" else RedisBroker(redis_url, max_events=5)
    room = f"trim-{make}"
    try:
        assert await broker.trimmed_through(room) == "0-0"
        ids = [await broker.publish(room, {"n": i}) for i in range(300)]
        trimmed = await broker.trimmed_through(room)
        kept = [i for i, _ in await broker.read(room, "0-0", block_s=0, count=1000)]
        assert trimmed != "0-0" and kept[-1] == ids[-1]
        assert kept == [i for i in ids if event_key(i) > event_key(trimmed)]    # all that is after it is kept
        if make == "memory":
            assert trimmed == ids[-6]                                            # exactly the last one trimmed
    finally:
        await broker.aclose()


def _shared(events):
    return [e["id"] for e in events if "id" in e]


async def test_two_processes_share_a_room_and_survive_a_restart(redis_url):
    with app_server(redis_url) as p1, app_server(redis_url) as p2:
        ws1, ws2 = "ws" + p1.url[4:], "ws" + p2.url[4:]
        async with Member(ws2, "xproc", "ben") as ben:
            async with Member(ws1, "xproc", "ann") as ann:
                await ben.wait_for(lambda ev: any(e["type"] == "joined" and e["user"] == "ann" for e in ev))
                for i in range(3):
                    await ann.say(f"ann asks {i}: what is SSE?")
                    await ben.say(f"ben asks {i}: what is a WebSocket?")
                await ben.wait_for(completes(6), timeout=30)
                await ann.wait_for(completes(6), timeout=30)
                await asyncio.sleep(0.2)
                after = [e for e in ann.events if "id" in e][-1]["id"]
                before = list(ann.events)
            p1.stop()                                               # ann's process goes away
            await ben.wait_for(lambda ev: any(e["type"] == "left" and e["user"] == "ann" for e in ev))
            await ben.say("ben, while ann is away: what is TTFT?")
            await ben.wait_for(completes(7), timeout=30)
            with app_server(redis_url) as p1b:                      # ...and comes back on a new process
                async with Member("ws" + p1b.url[4:], "xproc", "ann", after=after) as ann2:
                    await ann2.say("ann is back: what is TPOT?")
                    await ann2.wait_for(completes(2), timeout=30)   # the one she missed, and hers
                    await ben.wait_for(completes(8), timeout=30)
                    await asyncio.sleep(0.3)
                    seen_by_ann = _shared(before) + _shared(ann2.events)
                    seen_by_ben = _shared(ben.events)
                    start = seen_by_ben.index(seen_by_ann[0])
                    assert seen_by_ann == seen_by_ben[start:start + len(seen_by_ann)]     # same order, no gaps
                    assert len(set(seen_by_ann)) == len(seen_by_ann)                     # nothing twice
                    asked = [e["id"] for e in ben.events if e["type"] == "user_message"]
                    answered = [e["reply_to"] for e in ben.events if e["type"] == "ai_complete"]
                    assert answered == asked and len(asked) == 8                         # once each, in order
