"""Clients that survive a dropped connection: they reconnect with backoff and resume where they were.

Both yield :class:`~labkit.clients.timing.TimedToken` like the other clients, so a resumed reply
is measured the same way. Neither removes duplicates on its own: the server promises each token
exactly once, and a token that arrives out of order (``seq`` not one more than the last) raises
:class:`~labkit.clients.app.ChatError`, so a server that broke the promise would be caught, not hidden.

* :class:`resumable_sse_chat`: ``POST /api/chat/streams``, then ``GET /api/chat/stream/{id}`` with
  ``Last-Event-ID`` on every reconnect (what a browser's ``EventSource`` does by itself).
* :class:`ResumableWSChat`: ``/ws/chat``; after a drop it reconnects and sends ``resume`` with the
  stream id and the last ``seq`` it has.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import websockets

from .app import (ChatError, TokenIterator, borrowed_client, chat_body, raise_for_error, read_chat_events,
                  read_ws_reply, ws_url)
from .timing import Clock, TimedToken

__all__ = ["Backoff", "RetryBudget", "resumable_sse_chat", "ResumableWSChat"]


@dataclass
class Backoff:
    """Exponential backoff with full jitter (pure): ``delay(attempt)`` for attempt 1, 2, 3, …

    Jitter matters when a server restarts: without it every client reconnects at the same
    instant, again and again (a "thundering herd")."""

    initial_s: float = 0.05
    factor: float = 2.0
    max_s: float = 2.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return self.rng.uniform(ceiling / 2, ceiling)


class RetryBudget:
    """Failures in a row a client accepts before it gives up, and the backoff after each: the one
    retry loop of both resuming clients (reading a reply, and opening a WebSocket)."""

    def __init__(self, backoff: Backoff, max_retries: int):
        self.backoff, self.max_retries = backoff, max_retries
        self.failures = 0

    async def wait(self, error: Exception, what: str = "the connection failed") -> None:
        """After a failure: raise ``gave_up`` past ``max_retries``, else sleep the backoff's delay."""
        self.failures += 1
        if self.failures > self.max_retries:
            raise ChatError("gave_up", f"{what} {self.failures} times in a row "
                                       f"(last: {error.__class__.__name__}: {error})") from error
        await asyncio.sleep(self.backoff.delay(self.failures))

    def reset(self) -> None:
        """Progress was made: the next failure starts the backoff afresh."""
        self.failures = 0


def _auth_headers(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


class _Resuming(TokenIterator):
    """What both resuming clients share: counting reconnects and giving up after ``max_retries``."""

    def __init__(self, backoff: Backoff | None, max_retries: int):
        self.backoff, self.max_retries = backoff or Backoff(), max_retries
        self.stream_id: str | None = None
        self.reconnects = 0
        self.last_seq = -1
        self.retries = RetryBudget(self.backoff, max_retries)

    async def _wait_before_retry(self, error: Exception) -> None:
        await self.retries.wait(error)
        self.reconnects += 1

    def _accept(self, seq: int) -> None:
        if seq != self.last_seq + 1:
            raise ChatError("out_of_order", f"token {seq} arrived after token {self.last_seq}: "
                                            f"the server lost or repeated a token")
        self.last_seq = seq
        self.retries.reset()          # progress: the next drop starts the backoff afresh


class resumable_sse_chat(_Resuming):
    """One reply over SSE that reconnects (with :class:`Backoff`) and resumes with ``Last-Event-ID``."""

    def __init__(self, base_url: str, prompt: str | list[dict], *, token: str | None = None,
                 client: httpx.AsyncClient | None = None, backoff: Backoff | None = None, max_retries: int = 10,
                 **options):
        super().__init__(backoff, max_retries)
        self.base_url, self.body, self.client = base_url, chat_body(prompt, **options), client
        self.headers = _auth_headers(token)
        self.content: str | None = None           # the whole reply, from the 'done' event

    async def _run(self) -> AsyncIterator[TimedToken]:
        async with borrowed_client(self.client) as client:
            clock = Clock()
            await self._create(client)
            while True:
                try:
                    async for tok in self._read(client, clock):
                        yield tok
                    if self.finish_reason is not None:
                        return
                    error: Exception = ConnectionError("the stream ended before its 'done' event")
                except (httpx.TransportError, ConnectionError) as e:
                    error = e
                await self._wait_before_retry(error)

    async def _create(self, client: httpx.AsyncClient) -> None:
        while True:
            try:
                response = await client.post(self.base_url + "/api/chat/streams", json=self.body,
                                             headers=self.headers, timeout=30)
                raise_for_error(response, response.content)
                self.stream_id = response.json()["id"]
                return
            except httpx.TransportError as e:
                # Not knowing whether the server got it, asking again may start a second reply;
                # the first is then abandoned and stopped after the server's grace period.
                await self._wait_before_retry(e)

    async def _read(self, client: httpx.AsyncClient, clock: Clock) -> AsyncIterator[TimedToken]:
        headers = dict(self.headers)
        if self.last_seq >= 0:
            headers["Last-Event-ID"] = str(self.last_seq)
        url = f"{self.base_url}/api/chat/stream/{self.stream_id}"
        async with client.stream("GET", url, headers=headers, timeout=30) as response:
            if response.status_code == 204:
                self.finish_reason = self.finish_reason or "stop"
                return
            if response.status_code >= 400:
                raise_for_error(response, await response.aread())
            async for tok, done in read_chat_events(response, clock):
                if done is not None:
                    self.finish_reason, self.content = done["finish_reason"], done["content"]
                    return
                self._accept(tok.seq)
                yield tok


class ResumableWSChat:
    """A ``/ws/chat`` connection that comes back after a drop: ``async for tok in chat.ask("...")``."""

    def __init__(self, base_url: str, *, token: str | None = None, backoff: Backoff | None = None,
                 max_retries: int = 10, **connect_options):
        self.url = ws_url(base_url) + "/ws/chat"
        self.backoff, self.max_retries = backoff or Backoff(), max_retries
        self.connect_options = {"additional_headers": _auth_headers(token), **connect_options}
        self.ws = None
        self.reconnects = 0

    async def __aenter__(self) -> "ResumableWSChat":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def connect(self) -> None:
        """(Re)connect, retrying with backoff: a drop can also hit the opening handshake."""
        if self.ws is not None:
            self.ws.transport.abort()     # a half-dead connection: do not wait for its closing handshake
            self.ws = None
        retries = RetryBudget(self.backoff, self.max_retries)
        while True:
            try:
                self.ws = await websockets.connect(self.url, **self.connect_options)
                return
            except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as e:
                if isinstance(e, websockets.InvalidStatus):
                    raise ChatError("handshake_refused", f"the server refused the connection: {e}") from e
                await retries.wait(e, "could not connect")

    def ask(self, prompt: str, **options) -> "_ResumingAsk":
        return _ResumingAsk(self, prompt, {k: v for k, v in options.items() if v is not None})


class _ResumingAsk(_Resuming):
    def __init__(self, chat: ResumableWSChat, prompt: str, options: dict):
        super().__init__(chat.backoff, chat.max_retries)
        self.chat, self.prompt, self.options = chat, prompt, options
        self.content: str | None = None

    async def _run(self) -> AsyncIterator[TimedToken]:
        clock = Clock()
        while True:
            try:
                if self.chat.ws is None:
                    await self.chat.connect()
                if self.stream_id is None:
                    await self.chat.ws.send(json.dumps({"type": "message", "content": self.prompt, **self.options}))
                else:
                    await self.chat.ws.send(json.dumps({"type": "resume", "stream_id": self.stream_id,
                                                        "last_seq": self.last_seq}))
                async for tok in read_ws_reply(self.chat.ws.recv, clock, self):
                    self._accept(tok.seq)
                    yield tok
                return
            except (websockets.ConnectionClosed, OSError) as e:
                await self._wait_before_retry(e)
                self.chat.reconnects += 1
                await self.chat.connect()
