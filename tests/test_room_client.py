"""RoomClient's entry returns once the server has added the member, not once the socket is open.

Returning at the open let a member on a second server process join and speak before the first member
was in, so the first never saw it (chapter 08 failed that way on a busy machine). These servers
stand in for a room whose join is slow, refused, or never finishes.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from labkit.clients import room as room_client
from labkit.clients.room import RoomClient


async def _serve(handler):
    server = await websockets.serve(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}"


async def test_entering_waits_for_the_servers_first_event():
    async def slow_join(ws):
        await asyncio.sleep(0.3)                   # the broker calls of a join on a busy server
        await ws.send(json.dumps({"type": "room_state", "members": 1, "history": []}))
        await ws.wait_closed()

    server, url = await _serve(slow_join)
    async with server:
        async with RoomClient(url, "r", "ann") as ann:
            assert [e["type"] for e in ann.events] == ["room_state"]


async def test_a_refused_join_returns_with_the_close_instead_of_hanging():
    async def refuse(ws):
        await ws.close(1008, "no")

    server, url = await _serve(refuse)
    async with server:
        async with RoomClient(url, "r", "ann") as ann:
            assert ann.events == [] and ann.close_code == 1008


async def test_a_join_that_never_finishes_is_a_timeout_naming_the_room(monkeypatch):
    async def silent(ws):
        await ws.wait_closed()

    monkeypatch.setattr(room_client, "JOIN_TIMEOUT_S", 0.3)
    server, url = await _serve(silent)
    async with server:
        with pytest.raises(TimeoutError, match="room 'r'"):
            async with RoomClient(url, "r", "ann"):
                pass
