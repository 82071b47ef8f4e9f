"""The app server's transports: the same chat over HTTP, Server-Sent Events and WebSocket.

Each route is a thin adapter: validate with :mod:`labkit.protocol.app_chat`, stream tokens from
:class:`~labkit.server.upstream.Upstream` (``AsyncOpenAI``, never a blocking client), write them
out. When a client leaves mid-stream, the route is cancelled and leaving the ``async with`` around
the upstream stream closes it, which cancels the generation upstream within a token or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from ..protocol import app_chat as proto
from ..protocol.openai_chat import APIError
from ..protocol.sse import encode_comment, encode_event
from .connections import ConnectionManager
from .state import ServerConfig, ServerStats
from .streaming import sse_response, with_heartbeats
from .upstream import Upstream

__all__ = ["create_chat_router"]


def create_chat_router(config: ServerConfig, stats: ServerStats, upstream: Upstream,
                       manager: ConnectionManager) -> APIRouter:
    router = APIRouter()

    def parse(raw: bytes) -> proto.ChatBody:
        try:
            return proto.parse_chat_body(raw, config.max_content_chars)
        except proto.ProtocolError as e:
            raise APIError(400, e.message, code=e.code) from None

    async def open_stream(body: proto.ChatBody):
        return await upstream.open_stream(body.messages, model=body.model, max_tokens=body.max_tokens,
                                          temperature=body.temperature, seed=body.seed)

    @router.post("/api/chat")
    async def chat(request: Request) -> Response:
        """Request/response: the whole reply as JSON, once the last token is in."""
        body = parse(await request.body())
        pieces, times = [], []
        async with await open_stream(body) as stream:
            async for tok in stream.tokens():
                pieces.append(tok.content)
                times.append(tok.received_wall)
        reply = {"content": "".join(pieces), "tokens": len(pieces), "finish_reason": stream.finish_reason}
        if body.timings:
            reply.update(pieces=pieces, token_times=times)
        return JSONResponse(reply)

    @router.post("/api/chat/stream")
    async def chat_stream(request: Request) -> Response:
        """Server-Sent Events: one ``token`` event per token, then ``done`` (or ``error``)."""
        body = parse(await request.body())
        stream = await open_stream(body)       # upstream errors become a proper HTTP status here
        return sse_response(_sse_body(stream, stats, config.heartbeat_s))

    @router.websocket("/ws/chat")
    async def ws_chat(ws: WebSocket) -> None:
        await ws.accept()
        manager.add(ws)
        stats.ws_connections += 1
        session = _WSChatSession(ws, config, stats, upstream, manager)
        try:
            await session.run()
        finally:
            await session.stop()
            manager.disconnect(ws)
            stats.ws_connections -= 1

    return router


_HEARTBEAT = object()


async def _sse_body(stream, stats: ServerStats, heartbeat_s: float) -> AsyncIterator[bytes]:
    """The SSE body. Each token is time-stamped (``t``) here, in the task that writes it, right
    before the write: the stamp marks the moment the server emits it, not when it was queued."""
    stats.app_streams_active += 1
    finished = False
    try:
        async with stream:
            seq, pieces = 0, []
            try:
                async for tok in with_heartbeats(stream.tokens(), heartbeat_s, lambda: _HEARTBEAT):
                    if tok is _HEARTBEAT:
                        yield encode_comment("ping")
                        continue
                    pieces.append(tok.content)
                    yield encode_event(json.dumps({"seq": seq, "content": tok.content, "t": time.time()}),
                                       event="token")
                    seq += 1
            except APIError as e:
                yield encode_event(json.dumps({"code": e.code, "message": e.message}), event="error")
                finished = True
                return
            yield encode_event(json.dumps({"content": "".join(pieces), "tokens": seq,
                                           "finish_reason": stream.finish_reason}), event="done")
            finished = True
    finally:
        stats.app_streams_active -= 1
        if not finished:
            stats.app_streams_cancelled += 1


class _WSChatSession:
    """One WebSocket chat: reads frames while at most one reply streams in a task beside it."""

    def __init__(self, ws: WebSocket, config: ServerConfig, stats: ServerStats, upstream: Upstream,
                 manager: ConnectionManager):
        self.ws, self.config, self.stats, self.upstream, self.manager = ws, config, stats, upstream, manager
        self.history: list[dict] = []
        self.reply: asyncio.Task | None = None
        self.busy = False           # True from 'ack' until 'complete' or 'error' is sent
        self.streams = 0

    async def send(self, message: dict) -> None:
        await self.manager.send(self.ws, message)

    async def run(self) -> None:
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            raw = frame.get("text") if frame.get("text") is not None else frame.get("bytes", b"")
            try:
                msg = proto.parse_client_message(raw, self.config.max_content_chars)
            except proto.ProtocolError as e:
                await self.send(proto.error(e.code, e.message))
                continue
            if msg.type == "ping":
                await self.send(proto.pong())
            elif self.busy:
                await self.send(proto.error("busy", "A reply is still streaming; wait for 'complete'."))
            else:
                self.busy = True
                self.streams += 1
                stream_id = f"s{self.streams}"
                self.history.append({"role": "user", "content": msg.content})
                await self.send(proto.ack(stream_id))
                self.reply = asyncio.create_task(self._stream_reply(stream_id, msg.options))

    async def _stream_reply(self, stream_id: str, options: dict) -> None:
        self.stats.app_streams_active += 1
        finished = False
        try:
            stream = await self.upstream.open_stream(self.history, **options)
            async with stream:
                seq, pieces = 0, []
                async for tok in stream.tokens():
                    pieces.append(tok.content)
                    if not await self.manager.send(self.ws, proto.token(stream_id, seq, tok.content, time.time())):
                        return      # the client is gone: leaving the block cancels the upstream
                    seq += 1
            text = "".join(pieces)
            self.history.append({"role": "assistant", "content": text})
            self.busy = False         # before 'complete': a client may ask again the moment it sees it
            await self.send(proto.complete(stream_id, text, seq, stream.finish_reason or "stop"))
            finished = True
        except APIError as e:
            self.history.pop()        # the question got no answer; do not keep it
            self.busy = False
            await self.send(proto.error(e.code or "upstream_error", e.message, stream_id))
            finished = True
        finally:
            self.stats.app_streams_active -= 1
            if not finished:
                self.stats.app_streams_cancelled += 1

    async def stop(self) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reply
