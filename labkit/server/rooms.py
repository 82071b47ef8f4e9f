"""Multi-user rooms over WebSocket (``/ws/room/{room_id}``), on one process or many.

Everything a room says goes through its :mod:`broker <labkit.rooms.broker>` first, and comes back
to the members from there: so members on different server processes see the same events in the
same order, and a member who reconnects with ``?after=<last id>`` gets exactly what they missed.

The tutorial's ``CollaborativeChat`` fails in ways this module is built to avoid:

* it broadcasts in a loop of awaited sends, so one slow member stalls the room. Here each member
  has a bounded queue and a writer task of its own; a member whose queue fills is disconnected
  with a reason (close code 4002), and nobody else waits for them;
* a message that arrives while the AI answers is silently not answered. Here the AI handles the
  room's messages one at a time, in order, so later ones are queued, not dropped, not interleaved;
* with two processes, both would answer. Here only the holder of the room's lease runs its AI, and
  a cursor in the broker records the last message answered, so a new holder carries on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time

from fastapi import APIRouter, WebSocket

from ..auth import USER_NAME
from ..protocol.openai_chat import APIError
from ..ratelimit import KeyedBuckets
from ..rooms.broker import Broker
from ..rooms.protocol import RoomProtocolError, event_key, parse_room_message, valid_room_id
from .participants import Participants
from .state import RoomConfig, ServerStats
from .upstream import Upstream

__all__ = ["RoomHub", "create_room_router", "SLOW_MEMBER_CLOSE"]

log = logging.getLogger("labkit.rooms")

#: The close code a member gets when it cannot keep up (4000-4999 are for applications).
SLOW_MEMBER_CLOSE = 4002
HISTORY_EVENTS = 400          # events scanned for a joining member's room_state
CONTEXT_MESSAGES = 20         # turns of the room's conversation the AI sees


class RoomUnavailable(Exception):
    """Joining failed (the broker is down); the member was not added anywhere."""


class MemberTooSlow(Exception):
    """The member did not read the events it asked to be replayed."""


class Member:
    """One connection in a room: a bounded queue and the task that writes it to the socket."""

    def __init__(self, ws: WebSocket, user: str, queue_size: int):
        self.ws, self.user = ws, user
        self.id = f"{user}:{secrets.token_hex(4)}"
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.after: str | None = None          # deliver events after this id; None while joining
        self.pending: list[tuple[str, str]] = []
        self.writer: asyncio.Task | None = None
        self.handler: asyncio.Task | None = None      # the route's task, stopped if the member is cut loose
        self.kicked = False
        self.registered = False                # in the broker's member set
        self.joined = False                    # counted in the stats and participants

    def offer(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False


class _LocalRoom:
    def __init__(self, room_id: str, start_id: str):
        self.id = room_id
        self.members: set[Member] = set()
        self.last = start_id                   # the fan-out's position in the broker
        self.fanout: asyncio.Task | None = None
        self.ai: asyncio.Task | None = None
        self.stopped = False          # checked by both loops: a client library may swallow a cancellation


class RoomHub:
    """This process's rooms: members, one fan-out reader per room, and the AI where it holds the lease."""

    def __init__(self, config: RoomConfig, stats: ServerStats, upstream: Upstream, broker: Broker,
                 lease_s: float = 3.0, participants: Participants | None = None):
        self.config, self.stats, self.upstream, self.broker = config, stats, upstream, broker
        rpm = config.user_requests_per_min           # each message costs the AI a reply: the same per-user rate
        self.buckets = KeyedBuckets(rate=rpm / 60.0, capacity=max(1.0, rpm / 60.0)) if rpm else None
        self.participants = participants or Participants()
        self.lease_s = lease_s
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.rooms: dict[str, _LocalRoom] = {}
        self._lock = asyncio.Lock()

    # ---- joining and leaving ---------------------------------------------------------------

    async def join(self, room_id: str, member: Member, after: str | None) -> None:
        """Add ``member``; raise :class:`RoomUnavailable` (nothing left behind) when the broker fails."""
        try:
            await self._join(room_id, member, after)
        except MemberTooSlow:
            await self._undo_join(room_id, member)
            raise
        except Exception as e:
            log.warning("joining room %s failed: %r", room_id, e)
            await self._undo_join(room_id, member)
            raise RoomUnavailable("The room is unavailable right now (its message broker did not answer); "
                                  "try again in a moment.") from None

    async def _join(self, room_id: str, member: Member, after: str | None) -> None:
        async with self._lock:
            room = self.rooms.get(room_id)
            if room is None:
                room = self.rooms[room_id] = _LocalRoom(room_id, await self.broker.last_id(room_id))
                room.fanout = asyncio.create_task(self._fanout(room), name=f"room-fanout-{room_id}")
                if self.config.room_ai:
                    room.ai = asyncio.create_task(self._ai_worker(room), name=f"room-ai-{room_id}")
            room.members.add(member)           # from here the fan-out buffers for the member
        member.writer = asyncio.create_task(self._write(member))
        count = await self.broker.add_member(room_id, member.id)
        member.registered = True
        if after is not None:
            # Exactly what was missed, however much: the replay waits for the member's writer (it
            # never drops an event for a full queue); a member that does not read is cut loose.
            last = after
            while batch := await self.broker.read(room_id, last, block_s=0, count=1000):
                for event_id, event in batch:
                    try:
                        async with asyncio.timeout(10):
                            await member.queue.put(_encode(event_id, event))
                    except TimeoutError:
                        raise MemberTooSlow("too slow: the replay of missed events waited 10 s") from None
                    last = event_id
        else:
            history = await self.broker.history(room_id, HISTORY_EVENTS)
            last = history[-1][0] if history else "0-0"
            member.offer(json.dumps({
                "type": "room_state", "room": room_id, "members": count, "last_id": last,
                "history": [{**e, "id": i} for i, e in history if e["type"] in ("user_message", "ai_complete")]}))
        member.after = last
        for event_id, text in member.pending:
            if event_key(event_id) > event_key(last):
                self._deliver(room, member, text)
        member.pending.clear()
        member.joined = True
        self.stats.room_members += 1
        self.participants.connected(member.user, +1)
        await self.broker.publish(room_id, {"type": "joined", "user": member.user, "members": count})

    async def _undo_join(self, room_id: str, member: Member) -> None:
        """A join that failed half-way leaves no trace: no ghost member here or in the broker."""
        room = self.rooms.get(room_id)
        if member.writer is not None:
            member.writer.cancel()
        if member.joined:
            member.joined = False
            self.stats.room_members -= 1
            self.participants.connected(member.user, -1)
        if member.registered:
            with contextlib.suppress(Exception):
                await self.broker.remove_member(room_id, member.id)
        if room is None:
            return
        room.members.discard(member)
        async with self._lock:
            if room.members or self.rooms.get(room_id) is not room:
                return
            del self.rooms[room_id]
        await self._stop_room(room)

    async def leave(self, room_id: str, member: Member) -> None:
        room = self.rooms.get(room_id)
        if room is None or member not in room.members:
            return
        room.members.discard(member)
        if member.joined:
            member.joined = False
            self.stats.room_members -= 1
            self.participants.connected(member.user, -1)
        if member.writer is not None:
            member.writer.cancel()
        try:                                   # a broker that is down must not keep the member here
            count = await self.broker.remove_member(room_id, member.id)
            await self.broker.publish(room_id, {"type": "left", "user": member.user, "members": count})
        except Exception as e:
            log.warning("room %s: could not record that %s left: %r", room_id, member.user, e)
        async with self._lock:
            if not room.members and self.rooms.get(room_id) is room:
                del self.rooms[room_id]
            else:
                return
        await self._stop_room(room)           # outside the lock: a join elsewhere never waits for it

    async def say(self, room_id: str, member: Member, content: str) -> str | None:
        """Publish a member's message; a limit or a broker failure is an error to that member only."""
        if self.buckets is not None:
            ok, wait_s = self.buckets.take(member.user, time.monotonic())
            if not ok:
                member.offer(json.dumps({"type": "error", "code": "rate_limit_exceeded",
                                         "message": f"Too many messages: the limit is "
                                                    f"{self.config.user_requests_per_min:g} a minute. Try again in "
                                                    f"{wait_s:.1f} s.", "retry_after_s": max(1, round(wait_s))}))
                return None
        try:
            event_id = await self.broker.publish(room_id, {"type": "user_message", "user": member.user,
                                                           "content": content})
        except Exception as e:
            log.warning("room %s: publishing failed: %r", room_id, e)
            member.offer(json.dumps({"type": "error", "code": "room_unavailable",
                                     "message": "The room could not take your message (its message broker did not "
                                                "answer); it was not sent. Try again in a moment."}))
            return None
        self.participants.room_message(member.user)
        return event_id

    async def aclose(self) -> None:
        """Shutting down: members are told they left, and the AI lease is handed back at once."""
        for room_id, room in list(self.rooms.items()):
            for member in list(room.members):
                with contextlib.suppress(Exception):
                    await self.leave(room_id, member)
        for room in list(self.rooms.values()):
            await self._stop_room(room)
        self.rooms.clear()

    async def _stop_room(self, room: _LocalRoom) -> None:
        room.stopped = True
        tasks = [t for t in (room.fanout, room.ai) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a client library may take a moment to abandon a blocking read (redis-py's XREAD).
            await asyncio.wait(tasks, timeout=2)
        with contextlib.suppress(Exception):
            await self.broker.release_lease(room.id, self.process_id)

    # ---- fan-out: broker → members ------------------------------------------------------------

    async def _fanout(self, room: _LocalRoom) -> None:
        while not room.stopped:
            try:
                batch = await self.broker.read(room.id, room.last, block_s=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:                       # the broker hiccupped: do not lose the room
                if room.stopped:
                    return
                log.exception("reading room %s failed; retrying", room.id)
                await asyncio.sleep(0.5)
                continue
            for event_id, event in batch:
                room.last = event_id
                text = _encode(event_id, event)
                for member in list(room.members):
                    if member.after is None:
                        member.pending.append((event_id, text))
                    elif event_key(event_id) > event_key(member.after):
                        self._deliver(room, member, text)

    def _deliver(self, room: _LocalRoom, member: Member, text: str) -> None:
        if member.kicked or member.offer(text):
            return
        member.kicked = True                      # never wait for a slow member: cut it loose
        self.stats.room_members_kicked += 1
        asyncio.create_task(self._kick(member, f"too slow: {member.queue.qsize()} messages were waiting"))

    async def _kick(self, member: Member, reason: str) -> None:
        """Close with code 4002 and the reason. A member that reads nothing cannot even receive the close
        frame (it waits behind the data TCP could not deliver), so after a second its handler is stopped
        anyway: the room forgets it, and the server stops writing to it."""
        log.info("disconnecting %s from a room: %s", member.user, reason)
        if member.writer is not None:
            member.writer.cancel()
        try:
            await asyncio.wait_for(member.ws.close(SLOW_MEMBER_CLOSE, reason), 1)
        except Exception:
            if member.handler is not None:
                member.handler.cancel()

    async def _write(self, member: Member) -> None:
        try:
            while True:
                text = await member.queue.get()
                async with asyncio.timeout(10):        # not wait_for: that makes a task per message on 3.11
                    await member.ws.send_text(text)
        except asyncio.CancelledError:
            raise
        except Exception:                          # gone or stuck for 10 s
            if not member.kicked:
                member.kicked = True
                asyncio.create_task(self._kick(member, "could not send for 10 s"))

    # ---- the AI: one reply at a time, only where the lease is held ---------------------------

    async def _ai_worker(self, room: _LocalRoom) -> None:
        conversation: list[dict] | None = None
        while not room.stopped:
            try:
                if not await self.broker.hold_lease(room.id, self.process_id, self.lease_s):
                    conversation = None                  # someone else answers; rebuild if we take over
                    await asyncio.sleep(self.lease_s / 3)
                    continue
                cursor = await self.broker.get_cursor(room.id)
                if conversation is None:
                    conversation = await self._conversation_until(room.id, cursor)
                for event_id, event in await self.broker.read(room.id, cursor, block_s=self.lease_s / 3, count=50):
                    if event["type"] == "user_message":
                        if not await self._answer(room.id, event_id, event, conversation):
                            conversation = None          # lost the lease mid-answer: the new holder goes on
                            break
                    await self.broker.set_cursor(room.id, event_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                if room.stopped:
                    return
                log.exception("the AI of room %s failed; retrying", room.id)
                conversation = None
                await asyncio.sleep(0.5)

    async def _conversation_until(self, room_id: str, cursor: str) -> list[dict]:
        turns = []
        for event_id, event in await self.broker.history(room_id, 5_000):
            if event_key(event_id) > event_key(cursor):
                break
            if event["type"] == "user_message":
                turns.append({"role": "user", "content": f"{event['user']}: {event['content']}"})
            elif event["type"] == "ai_complete":
                turns.append({"role": "assistant", "content": event["content"]})
        return turns[-CONTEXT_MESSAGES:]

    async def _answer(self, room_id: str, reply_to: str, event: dict, conversation: list[dict]) -> bool:
        """Answer one message, renewing the lease as it goes; False if the lease was lost."""
        answer = asyncio.current_task()
        lost = False

        async def keep_lease() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(self.lease_s / 3)
                if not await self.broker.hold_lease(room_id, self.process_id, self.lease_s):
                    lost = True
                    answer.cancel()
                    return

        question = {"role": "user", "content": f"{event['user']}: {event['content']}"}
        renewer = asyncio.create_task(keep_lease())
        publish = self.broker.publish
        try:
            await publish(room_id, {"type": "ai_typing", "active": True, "reply_to": reply_to})
            pieces: list[str] = []
            try:
                stream = await self.upstream.open_stream([*conversation[-CONTEXT_MESSAGES:], question])
                async with stream:
                    async for tok in stream.tokens():
                        await publish(room_id, {"type": "ai_token", "reply_to": reply_to, "seq": len(pieces),
                                                "content": tok.content})
                        pieces.append(tok.content)
            except APIError as e:
                await publish(room_id, {"type": "ai_error", "reply_to": reply_to, "code": e.code or "upstream_error",
                                        "message": e.message})
            else:
                text = "".join(pieces)
                await publish(room_id, {"type": "ai_complete", "reply_to": reply_to, "content": text})
                conversation += [question, {"role": "assistant", "content": text}]
            await publish(room_id, {"type": "ai_typing", "active": False, "reply_to": reply_to})
            return True
        except asyncio.CancelledError:
            if lost:
                return False
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(BaseException):
                await renewer


def _encode(event_id: str, event: dict) -> str:
    return json.dumps({**event, "id": event_id})


def create_room_router(config: RoomConfig, hub: RoomHub) -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws/room/{room_id}")
    async def room(ws: WebSocket, room_id: str) -> None:
        await ws.accept()
        # The author is who the token says. Only an open loopback server (no token: every name is
        # self-declared there anyway) lets ``?name=`` choose one.
        asked = ws.query_params.get("name")
        name = asked or ws.state.user if config.lab_token is None else ws.state.user
        after = ws.query_params.get("after")
        problem = None
        if not valid_room_id(room_id):
            problem = ("invalid_room_id", "A room id is 1-64 letters, digits, '_' or '-'.")
        elif asked is not None and asked != name:
            problem = ("name_mismatch", f"Your token is for {name!r}: you cannot speak as {asked!r}.")
        elif not USER_NAME.match(name):
            problem = ("invalid_name", "A name is 1-32 letters, digits, '_' or '-'.")
        elif after is not None:
            try:
                event_key(after)
            except ValueError:
                problem = ("invalid_after", "'after' must be an event id from this room.")
        if problem:
            await ws.send_json({"type": "error", "code": problem[0], "message": problem[1]})
            await ws.close(1008, problem[1])
            return
        member = Member(ws, name, config.member_queue_size)
        member.handler = asyncio.current_task()
        try:
            await hub.join(room_id, member, after)
        except RoomUnavailable as e:
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "error", "code": "room_unavailable", "message": str(e)})
                await ws.close(1013, "room unavailable: try again later")      # 1013: try again later
            return
        except MemberTooSlow as e:
            with contextlib.suppress(Exception):
                await ws.close(SLOW_MEMBER_CLOSE, str(e))
            return
        try:
            while True:
                frame = await ws.receive()
                if frame["type"] == "websocket.disconnect":
                    return
                raw = frame.get("text") if frame.get("text") is not None else frame.get("bytes", b"")
                try:
                    if len(raw) > config.max_ws_message_bytes:
                        raise RoomProtocolError("message_too_large", f"A message may have at most "
                                                                     f"{config.max_ws_message_bytes} bytes.")
                    msg = parse_room_message(raw, config.max_content_chars)
                except RoomProtocolError as e:
                    member.offer(json.dumps({"type": "error", "code": e.code, "message": e.message}))
                    continue
                if msg["type"] == "ping":
                    member.offer(json.dumps({"type": "pong"}))
                else:
                    await hub.say(room_id, member, msg["content"])
        except asyncio.CancelledError:
            if not member.kicked:
                raise
        finally:
            await hub.leave(room_id, member)

    @router.get("/lab/rooms")
    async def rooms() -> dict:
        """The rooms this process serves, with their local members."""
        return {"process": hub.process_id, "rooms": {
            r.id: sorted(m.user for m in r.members) for r in hub.rooms.values()}}

    return router
