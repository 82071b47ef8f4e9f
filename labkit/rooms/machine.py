"""A room's decisions, pure: fan-out to members, the replay on reconnect, and the AI's turns.

:mod:`labkit.server.rooms` runs the tasks around this (one fan-out reader per room, one writer per
member, the AI under a lease) and does every broker call and socket write; everything it decides
with what it read lives here, with no I/O, so the tests drive it event by event.

**No event is ever dropped in silence**, by construction:

* every text a member gets goes through one door, :meth:`RoomMember.put`. Live events respect
  the member's bound (``queue_size``): when it is full the member is marked *kicked* with the
  reason, in the same call. There is no "offer" whose ``False`` a caller can forget to read;
* a member that reconnects with ``?after=<id>`` is ``JOINING`` until its replay is done: the
  fan-out buffers what it reads for that member meanwhile, and :meth:`RoomMember.go_live` hands
  over exactly the buffered events after the replay's last id. Replay batches are never bounded
  by the queue (the adapter waits for the writer between batches instead);
* the broker keeps a bounded log (older events are trimmed). A replay from before what the broker
  still keeps cannot be exact, so :func:`plan_replay` says so: the member gets a fresh
  ``room_state`` with ``replay_gap`` saying which events are gone, never a replay with a hole in it.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass

from ..auth import USER_NAME
from .protocol import event_key, valid_room_id

__all__ = ["MemberState", "RoomStateError", "RoomMember", "RoomFanout", "Replay", "Snapshot", "plan_replay",
           "RoomAI", "Turn", "JoinRequest", "check_join", "encode", "room_state", "error", "HISTORY_TYPES",
           "CONTEXT_MESSAGES"]

#: The events a joining member's ``room_state`` shows as the room's story.
HISTORY_TYPES = ("user_message", "ai_complete")
#: Turns of the room's conversation the AI sees.
CONTEXT_MESSAGES = 20


class RoomStateError(RuntimeError):
    """A call the member's or the room's state does not allow (a bug in the caller)."""


def encode(event_id: str, event: dict) -> str:
    """A broker event as the member receives it: the event with its ``id``."""
    return json.dumps({**event, "id": event_id})


def error(code: str, message: str, **extra) -> str:
    return json.dumps({"type": "error", "code": code, "message": message, **extra})


def room_state(room: str, members: int, history: list[tuple[str, dict]], gap: dict | None = None) -> tuple[str, str]:
    """The welcome of a member who did not ask for a replay (or whose replay cannot be exact), and the
    id it starts after. ``history`` is the broker's recent events, oldest first."""
    last = history[-1][0] if history else "0-0"
    message = {"type": "room_state", "room": room, "members": members, "last_id": last,
               "history": [{**e, "id": i} for i, e in history if e["type"] in HISTORY_TYPES]}
    if gap is not None:
        message["replay_gap"] = gap
    return json.dumps(message), last


# ---- who may join, as whom ----------------------------------------------------------------------

@dataclass(frozen=True)
class JoinRequest:
    """A member's name and where its replay starts, once the handshake checks passed."""
    name: str
    after: str | None


def check_join(room_id: str, token_user: str, asked: str | None, after: str | None, open_server: bool
               ) -> JoinRequest | tuple[str, str]:
    """The author is who the token says; only an open loopback server (no token: every name is
    self-declared there anyway) lets ``?name=`` choose one. Returns the request, or (code, message)."""
    name = (asked or token_user) if open_server else token_user
    if not valid_room_id(room_id):
        return "invalid_room_id", "A room id is 1-64 letters, digits, '_' or '-'."
    if asked is not None and asked != name:
        return "name_mismatch", f"Your token is for {name!r}: you cannot speak as {asked!r}."
    if not USER_NAME.match(name):
        return "invalid_name", "A name is 1-32 letters, digits, '_' or '-'."
    if after is not None:
        try:
            event_key(after)
        except ValueError:
            return "invalid_after", "'after' must be an event id from this room."
    return JoinRequest(name, after)


# ---- members ---------------------------------------------------------------------------------------

class MemberState(enum.Enum):
    JOINING = "joining"      # being replayed to, or getting its room_state: live events are buffered
    LIVE = "live"            # gets every event after its cursor, within its bound
    KICKED = "kicked"        # could not keep up (or could not be written to): gets nothing more
    LEFT = "left"


class RoomMember:
    """One member's view of the room: its cursor, its outbox and its state."""

    def __init__(self, member_id: str, user: str, queue_size: int):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.id, self.user, self.queue_size = member_id, user, queue_size
        self.state = MemberState.JOINING
        self.cursor: str | None = None           # the last event id it has been given
        self.kick_reason: str | None = None
        self._outbox: deque[str] = deque()
        self._buffered: list[tuple[str, str]] = []   # live events read while JOINING

    def __repr__(self) -> str:
        return f"RoomMember({self.id!r}, {self.state.value}, cursor={self.cursor!r}, outbox={len(self._outbox)})"

    # the one door in
    def put(self, text: str, *, bounded: bool = True) -> bool:
        """Queue ``text`` for the member. Past the bound the member is kicked (True: it just was, the
        adapter closes it); a kicked or departed member takes nothing more."""
        if self.state in (MemberState.KICKED, MemberState.LEFT):
            return False
        if bounded and len(self._outbox) >= self.queue_size:
            self.kick(f"too slow: {len(self._outbox)} messages were waiting")
            return True
        self._outbox.append(text)
        return False

    def kick(self, reason: str) -> bool:
        """Stop delivering; True the first time (the adapter then closes the connection once)."""
        if self.state in (MemberState.KICKED, MemberState.LEFT):
            return False
        self.state, self.kick_reason = MemberState.KICKED, reason
        self._outbox.clear()
        return True

    def leave(self) -> None:
        self.state = MemberState.LEFT
        self._outbox.clear()
        self._buffered.clear()

    # the fan-out's side
    def offer_event(self, event_id: str, text: str) -> bool:
        """A live event the fan-out read: buffered while joining, delivered after the cursor when live.
        True when this kicked the member."""
        if self.state is MemberState.JOINING:
            self._buffered.append((event_id, text))
            return False
        if self.state is MemberState.LIVE and event_key(event_id) > event_key(self.cursor):
            self.cursor = event_id
            return self.put(text)
        return False

    # the join's side
    def replayed(self, batch: list[tuple[str, dict]]) -> None:
        """One batch of the replay (in broker order, after the cursor): all of it, whatever the bound."""
        self._require(MemberState.JOINING, "replayed")
        for event_id, event in batch:
            if self.cursor is not None and event_key(event_id) <= event_key(self.cursor):
                raise RoomStateError(f"replay of {self.id} went backwards: {event_id} after {self.cursor}")
            self.put(encode(event_id, event), bounded=False)
            self.cursor = event_id

    def welcome(self, text: str, last: str) -> None:
        """The room_state of a member without a (usable) replay; it starts after ``last``."""
        self._require(MemberState.JOINING, "welcome")
        self.put(text, bounded=False)
        self.cursor = last

    def go_live(self, after: str | None = None) -> bool:
        """The replay is done (its last id is the cursor, or ``after`` when nothing was replayed): hand over
        the buffered events after it, in order, then follow live. True when that kicked the member."""
        self._require(MemberState.JOINING, "go_live")
        if self.cursor is None:
            if after is None:
                raise RoomStateError(f"{self.id} goes live without a cursor")
            self.cursor = after
        self.state = MemberState.LIVE
        buffered, self._buffered = self._buffered, []
        return any([self.offer_event(event_id, text) for event_id, text in buffered])

    # the writer's side
    def take(self) -> str | None:
        """The next text to write, or None when the outbox is empty."""
        return self._outbox.popleft() if self._outbox else None

    def pending(self) -> int:
        return len(self._outbox)

    def _require(self, state: MemberState, call: str) -> None:
        if self.state is not state:
            raise RoomStateError(f"{call}() on member {self.id}, which is {self.state.value} "
                                 f"(it must be {state.value})")


@dataclass(frozen=True)
class Replay:
    """Replay exactly the events after ``after``."""
    after: str


@dataclass(frozen=True)
class Snapshot:
    """No replay: a fresh ``room_state`` (with ``gap`` set when a replay was asked but cannot be exact)."""
    gap: dict | None = None


def plan_replay(after: str | None, trimmed_through: str) -> Replay | Snapshot:
    """How a member joins. ``trimmed_through`` is the newest id the broker has trimmed away ("0-0": none),
    read *after* the replay's first read (trimming only moves forward, so a replay that passes this
    check was whole when it was read)."""
    if after is None:
        return Snapshot()
    if event_key(after) >= event_key(trimmed_through):
        return Replay(after)
    return Snapshot({"after": after, "trimmed_through": trimmed_through,
                     "message": f"The events after {after} up to {trimmed_through} are no longer kept; "
                                f"this is the room as it is now."})


class RoomFanout:
    """One room's members on this process and the fan-out's position in the broker."""

    def __init__(self, room_id: str, start_id: str):
        self.id, self.last = room_id, start_id
        self.members: dict[str, RoomMember] = {}

    def add(self, member: RoomMember) -> RoomMember:
        """From here the fan-out buffers for the (joining) member."""
        if member.id in self.members:
            raise RoomStateError(f"{member.id} is already in room {self.id}")
        if member.state is not MemberState.JOINING:
            raise RoomStateError(f"{member.id} is {member.state.value}; only a joining member can be added")
        self.members[member.id] = member
        return member

    def remove(self, member_id: str) -> RoomMember | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            member.leave()
        return member

    def read(self, batch: list[tuple[str, dict]]) -> list[RoomMember]:
        """A batch the fan-out read after :attr:`last`, in order: offered to every member. Returns the
        members this kicked (close them)."""
        kicked: dict[str, RoomMember] = {}
        for event_id, event in batch:
            if event_key(event_id) <= event_key(self.last):
                raise RoomStateError(f"room {self.id}: the fan-out read {event_id} after {self.last}")
            self.last = event_id
            text = encode(event_id, event)
            for member in list(self.members.values()):
                if member.offer_event(event_id, text):
                    kicked[member.id] = member
        return list(kicked.values())


# ---- the AI --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Turn:
    """Answer the message ``reply_to`` with these ``messages`` (the context, then the question)."""
    reply_to: str
    question: dict
    messages: list[dict]


class RoomAI:
    """What the room's AI answers, and with what context. Where the lease is held, the adapter
    rebuilds the conversation up to the cursor once (:meth:`rebuild`), then feeds it the events after
    the cursor (:meth:`turns`); after each it records the outcome and moves the cursor. A lost lease
    forgets the conversation (the new holder carries on from the shared cursor).

    The cursor moves *after* an answer is published, so a holder that stops in between (its process
    shut down, its lease lapsed) leaves an answered message past the cursor. :meth:`rebuild` finds
    such answers in the history, and :meth:`turn` skips their messages instead of answering them a
    second time (it happened: the same message answered by two processes, one after the other). An
    answer cut off mid-stream has no ``ai_complete`` or ``ai_error``: that message is answered again."""

    def __init__(self, context_messages: int = CONTEXT_MESSAGES):
        self.context_messages = context_messages
        self.conversation: list[dict] | None = None
        #: past the cursor: message id -> its published answer (None for an error), from rebuild()
        self._settled: dict[str, str | None] = {}

    @property
    def needs_history(self) -> bool:
        return self.conversation is None

    def rebuild(self, history: list[tuple[str, dict]], cursor: str) -> None:
        turns, self._settled = [], {}
        for event_id, event in history:
            if event_key(event_id) > event_key(cursor):
                if event["type"] == "ai_complete":
                    self._settled[event["reply_to"]] = event["content"]
                elif event["type"] == "ai_error":
                    self._settled.setdefault(event["reply_to"], None)
                continue
            if event["type"] == "user_message":
                turns.append(_question(event))
            elif event["type"] == "ai_complete":
                turns.append({"role": "assistant", "content": event["content"]})
        self.conversation = turns[-self.context_messages:]

    def turn(self, event_id: str, event: dict) -> Turn | None:
        """The turn an event asks for (a member's message), or None (the cursor just moves past it:
        not a message, or one a previous holder already answered)."""
        if self.conversation is None:
            raise RoomStateError("the AI has no conversation: rebuild() first (after taking the lease)")
        if event["type"] != "user_message":
            return None
        question = _question(event)
        turn = Turn(event_id, question, [*self.conversation[-self.context_messages:], question])
        if event_id in self._settled:
            answer = self._settled.pop(event_id)
            if answer is not None:
                self.answered(turn, answer)
            return None
        return turn

    def answered(self, turn: Turn, text: str) -> None:
        if self.conversation is not None:
            self.conversation += [turn.question, {"role": "assistant", "content": text}]
            del self.conversation[:-self.context_messages]

    def lease_lost(self) -> None:
        self.conversation, self._settled = None, {}

    # what the AI publishes, in order: typing on, tokens, complete (or error), typing off
    @staticmethod
    def typing(turn: Turn, active: bool) -> dict:
        return {"type": "ai_typing", "active": active, "reply_to": turn.reply_to}

    @staticmethod
    def token(turn: Turn, seq: int, content: str) -> dict:
        return {"type": "ai_token", "reply_to": turn.reply_to, "seq": seq, "content": content}

    @staticmethod
    def complete(turn: Turn, text: str) -> dict:
        return {"type": "ai_complete", "reply_to": turn.reply_to, "content": text}

    @staticmethod
    def failed(turn: Turn, code: str | None, message: str) -> dict:
        return {"type": "ai_error", "reply_to": turn.reply_to, "code": code or "upstream_error", "message": message}


def _question(event: dict) -> dict:
    return {"role": "user", "content": f"{event['user']}: {event['content']}"}
