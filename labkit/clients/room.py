"""A room member for notebooks and tests: connects to ``/ws/room/{id}``, collects every event.

    async with RoomClient(server.ws_url, "lab", "ann") as ann:
        await ann.say("What is SSE?")
        await ann.wait_for(lambda events: any(e["type"] == "ai_complete" for e in events))

``after=<event id>`` catches up from that event instead of receiving ``room_state``.

Entering returns once the server has added the member, not merely once the socket is open: the
first event it sends (``room_state``, the first replayed event, or an error) comes only after that,
and from there on the member sees everything said in the room. Returning at the open instead lets a
second member, on another server process, join and say something before the first one is in: the
first would never see it (a race that failed chapter 08 on a busy machine).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import urlencode

import websockets

__all__ = ["RoomClient", "answers_at_least", "JOIN_TIMEOUT_S"]

#: How long entering waits for the server to add the member (a join reads and writes the broker).
JOIN_TIMEOUT_S = 15.0


class RoomClient:
    def __init__(self, ws_url: str, room: str, name: str, *, after: str | None = None, token: str | None = None):
        query = {"name": name, **({"after": after} if after else {}), **({"token": token} if token else {})}
        self.url = f"{ws_url}/ws/room/{room}?{urlencode(query)}"
        self.room, self.name = room, name
        self.events: list[dict] = []
        self.close_code: int | None = None
        self.ws = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "RoomClient":
        self.ws = await websockets.connect(self.url, max_size=None)
        self._task = asyncio.create_task(self._read())
        await self._until_admitted(JOIN_TIMEOUT_S)
        return self

    async def _until_admitted(self, timeout: float) -> None:
        """Wait for the server's first event, or for the socket to close (a refused join)."""
        try:
            await self.wait_for(lambda events: bool(events) or self._task.done(), timeout)
        except TimeoutError:
            await self.ws.close()
            raise TimeoutError(f"{self.name}: the server did not add the member to room {self.room!r} "
                               f"within {timeout:g} s of connecting") from None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.events.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        await self._task

    async def say(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "message", "content": text}))

    async def wait_for(self, predicate: Callable[[list[dict]], bool], timeout: float = 15.0) -> None:
        """Wait until ``predicate(events)`` holds; a TimeoutError names the last events seen."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.events):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.name}: still waiting after {timeout:g} s; last events: "
                                   f"{[e['type'] for e in self.events[-8:]]}")
            await asyncio.sleep(0.02)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def transcript(self) -> list[str]:
        """The room's conversation as this member saw it: ``user: text`` and ``AI: text`` lines."""
        lines = []
        for e in self.events:
            if e["type"] == "room_state":
                lines += [f"{h['user']}: {h['content']}" if h["type"] == "user_message" else f"AI: {h['content']}"
                          for h in e["history"]]
            elif e["type"] == "user_message":
                lines.append(f"{e['user']}: {e['content']}")
            elif e["type"] == "ai_complete":
                lines.append(f"AI: {e['content']}")
        return lines


def answers_at_least(n: int) -> Callable[[list[dict]], bool]:
    return lambda events: sum(e["type"] == "ai_complete" for e in events) >= n
