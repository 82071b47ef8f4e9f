"""Multi-user rooms on one process: order, queueing, isolation, slow members, bad input."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import string

import pytest
import websockets

from labkit.clients.room import RoomClient as Member, answers_at_least
from labkit.rooms.broker import MemoryBroker
from labkit.rooms.protocol import RoomProtocolError, event_key, parse_room_message, valid_room_id


def completes(n):
    return answers_at_least(n)


def test_room_protocol_is_pure_and_strict():
    assert valid_room_id("lab-1") and not valid_room_id("../etc") and not valid_room_id("a" * 65)
    assert parse_room_message('{"type": "message", "content": "hi"}') == {"type": "message", "content": "hi"}
    for raw, code in (("nope", "invalid_json"), ('{"type": "shout"}', "unknown_type"),
                      ('{"type": "message", "content": " "}', "invalid_content")):
        with pytest.raises(RoomProtocolError) as e:
            parse_room_message(raw)
        assert e.value.code == code
    assert event_key("1700000000000-12") > event_key("1700000000000-9")


async def test_memory_broker_reads_in_order_and_holds_leases():
    b = MemoryBroker()
    ids = [await b.publish("r", {"n": i}) for i in range(5)]
    assert [e["n"] for _, e in await b.read("r", ids[1], block_s=0)] == [2, 3, 4]
    assert await b.read("r", ids[-1], block_s=0.05) == []
    assert await b.hold_lease("r", "p1", 10) and not await b.hold_lease("r", "p2", 10)
    await b.release_lease("r", "p1")
    assert await b.hold_lease("r", "p2", 10)


async def test_two_members_see_the_same_room_and_the_ai_answers_each_message_once(server):
    url = server.ws_url
    async with Member(url, "lab", "ann") as ann, Member(url, "lab", "ben") as ben:
        await ann.wait_for(lambda ev: any(e["type"] == "joined" and e["user"] == "ben" for e in ev))
        await ben.wait_for(lambda ev: len(ev) >= 1)
        assert ann.events[0]["type"] == "room_state" and ann.events[0]["members"] == 1
        assert ben.events[0]["type"] == "room_state" and ben.events[0]["members"] == 2
        await ann.say("What is SSE?")
        await ben.say("And WebSockets?")              # arrives while the AI answers: queued, not dropped
        await ann.wait_for(completes(2))
        await ben.wait_for(completes(2))
        shared = lambda m: [e for e in m.events if e["type"] not in ("room_state", "joined")]   # noqa: E731
        # until each has all the other has (a fixed wait let a busy moment compare a member still receiving)
        await ann.wait_for(lambda _: len(shared(ann)) >= len(shared(ben)))
        await ben.wait_for(lambda _: len(shared(ben)) >= len(shared(ann)))
        assert [e["id"] for e in shared(ann)] == [e["id"] for e in shared(ben)]      # same events, same order
        messages = ann.of("user_message")
        answers = ann.of("ai_complete")
        assert [a["reply_to"] for a in answers] == [m["id"] for m in messages]       # in order, once each
        first, second = (messages[0]["id"], messages[1]["id"])
        kinds = [(e["type"], e.get("reply_to")) for e in ann.events if e["type"].startswith("ai_")]
        last_of_first = max(i for i, k in enumerate(kinds) if k[1] == first)
        first_of_second = min(i for i, k in enumerate(kinds) if k[1] == second)
        assert last_of_first < first_of_second                                      # not interleaved
        tokens = [e for e in ann.events if e["type"] == "ai_token" and e["reply_to"] == first]
        assert "".join(t["content"] for t in tokens) == answers[0]["content"]
        assert ann.of("ai_typing")[0]["active"] is True
    async with Member(url, "lab", "cy") as cy:                                      # a late joiner sees the story
        await cy.wait_for(lambda ev: ev and ev[0]["type"] == "room_state")
        history = cy.events[0]["history"]
        assert [h["type"] for h in history] == ["user_message", "user_message", "ai_complete", "ai_complete"] or \
               [h["type"] for h in history] == ["user_message", "ai_complete", "user_message", "ai_complete"]


async def test_rooms_are_isolated(server):
    url = server.ws_url
    async with Member(url, "red", "ann") as ann, Member(url, "blue", "ben") as ben:
        await ann.say("only for red")
        await ann.wait_for(completes(1))
        await asyncio.sleep(0.1)
        assert not any(e["type"] in ("user_message", "ai_token", "ai_complete") for e in ben.events)
        assert all(e.get("user") != "ann" for e in ben.events)


async def test_a_reconnecting_member_catches_up_from_its_last_id(server):
    url = server.ws_url
    async with Member(url, "lab", "ann") as ann:
        async with Member(url, "lab", "ben") as ben:
            await ben.wait_for(lambda ev: len(ev) >= 2)
            last_seen = ben.events[-1]["id"]
        await ann.say("What is SSE?")
        await ann.wait_for(completes(1))
        async with Member(url, "lab", "ben", after=last_seen) as ben2:
            await ben2.wait_for(completes(1))
            # what ben missed, up to the answer: ann may already hold later events (the AI's typing
            # off, ben2's own join) that ben2's socket has yet to deliver
            after = [e["id"] for e in ann.events if "id" in e and event_key(e["id"]) > event_key(last_seen)]
            answer = next(e["id"] for e in ann.events if e["type"] == "ai_complete")
            missed = after[:after.index(answer) + 1]
            assert len(missed) > 2 and [e["id"] for e in ben2.events][:len(missed)] == missed


async def test_bad_room_ids_and_messages_get_errors(server):
    async with websockets.connect(server.ws_url + "/ws/room/bad.room") as ws:
        err = json.loads(await ws.recv())
        assert err == {"type": "error", "code": "invalid_room_id", "message": err["message"]}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1008
    async with Member(server.ws_url, "lab", "ann") as ann:
        await ann.ws.send("not json")
        await ann.ws.send(json.dumps({"type": "message", "content": ""}))
        await ann.wait_for(lambda ev: len([e for e in ev if e["type"] == "error"]) == 2)
        await ann.ws.send(json.dumps({"type": "ping"}))
        await ann.wait_for(lambda ev: ev[-1]["type"] == "pong")


async def test_a_slow_member_is_cut_loose_and_never_stalls_the_room(make_server):
    """A member that stops reading: its queue fills, it is disconnected with a reason, the others go on."""
    server = make_server(member_queue_size=16, room_ai=False)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = await websockets.connect(server.ws_url + "/ws/room/lab?name=slow", sock=sock, max_size=None,
                                    max_queue=1)
    slow.transport.pause_reading()                   # stops reading: like a phone on a dead network
    rng = random.Random(0)
    async with Member(server.ws_url, "lab", "fast") as fast:
        # ~8 MB in all: more than the kernel's socket buffers (up to 4 MB) hide. Random text, because
        # WebSocket compression would shrink a repeated letter to nothing.
        for i in range(1_200):
            await fast.say(f"{i} " + "".join(rng.choices(string.ascii_letters, k=7_000)))
            if i % 8 == 7:      # the fast member reads as it goes (at most 8 of its own in flight, under the 16)
                await fast.wait_for(lambda ev, seen=i - 7: len(fast.of("user_message")) >= seen, timeout=60)
        await fast.wait_for(lambda ev: len(fast.of("user_message")) == 1_200, timeout=60)   # never stalled
        assert server.stats["room_members_kicked"] == 1
        await fast.wait_for(lambda ev: any(e["type"] == "left" and e["user"] == "slow" for e in ev))
    slow.transport.resume_reading()
    with pytest.raises(websockets.ConnectionClosed) as closed:     # it gets what was in flight, then the end
        while True:
            await asyncio.wait_for(slow.recv(), 10)
    if closed.value.rcvd is not None:                              # the close frame, when it could get through
        assert closed.value.rcvd.code == 4002 and "too slow" in closed.value.rcvd.reason
