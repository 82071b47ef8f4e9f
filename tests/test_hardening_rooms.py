"""Hardening, rooms: the limits cannot be walked around, a broker outage costs an error (not the
connection, not a ghost member), and a reconnecting member gets exactly what it missed."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

import labkit
from labkit.clients.room import RoomClient
from labkit.services import RedisServer, ServiceUnavailable


async def test_room_messages_count_against_the_users_rate_limit(make_server):
    server = make_server(user_requests_per_min=2, room_ai=False)
    async with RoomClient(server.ws_url, "lab", "ann") as ann:
        for i in range(30):
            await ann.say(f"message {i}")
        await ann.wait_for(lambda ev: len([e for e in ev if e["type"] in ("user_message", "error")]) >= 30)
        published = ann.of("user_message")
        limited = [e for e in ann.of("error") if e["code"] == "rate_limit_exceeded"]
        assert len(published) == 1 and len(limited) == 29          # a bucket of one, refilled at 2 a minute
        assert limited[0]["retry_after_s"] >= 1


async def test_a_reconnecting_member_gets_exactly_what_it_missed_even_past_its_queue(make_server):
    server = make_server(member_queue_size=16, room_ai=False)
    async with RoomClient(server.ws_url, "lab", "ann") as ann:
        await ann.wait_for(lambda ev: ev and ev[0]["type"] == "room_state")
        last = ann.events[0]["last_id"]
    async with RoomClient(server.ws_url, "lab", "ben") as ben:
        for i in range(50):                                      # one at a time: ben's own queue never fills
            await ben.say(f"missed {i}")
            await ben.wait_for(lambda ev: len(ben.of("user_message")) == i + 1)
        async with RoomClient(server.ws_url, "lab", "ann", after=last) as back:
            await back.wait_for(lambda ev: len(back.of("user_message")) >= 50, timeout=30)
            await asyncio.sleep(0)
            assert [e["content"] for e in back.of("user_message")] == [f"missed {i}" for i in range(50)]
            assert back.close_code is None                      # still connected


@pytest.fixture
def redis():
    try:
        server = RedisServer().start()
    except ServiceUnavailable as e:
        pytest.skip(f"Redis cannot be had here: {e}")
    yield server
    server.stop()


async def test_redis_going_away_mid_room_costs_an_error_not_the_member(redis):
    with labkit.serve(time_scale=0.05, redis_url=redis.url, room_ai=False) as server:
        hub = server.app.state.rooms
        async with RoomClient(server.ws_url, "lab", "ann") as ann:
            await ann.say("before")
            await ann.wait_for(lambda ev: any(e.get("content") == "before" for e in ev))
            port = redis.port
            redis.stop()                                           # Redis dies mid-room
            await ann.say("during")
            await ann.wait_for(lambda ev: any(e["type"] == "error" and e["code"] == "room_unavailable" for e in ev))
            assert ann.close_code is None                          # still connected (was: 1006)
            # a join while Redis is down fails cleanly, and leaves no ghost member behind
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with websockets.connect(server.ws_url + "/ws/room/lab?name=ben") as ws:
                    error = json.loads(await ws.recv())
                    assert error["code"] == "room_unavailable"
                    await ws.recv()
            assert closed.value.rcvd.code == 1013
            assert sorted(m.user for m in hub.rooms["lab"].members) == ["ann"]
            assert server.stats["room_members"] == 1
            revived = RedisServer(port=port).start()             # Redis comes back on the same address
            try:
                async with RoomClient(server.ws_url, "lab", "cy") as cy:       # the first join after it works
                    await cy.wait_for(lambda ev: ev and ev[0]["type"] == "room_state")
                    await cy.say("after")
                    await ann.wait_for(lambda ev: any(e.get("content") == "after" for e in ev), timeout=30)
                    await cy.wait_for(lambda ev: any(e.get("content") == "after" for e in ev), timeout=30)
            finally:
                revived.stop()
