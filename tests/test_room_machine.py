"""The room machine, directly (events in, texts out), and the room hub on an in-memory broker with a
socket stand-in: a replay is exact, or says which events are gone; nothing is dropped in silence."""

from __future__ import annotations

import asyncio
import json

import pytest

from labkit.rooms.broker import MemoryBroker
from labkit.rooms.machine import (MemberState, Replay, RoomAI, RoomFanout, RoomMember, RoomStateError, Snapshot,
                                  plan_replay, room_state)
from labkit.server.rooms import Member, RoomHub
from labkit.server.state import ServerConfig, ServerStats
from labkit.server.upstream import UpstreamToken


def ev(n: int, kind: str = "user_message", **kw) -> tuple[str, dict]:
    return f"1000-{n}", {"type": kind, "user": "ann", "content": f"m{n}", **kw}


def outbox(member: RoomMember) -> list[dict]:
    out = []
    while (text := member.take()) is not None:
        out.append(json.loads(text))
    return out


def test_a_joining_member_gets_its_replay_then_exactly_the_buffered_events_after_it():
    room = RoomFanout("lab", "1000-0")
    ann = room.add(RoomMember("ann:1", "ann", queue_size=2))
    room.read([ev(1), ev(2), ev(3)])                       # the fan-out reads while ann is replayed to
    ann.replayed([ev(1), ev(2)])                           # a replay batch bigger than the bound: all of it
    assert ann.state is MemberState.JOINING and ann.pending() == 2
    assert [e["id"] for e in outbox(ann)] == ["1000-1", "1000-2"]           # the writer sends the replay
    assert ann.go_live() is False
    assert [e["id"] for e in outbox(ann)] == ["1000-3"]                     # 1 and 2 once, 3 from the buffer
    room.read([ev(4)])
    assert [e["id"] for e in outbox(ann)] == ["1000-4"] and ann.cursor == "1000-4"


def test_a_member_past_its_bound_is_kicked_in_the_same_call_and_gets_nothing_more():
    room = RoomFanout("lab", "1000-0")
    slow, fast = (room.add(RoomMember(f"{u}:1", u, queue_size=2)) for u in ("slow", "fast"))
    for m in (slow, fast):
        m.welcome('{"type": "room_state"}', "1000-0")
        m.go_live()
        m.take()
    assert room.read([ev(1), ev(2)]) == []
    outbox(fast)
    assert room.read([ev(3)]) == [slow]                    # the third waiting message kicks it
    assert slow.state is MemberState.KICKED and "2 messages were waiting" in slow.kick_reason
    assert slow.take() is None and slow.put("more") is False and room.read([ev(4)]) == []
    assert [e["id"] for e in outbox(fast)] == ["1000-3", "1000-4"]          # the others never wait


def test_the_fanout_and_the_replay_refuse_to_go_backwards():
    room = RoomFanout("lab", "1000-5")
    with pytest.raises(RoomStateError, match="read 1000-5 after 1000-5"):
        room.read([ev(5)])
    m = RoomMember("ann:1", "ann", 4)
    m.replayed([ev(2)])
    with pytest.raises(RoomStateError, match="went backwards"):
        m.replayed([ev(1)])
    m.go_live()
    with pytest.raises(RoomStateError, match="go_live\\(\\) on member ann:1, which is live"):
        m.go_live()
    with pytest.raises(RoomStateError, match="without a cursor"):
        RoomMember("b:1", "b", 4).go_live()


def test_a_replay_from_before_what_the_broker_keeps_is_a_snapshot_that_says_so():
    assert plan_replay(None, "0-0") == Snapshot()
    assert plan_replay("1000-3", "0-0") == Replay("1000-3")
    assert plan_replay("1000-3", "1000-3") == Replay("1000-3")          # it has the last trimmed one
    gap = plan_replay("1000-3", "1000-7")
    assert isinstance(gap, Snapshot) and gap.gap["after"] == "1000-3" and gap.gap["trimmed_through"] == "1000-7"
    text, last = room_state("lab", 2, [ev(8), ev(9, "ai_token")], gap.gap)
    state = json.loads(text)
    assert last == "1000-9" and [e["id"] for e in state["history"]] == ["1000-8"]
    assert state["replay_gap"]["trimmed_through"] == "1000-7"


async def test_the_memory_broker_says_exactly_what_it_trimmed():
    broker = MemoryBroker(max_events=3)
    assert await broker.trimmed_through("r") == "0-0"
    ids = [await broker.publish("r", {"n": i}) for i in range(5)]
    assert await broker.trimmed_through("r") == ids[1]
    assert [i for i, _ in await broker.read("r", "0-0", block_s=0)] == ids[2:]


def test_the_ai_answers_members_messages_in_order_with_a_bounded_context():
    ai = RoomAI(context_messages=4)
    with pytest.raises(RoomStateError, match="rebuild"):
        ai.turn(*ev(1))
    ai.rebuild([ev(1), ("1000-2", {"type": "ai_complete", "content": "a1"}), ev(3)], cursor="1000-2")
    assert ai.conversation == [{"role": "user", "content": "ann: m1"}, {"role": "assistant", "content": "a1"}]
    assert ai.turn("1000-4", {"type": "joined", "user": "ben", "members": 2}) is None
    turn = ai.turn(*ev(3))
    assert turn.reply_to == "1000-3" and turn.messages[-1] == {"role": "user", "content": "ann: m3"}
    ai.answered(turn, "a3")
    for n in (5, 6):
        ai.answered(ai.turn(*ev(n)), f"a{n}")
    assert len(ai.conversation) == 4 and ai.conversation[-1] == {"role": "assistant", "content": "a6"}
    assert ai.complete(turn, "x") == {"type": "ai_complete", "reply_to": "1000-3", "content": "x"}
    ai.lease_lost()
    assert ai.needs_history


def test_a_new_holder_does_not_answer_again_what_the_last_one_answered_before_moving_the_cursor():
    """The holder publishes an answer, then moves the cursor; stopped in between, it leaves the answer
    past the cursor. The next holder skips that message (keeping its answer as context), answers the
    next one, and answers again only a message whose answer never completed."""
    ai = RoomAI(context_messages=6)
    history = [ev(1), ("1000-2", {"type": "ai_complete", "reply_to": "1000-1", "content": "a1"}),
               ev(3), ("1000-4", {"type": "ai_typing", "active": True, "reply_to": "1000-3"}),
               ("1000-5", {"type": "ai_complete", "reply_to": "1000-3", "content": "a3"}),
               ev(6), ("1000-7", {"type": "ai_token", "reply_to": "1000-6", "seq": 0, "content": "half"}),
               ev(8), ("1000-9", {"type": "ai_error", "reply_to": "1000-8", "code": "x", "message": "failed"})]
    ai.rebuild(history, cursor="1000-2")                       # the cursor still at m1's answer
    assert ai.turn(*ev(3)) is None                             # answered already: not again
    assert ai.conversation[-1] == {"role": "assistant", "content": "a3"}
    again = ai.turn(*ev(6))                                    # cut off mid-answer: answered again
    assert again is not None and again.messages[-2:] == [{"role": "assistant", "content": "a3"}, again.question]
    assert ai.turn(*ev(8)) is None                             # its error was published: settled too
    assert ai.turn(*ev(10)) is not None
    ai.lease_lost()
    ai.rebuild(history, cursor="1000-9")                       # a cursor past them all: nothing is skipped
    assert ai.turn(*ev(10)) is not None


# ---- the hub on a memory broker, with a socket stand-in ---------------------------------------------

class FakeSocket:
    def __init__(self):
        self.sent: list[dict] = []
        self.changed = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))
        self.changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def until(self, predicate) -> None:
        async with asyncio.timeout(10):
            while not predicate(self.sent):
                self.changed.clear()
                await self.changed.wait()


async def test_the_hub_replays_exactly_or_says_which_events_are_gone():
    broker = MemoryBroker(max_events=50)
    hub = RoomHub(ServerConfig(room_ai=False).split().rooms, ServerStats(), upstream=None, broker=broker)
    try:
        ids = [await broker.publish("lab", {"type": "user_message", "user": "ann", "content": str(i)})
               for i in range(30)]
        exact = FakeSocket()
        await hub.join("lab", Member(exact, "ben", 4), after=ids[9])            # 20 missed, a bound of 4
        await exact.until(lambda sent: any(e["type"] == "joined" for e in sent))
        assert [e["id"] for e in exact.sent if e["type"] == "user_message"] == ids[10:]

        for i in range(60):                                                    # the broker trims the old ones
            await broker.publish("lab", {"type": "ai_token", "reply_to": ids[0], "seq": i, "content": "x"})
        late = FakeSocket()
        await hub.join("lab", Member(late, "cy", 4), after=ids[9])
        await late.until(lambda sent: bool(sent))
        first = late.sent[0]
        assert first["type"] == "room_state" and first["replay_gap"]["after"] == ids[9]
        assert not any(e["type"] == "user_message" for e in late.sent)         # no replay with a hole in it
    finally:
        await hub.aclose()


class _OneWordModel:
    """An upstream stand-in: every answer is one token, "ok"."""
    class _Stream:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

        async def tokens(self):
            yield UpstreamToken("ok", 0.0)

    async def open_stream(self, messages, **_):
        return self._Stream()


class _StopsBeforeTheCursor:
    """A broker as the stopping holder sees it: once its first answer is published, it never moves the
    cursor again (its process is shut down between the two)."""
    def __init__(self, broker):
        self._broker, self._answered = broker, False

    def __getattr__(self, name):
        return getattr(self._broker, name)

    async def publish(self, room_id, event):
        self._answered = self._answered or event["type"] == "ai_complete"
        return await self._broker.publish(room_id, event)

    async def set_cursor(self, room_id, event_id):
        if self._answered:
            await asyncio.Event().wait()
        await self._broker.set_cursor(room_id, event_id)


async def test_the_next_lease_holder_does_not_answer_again_what_was_answered_before_the_cursor_moved():
    broker, config = MemoryBroker(max_events=500), ServerConfig().split().rooms
    completes = lambda sent: [e["reply_to"] for e in sent if e["type"] == "ai_complete"]   # noqa: E731
    first = RoomHub(config, ServerStats(), upstream=_OneWordModel(), broker=_StopsBeforeTheCursor(broker), lease_s=0.3)
    ann = FakeSocket()
    await first.join("lab", Member(ann, "ann", 100), after=None)
    asked = [await broker.publish("lab", {"type": "user_message", "user": "ann", "content": "m1"})]
    await ann.until(lambda sent: completes(sent) == asked)
    await first.aclose()                                     # stops with the cursor still before m1
    second = RoomHub(config, ServerStats(), upstream=_OneWordModel(), broker=broker, lease_s=0.3)
    try:
        ben = FakeSocket()
        await second.join("lab", Member(ben, "ben", 100), after="0-0")
        asked.append(await broker.publish("lab", {"type": "user_message", "user": "ben", "content": "m2"}))
        await ben.until(lambda sent: asked[1] in completes(sent))
        assert completes(ben.sent) == asked                  # m1 once (the first holder's), then m2
    finally:
        await second.aclose()


def test_who_may_join_as_whom():
    from labkit.rooms.machine import JoinRequest, check_join

    assert check_join("lab", "local", "ann", None, open_server=True) == JoinRequest("ann", None)
    assert check_join("lab", "ann", None, "1-2", open_server=False) == JoinRequest("ann", "1-2")
    assert check_join("lab", "ann", "ben", None, open_server=False)[0] == "name_mismatch"
    assert check_join("no spaces", "ann", None, None, open_server=False)[0] == "invalid_room_id"
    assert check_join("lab", "local", "a b", None, open_server=True)[0] == "invalid_name"
    assert check_join("lab", "ann", None, "yesterday", open_server=False)[0] == "invalid_after"
