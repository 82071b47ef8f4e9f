"""Clients for the app server's three transports: HTTP, Server-Sent Events and WebSocket.

Each is an async iterator of :class:`~labkit.clients.timing.TimedToken`, so the same measuring code
works on all of them::

    stream = await collect(sse_chat(server.url, "What is SSE?"))
    stream.ttft_s, stream.total_s, stream.text
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import websockets

from ..protocol.errors import CodedError
from ..protocol.sse import SSEDecoder
from .timing import Clock, TimedToken

__all__ = ["ChatError", "http_chat", "sse_chat", "ws_chat", "WSChat"]


class ChatError(CodedError, RuntimeError):
    """The server answered with an error (an HTTP status, an SSE ``error`` event or a WS ``error`` message)."""

    def __init__(self, code: str | None, message: str, status: int | None = None):
        super().__init__(code, message)
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


def chat_body(prompt: str | list[dict], **options) -> dict:
    key = "message" if isinstance(prompt, str) else "messages"
    return {key: prompt, **{k: v for k, v in options.items() if v is not None}}


def raise_for_error(response: httpx.Response, body: bytes) -> None:
    if response.status_code >= 400:
        try:
            err = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            err = {"code": None, "message": body.decode(errors="replace")[:200]}
        raise ChatError(err.get("code"), err.get("message", ""), response.status_code)


class TokenIterator:
    """An async iterator that also remembers the ``finish_reason`` it saw (for :func:`collect`)."""

    finish_reason: str | None = None

    def __aiter__(self):
        return self._run().__aiter__()


class http_chat(TokenIterator):
    """``POST /api/chat``: nothing arrives until the whole reply is done, then every token at once."""

    def __init__(self, base_url: str, prompt: str | list[dict], *, client: httpx.AsyncClient | None = None, **options):
        self.base_url, self.body, self.client = base_url, chat_body(prompt, timings=True, **options), client

    async def _run(self) -> AsyncIterator[TimedToken]:
        async with borrowed_client(self.client) as client:
            clock = Clock()
            response = await client.post(self.base_url + "/api/chat", json=self.body, timeout=120)
            t, wall = clock.elapsed(), clock.start_wall + clock.elapsed()
            raise_for_error(response, response.content)
            reply = response.json()
            self.finish_reason = reply.get("finish_reason")
            for piece, sent in zip(reply["pieces"], reply["token_times"]):
                yield TimedToken(piece, t, wall, sent_wall=sent)


class sse_chat(TokenIterator):
    """``POST /api/chat/stream``: tokens as Server-Sent Events, parsed by labkit's own decoder."""

    def __init__(self, base_url: str, prompt: str | list[dict], *, client: httpx.AsyncClient | None = None, **options):
        self.base_url, self.body, self.client = base_url, chat_body(prompt, **options), client

    async def _run(self) -> AsyncIterator[TimedToken]:
        async with borrowed_client(self.client) as client:
            clock = Clock()
            async with client.stream("POST", self.base_url + "/api/chat/stream", json=self.body, timeout=120) as response:
                if response.status_code >= 400:
                    raise_for_error(response, await response.aread())
                async for tok, done in read_chat_events(response, clock):
                    if done is not None:
                        self.finish_reason = done["finish_reason"]
                        return
                    yield tok


class ws_chat(TokenIterator):
    """One question over a fresh ``/ws/chat`` connection (for many, keep a :class:`WSChat` open).

    ``options`` (model, max_tokens, temperature, seed) go with the message; ``connect_options``
    go to ``websockets.connect`` (for example ``additional_headers``). ``coalesce``: let the server
    send the tokens that are waiting in one frame when it falls behind (same tokens, fewer frames)."""

    def __init__(self, base_url: str, prompt: str, *, connect_options: dict | None = None, coalesce: bool = False,
                 **options):
        self.url = ws_url(base_url) + "/ws/chat" + ("?coalesce=1" if coalesce else "")
        self.prompt, self.options, self.connect_options = prompt, options, connect_options or {}

    async def _run(self) -> AsyncIterator[TimedToken]:
        clock = Clock()                      # the user's wait includes opening the connection
        async with WSChat(self.url, **self.connect_options) as chat:
            ask = chat.ask(self.prompt, **self.options)
            ask.clock = clock
            async for tok in ask:
                yield tok
            self.finish_reason = ask.finish_reason


class WSChat:
    """A WebSocket chat connection that keeps the conversation: ``async for tok in chat.ask("...")``.
    ``coalesce=True`` asks for several waiting tokens per frame (``tokens`` messages) when the server
    falls behind; every token is still yielded on its own, with its seq and server time."""

    def __init__(self, url: str, coalesce: bool = False, **connect_options):
        self.url = url if "/ws/" in url else ws_url(url) + "/ws/chat"
        if coalesce:
            self.url += ("&" if "?" in self.url else "?") + "coalesce=1"
        self.connect_options = connect_options
        self.ws = None

    async def __aenter__(self) -> "WSChat":
        # websockets >= 14: headers go in `additional_headers=` (the tutorial's `extra_headers=` is rejected).
        self.ws = await websockets.connect(self.url, **self.connect_options)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def send(self, message: dict) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self) -> dict:
        return json.loads(await self.ws.recv())

    def ask(self, prompt: str, **options) -> "_WSAsk":
        """Send one message (``options``: model, max_tokens, temperature, seed) and iterate its reply."""
        return _WSAsk(self, prompt, options)


class _WSAsk(TokenIterator):
    def __init__(self, chat: WSChat, prompt: str, options: dict):
        self.chat, self.prompt = chat, prompt
        self.options = {k: v for k, v in options.items() if v is not None}
        self.stream_id: str | None = None
        self.clock: Clock | None = None          # set by ws_chat: its clock started before connecting
        self.content: str | None = None          # the whole reply, from the `complete` frame

    async def _run(self) -> AsyncIterator[TimedToken]:
        clock = self.clock or Clock()
        await self.chat.send({"type": "message", "content": self.prompt, **self.options})
        async for tok in read_ws_reply(self.chat.ws.recv, clock, self):
            yield tok


async def read_ws_reply(recv, clock: Clock, reply) -> AsyncIterator[TimedToken]:
    """The frames of one ``/ws/chat`` reply, read with ``recv()``: ``ack`` sets ``reply.stream_id``, the
    stream's tokens are yielded, ``complete`` sets ``reply.finish_reason`` and ``reply.content`` and ends,
    an ``error`` frame raises :class:`ChatError`. Shared by the plain and the resuming WebSocket client."""
    while True:
        msg = json.loads(await recv())
        t = clock.elapsed()
        kind = msg.get("type")
        if kind == "ack":
            reply.stream_id = msg["stream_id"]
        elif kind == "token" and msg.get("stream_id") == reply.stream_id:
            yield TimedToken(msg["content"], t, clock.start_wall + t, msg["seq"], msg["t"])
        elif kind == "tokens" and msg.get("stream_id") == reply.stream_id:      # several, coalesced
            for item in msg["tokens"]:
                yield TimedToken(item["content"], t, clock.start_wall + t, item["seq"], item["t"])
        elif kind == "complete" and msg.get("stream_id") == reply.stream_id:
            reply.finish_reason, reply.content = msg["finish_reason"], msg.get("content")
            return
        elif kind == "error":
            raise ChatError(msg.get("code"), msg.get("message", ""))


async def read_chat_events(response: httpx.Response, clock: Clock):
    """The lab's chat SSE stream as ``(token, None)`` pairs, then ``(None, done_data)``; an ``error``
    event raises :class:`ChatError`. Shared by every SSE client, resuming or not."""
    decoder = SSEDecoder()
    async for chunk in response.aiter_raw():
        t = clock.elapsed()
        for event in decoder.feed(chunk):
            data = json.loads(event.data)
            if event.event == "token":
                yield TimedToken(data["content"], t, clock.start_wall + t, data["seq"], data["t"]), None
            elif event.event == "done":
                yield None, data
                return
            elif event.event == "error":
                raise ChatError(data.get("code"), data.get("message", ""))


def ws_url(base_url: str) -> str:
    return "ws" + base_url[4:] if base_url.startswith("http") else base_url


class borrowed_client:
    """Use the caller's ``httpx.AsyncClient`` (connection reuse) or a short-lived one."""

    def __init__(self, client: httpx.AsyncClient | None):
        self.client, self.owned = client, None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self.client is not None:
            return self.client
        self.owned = httpx.AsyncClient()
        return self.owned

    async def __aexit__(self, *exc) -> None:
        if self.owned is not None:
            await self.owned.aclose()
