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
* a member who reconnects gets exactly what it missed, or (when the broker no longer keeps it) a
  fresh ``room_state`` saying which events are gone, never a replay with a silent hole;
* with two processes, both would answer. Here only the holder of the room's lease runs its AI, and
  a cursor in the broker records the last message answered, so a new holder carries on from there.

The decisions (who gets which event, the replay, kicking a slow member, the AI's turns and context)
are :mod:`labkit.rooms.machine`'s; this module runs the tasks and does the broker calls and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from fastapi import APIRouter, WebSocket

from ..protocol.openai_chat import APIError
from ..ratelimit import KeyedBuckets
from ..rooms.broker import Broker
from ..rooms.machine import (CONTEXT_MESSAGES, JoinRequest, MemberState, Replay, RoomAI, RoomFanout, RoomMember,
                             Snapshot, Turn, check_join, error, plan_replay, room_state)
from ..rooms.protocol import RoomProtocolError, parse_room_message
from .participants import Participants
from .state import RoomConfig, ServerStats
from .upstream import Upstream

__all__ = ["RoomHub", "create_room_router", "SLOW_MEMBER_CLOSE"]

log = logging.getLogger("labkit.rooms")

#: The close code a member gets when it cannot keep up (4000-4999 are for applications).
SLOW_MEMBER_CLOSE = 4002
HISTORY_EVENTS = 400          # events scanned for a joining member's room_state
REPLAY_BATCH = 1000           # events per broker read of a replay
STALL_S = 10.0                # a member whose writer makes no progress for this long is cut loose


class RoomUnavailable(Exception):
    """Joining failed (the broker is down); the member was not added anywhere."""


class MemberTooSlow(Exception):
    """The member did not read the events it asked to be replayed."""


class Member:
    """One connection in a room: its :class:`~labkit.rooms.machine.RoomMember` (what it is owed) and the
    task that writes that to the socket."""

    def __init__(self, ws: WebSocket, user: str, queue_size: int):
        self.ws, self.user = ws, user
        self.id = f"{user}:{secrets.token_hex(4)}"
        self.core = RoomMember(self.id, user, queue_size)
        self.mail = asyncio.Event()            # set when the outbox has something
        self.wrote = asyncio.Event()           # set after each write (a replay waits on it)
        self.writer: asyncio.Task | None = None
        self.handler: asyncio.Task | None = None      # the route's task, stopped if the member is cut loose
        self.registered = False                # in the broker's member set
        self.joined = False                    # counted in the stats and participants

    @property
    def kicked(self) -> bool:
        return self.core.state is MemberState.KICKED


class _LocalRoom:
    def __init__(self, room_id: str, start_id: str):
        self.id = room_id
        self.core = RoomFanout(room_id, start_id)
        self.by_id: dict[str, Member] = {}
        self.fanout: asyncio.Task | None = None
        self.ai: asyncio.Task | None = None
        self.stopped = False          # checked by both loops: a client library may swallow a cancellation

    @property
    def members(self) -> list[Member]:
        return list(self.by_id.values())


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

    # ---- telling members -----------------------------------------------------------------

    def tell(self, member: Member, text: str) -> None:
        """Queue a message for one member (an error, a pong); past its bound it is cut loose."""
        if member.core.put(text):
            self._kicked(member)
        member.mail.set()

    def _kicked(self, member: Member, slow: bool = True) -> None:
        if slow:
            self.stats.room_members_kicked += 1
        asyncio.create_task(self._kick(member, member.core.kick_reason or "cut loose"))

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
            room.core.add(member.core)         # from here the fan-out buffers for the member
            room.by_id[member.id] = member
        member.writer = asyncio.create_task(self._write(member))
        count = await self.broker.add_member(room_id, member.id)
        member.registered = True
        plan: Replay | Snapshot = Snapshot()             # no replay asked: the room as it is now
        if after is not None:
            batch = await self.broker.read(room_id, after, block_s=0, count=REPLAY_BATCH)
            plan = plan_replay(after, await self.broker.trimmed_through(room_id))
            while isinstance(plan, Replay) and batch:
                # Exactly what was missed, however much: each batch waits for the member's writer (the
                # replay is never cut for a full queue); a member that does not read is cut loose.
                member.core.replayed(batch)
                await self._until_written(member)
                batch = await self.broker.read(room_id, member.core.cursor, block_s=0, count=REPLAY_BATCH)
        if not isinstance(plan, Replay):
            text, last = room_state(room_id, count, await self.broker.history(room_id, HISTORY_EVENTS), plan.gap)
            member.core.welcome(text, last)
        if member.core.go_live(after):
            self._kicked(member)
        member.mail.set()
        member.joined = True
        self.stats.room_members += 1
        self.participants.connected(member.user, +1)
        await self.broker.publish(room_id, {"type": "joined", "user": member.user, "members": count})

    async def _until_written(self, member: Member) -> None:
        """Wait until the writer has sent the member's outbox, as long as it keeps making progress."""
        member.mail.set()
        while member.core.pending() and member.core.state is MemberState.JOINING:
            member.wrote.clear()
            try:
                async with asyncio.timeout(STALL_S):
                    await member.wrote.wait()
            except TimeoutError:
                raise MemberTooSlow(f"too slow: the replay of missed events made no progress for {STALL_S:g} s"
                                    ) from None
        if member.core.state is not MemberState.JOINING:
            raise MemberTooSlow(member.core.kick_reason or "cut loose during the replay")

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
        room.core.remove(member.id)
        room.by_id.pop(member.id, None)
        async with self._lock:
            if room.by_id or self.rooms.get(room_id) is not room:
                return
            del self.rooms[room_id]
        await self._stop_room(room)

    async def leave(self, room_id: str, member: Member) -> None:
        room = self.rooms.get(room_id)
        if room is None or member.id not in room.by_id:
            return
        room.core.remove(member.id)
        del room.by_id[member.id]
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
            if not room.by_id and self.rooms.get(room_id) is room:
                del self.rooms[room_id]
            else:
                return
        await self._stop_room(room)           # outside the lock: a join elsewhere never waits for it

    async def say(self, room_id: str, member: Member, content: str) -> str | None:
        """Publish a member's message; a limit or a broker failure is an error to that member only."""
        if self.buckets is not None:
            ok, wait_s = self.buckets.take(member.user, time.monotonic())
            if not ok:
                self.tell(member, error("rate_limit_exceeded",
                                        f"Too many messages: the limit is {self.config.user_requests_per_min:g} "
                                        f"a minute. Try again in {wait_s:.1f} s.", retry_after_s=max(1, round(wait_s))))
                return None
        try:
            event_id = await self.broker.publish(room_id, {"type": "user_message", "user": member.user,
                                                           "content": content})
        except Exception as e:
            log.warning("room %s: publishing failed: %r", room_id, e)
            self.tell(member, error("room_unavailable", "The room could not take your message (its message broker "
                                                        "did not answer); it was not sent. Try again in a moment."))
            return None
        self.participants.room_message(member.user)
        return event_id

    async def aclose(self) -> None:
        """Shutting down: members are told they left, and the AI lease is handed back at once."""
        for room_id, room in list(self.rooms.items()):
            for member in room.members:
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
                batch = await self.broker.read(room.id, room.core.last, block_s=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:                       # the broker hiccupped: do not lose the room
                if room.stopped:
                    return
                log.exception("reading room %s failed; retrying", room.id)
                await asyncio.sleep(0.5)
                continue
            for kicked in room.core.read(batch):
                member = room.by_id.get(kicked.id)
                if member is not None:
                    self._kicked(member)
            for member in room.members:
                if member.core.pending():
                    member.mail.set()

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
                text = member.core.take()
                if text is None:
                    member.mail.clear()
                    await member.mail.wait()
                    continue
                async with asyncio.timeout(STALL_S):      # not wait_for: that makes a task per message on 3.11
                    await member.ws.send_text(text)
                member.wrote.set()
        except asyncio.CancelledError:
            raise
        except Exception:                          # gone or stuck for 10 s
            if member.core.kick(f"could not send for {STALL_S:g} s"):
                member.wrote.set()                 # a replay waiting on this writer stops waiting
                self._kicked(member, slow=False)

    # ---- the AI: one reply at a time, only where the lease is held ---------------------------

    async def _ai_worker(self, room: _LocalRoom) -> None:
        ai = RoomAI(CONTEXT_MESSAGES)
        while not room.stopped:
            try:
                if not await self.broker.hold_lease(room.id, self.process_id, self.lease_s):
                    ai.lease_lost()                      # someone else answers; rebuild if we take over
                    await asyncio.sleep(self.lease_s / 3)
                    continue
                cursor = await self.broker.get_cursor(room.id)
                if ai.needs_history:
                    ai.rebuild(await self.broker.history(room.id, 5_000), cursor)
                for event_id, event in await self.broker.read(room.id, cursor, block_s=self.lease_s / 3, count=50):
                    turn = ai.turn(event_id, event)
                    if turn is not None and not await self._answer(room.id, turn, ai):
                        ai.lease_lost()                  # lost the lease mid-answer: the new holder goes on
                        break
                    await self.broker.set_cursor(room.id, event_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                if room.stopped:
                    return
                log.exception("the AI of room %s failed; retrying", room.id)
                ai.lease_lost()
                await asyncio.sleep(0.5)

    async def _answer(self, room_id: str, turn: Turn, ai: RoomAI) -> bool:
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

        renewer = asyncio.create_task(keep_lease())
        publish = self.broker.publish
        try:
            await publish(room_id, ai.typing(turn, True))
            pieces: list[str] = []
            try:
                stream = await self.upstream.open_stream(turn.messages)
                async with stream:
                    async for tok in stream.tokens():
                        await publish(room_id, ai.token(turn, len(pieces), tok.content))
                        pieces.append(tok.content)
            except APIError as e:
                await publish(room_id, ai.failed(turn, e.code, e.message))
            else:
                text = "".join(pieces)
                await publish(room_id, ai.complete(turn, text))
                ai.answered(turn, text)
            await publish(room_id, ai.typing(turn, False))
            return True
        except asyncio.CancelledError:
            if lost:
                return False
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(BaseException):
                await renewer


def create_room_router(config: RoomConfig, hub: RoomHub) -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws/room/{room_id}")
    async def room(ws: WebSocket, room_id: str) -> None:
        await ws.accept()
        checked = check_join(room_id, ws.state.user, ws.query_params.get("name"), ws.query_params.get("after"),
                             open_server=config.lab_token is None)
        if not isinstance(checked, JoinRequest):
            await ws.send_text(error(*checked))
            await ws.close(1008, checked[1])
            return
        name, after = checked.name, checked.after
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
                    hub.tell(member, error(e.code, e.message))
                    continue
                if msg["type"] == "ping":
                    hub.tell(member, '{"type": "pong"}')
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
