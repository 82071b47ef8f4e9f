"""The app server's transports: the same chat over HTTP, Server-Sent Events and WebSocket.

Each route is a thin adapter: validate with :mod:`labkit.protocol.app_chat`, then either wait for
the whole reply (HTTP) or start a reply in the :class:`~labkit.server.streamhub.StreamHub` and
follow it (SSE, WebSocket). Replies are resources with ids, so every stream can be resumed:

* ``POST /api/chat/stream``: create and follow at once (``fetch`` with a body). Every event has an
  ``id:``; the reply's id is in the ``X-Stream-Id`` header.
* ``POST /api/chat/streams`` then ``GET /api/chat/stream/{id}``: create, then follow with a GET, which
  is what the browser's ``EventSource`` can do (it cannot send a POST body, which is the bug in the
  tutorial's JavaScript). A reconnect sends ``Last-Event-ID`` and gets only what came after it.
* ``/ws/chat`` (and ``/ws/chat/progressive`` with typing and progress): a ``resume`` message with the
  stream id and the last ``seq`` does the same over WebSocket.

The user is whoever :class:`~labkit.server.identity.IdentityMiddleware` says (``request.state.user``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from ..auth import CLASS, INSTRUCTOR, RESERVED_NAMES, USER_NAME, issue_user_token
from ..chatview import Ask, Cancel, ChatConnection, Reply, Resume, StartTyping, StopTyping, chat_view
from ..protocol import app_chat as proto
from ..protocol import safejson
from ..protocol.openai_chat import APIError
from ..protocol.sse import encode_comment, encode_event, encode_json_event
from ..streams import DONE, End, Heartbeat, StreamLog, Token
from .connections import ConnectionManager
from .state import ChatConfig, ServerStats
from .streamhub import StreamHub
from .streaming import PushedEventStream
from .upstream import Upstream

__all__ = ["create_chat_router"]

log = logging.getLogger("labkit.server.chat")

#: The ``id`` of the last event of a stream (``done`` or ``error``): a reconnect that has it gets 204.
END_ID = "end"


def create_chat_router(config: ChatConfig, stats: ServerStats, upstream: Upstream,
                       manager: ConnectionManager, hub: StreamHub) -> APIRouter:
    router = APIRouter()

    def parse(raw: bytes) -> proto.ChatBody:
        try:
            return proto.parse_chat_body(raw, config.max_content_chars)
        except proto.ProtocolError as e:
            raise APIError(400, e.message, code=e.code) from None

    def options(body: proto.ChatBody) -> dict:
        return {k: v for k, v in (("model", body.model), ("max_tokens", body.max_tokens),
                                  ("temperature", body.temperature), ("seed", body.seed)) if v is not None}

    claimed: set[str] = set()           # names given out on this server: each goes to one person only

    @router.get("/api/me")
    async def me(request: Request) -> dict:
        """Who the server thinks you are, and whether it needs a token (the browser client asks first)."""
        identity = request.state.identity
        return {"user": identity.user, "role": identity.role, "token_required": config.lab_token is not None}

    @router.post("/api/login")
    async def login(request: Request) -> JSONResponse:
        """Trade the class token (``LAB_TOKEN``) and a name for that user's own token (classroom mode).

        A name is handed out once: whoever asks for ``alice`` after alice has logged in gets 409, so
        nobody can take another student's identity (and post in rooms as them)."""
        try:
            name = safejson.loads(await request.body())["name"]
        except (ValueError, KeyError, TypeError):
            raise APIError(400, "Send {\"name\": \"your-name\"}.", code="invalid_body") from None
        if not isinstance(name, str) or not USER_NAME.match(name):
            raise APIError(400, "A name is 1-32 letters, digits, '_' or '-'.", param="name", code="invalid_name")
        if config.lab_token is None:
            return JSONResponse({"user": name, "token": name})
        if request.state.identity.role not in (CLASS, INSTRUCTOR):
            raise APIError(403, "Log in with the class token (the join link's), not a user token.", code="forbidden")
        if len(claimed) >= 100_000:
            raise APIError(503, "This server has handed out as many names as it keeps.", type="server_error",
                           code="server_busy")
        if name in RESERVED_NAMES or name in claimed:
            raise APIError(409, f"The name {name!r} is taken; pick another one.", param="name", code="name_taken")
        claimed.add(name)
        return JSONResponse({"user": name, "token": issue_user_token(config.lab_token, name)})

    @router.post("/api/chat")
    async def chat(request: Request) -> Response:
        """Request/response: the whole reply as JSON, once the last token is in.

        It is a stream like the others (so the per-user stream limit counts it), followed to its end
        here; when the client hangs up first, the generation is cancelled at once."""
        body = parse(await request.body())
        log = await hub.start_accepted(request.state.user, body.messages, options(body))
        if not await _follow_unless_gone(hub, log, request):
            hub.cancel(log, "client_left", "The client closed the connection.")
            return Response(status_code=499)      # nobody reads this; nginx's "client closed request"
        if log.status != DONE:
            raise APIError(502, log.error_message or "The model failed.", type="server_error",
                           code=log.error_code or "upstream_error")
        reply = {"content": log.text, "tokens": len(log.tokens), "finish_reason": log.finish_reason}
        if body.timings:
            reply.update(pieces=list(log.tokens), token_times=list(log.times))
        return JSONResponse(reply)

    @router.post("/api/chat/stream")
    async def chat_stream(request: Request) -> Response:
        """Server-Sent Events: one ``token`` event per token (``id:`` its seq), then ``done`` (or ``error``)."""
        body = parse(await request.body())
        log = await hub.start_accepted(request.state.user, body.messages, options(body))
        return _sse_follow(hub, log, -1, config.heartbeat_s,
                           headers={"X-Stream-Id": log.id, "Location": f"/api/chat/stream/{log.id}"})

    @router.post("/api/chat/streams", status_code=201)
    async def create_stream(request: Request) -> JSONResponse:
        """Start a reply and return its id; read it with ``GET /api/chat/stream/{id}`` (EventSource)."""
        body = parse(await request.body())
        log = await hub.start_accepted(request.state.user, body.messages, options(body))
        url = f"/api/chat/stream/{log.id}"
        return JSONResponse({"id": log.id, "url": url, "status": log.status}, status_code=201,
                            headers={"Location": url})

    @router.get("/api/chat/stream/{stream_id}")
    async def follow_stream(stream_id: str, request: Request) -> Response:
        """The reply as SSE, from the start or after ``Last-Event-ID`` (header, or ``last_event_id`` query)."""
        log = await hub.find(stream_id, request.state.user)
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        if last == END_ID:
            return Response(status_code=204)          # the client has it all; 204 stops EventSource for good
        try:
            after = -1 if last in (None, "") else int(last)
        except ValueError:
            raise APIError(400, f"Last-Event-ID {last!r} is not an event id of this stream.",
                           code="invalid_last_event_id") from None
        if after > len(log.tokens) - 1:
            raise APIError(400, f"Last-Event-ID {after} is beyond this stream's {len(log.tokens)} tokens.",
                           code="invalid_last_event_id")
        if last is not None:
            stats.resumes += 1
        return _sse_follow(hub, log, after, config.heartbeat_s, headers={"X-Stream-Id": log.id})

    @router.get("/api/chat/streams/{stream_id}")
    async def stream_status(stream_id: str, request: Request) -> JSONResponse:
        """A kept reply as JSON: its status and all the text so far."""
        return JSONResponse((await hub.find(stream_id, request.state.user)).summary())

    @router.delete("/api/chat/streams/{stream_id}", status_code=204)
    async def cancel_stream(stream_id: str, request: Request) -> Response:
        """Stop a reply now (the "stop generating" button)."""
        await hub.stop(hub.get(stream_id, request.state.user), "cancelled", "The client cancelled the reply.")
        return Response(status_code=204)

    for path, progressive in (("/ws/chat", False), ("/ws/chat/progressive", True)):
        router.add_api_websocket_route(path, _ws_route(config, stats, hub, manager, progressive))

    return router


def _ws_route(config, stats, hub, manager, progressive):
    async def ws_chat(ws: WebSocket) -> None:
        await ws.accept()
        manager.add(ws)
        stats.ws_connections += 1
        hub.participants.connected(ws.state.user, +1)
        session = _WSChatSession(ws, ws.state.user, config, stats, hub, manager, progressive)
        try:
            await session.run()
        finally:
            await session.stop()
            manager.disconnect(ws)
            stats.ws_connections -= 1
            hub.participants.connected(ws.state.user, -1)
    return ws_chat


async def _follow_unless_gone(hub: StreamHub, log: StreamLog, request: Request) -> bool:
    """Wait for the reply to end (True), or for the client to disconnect first (False)."""
    async def until_end() -> None:
        async for _ in hub.follow(log):
            pass

    async def until_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    ended, gone = asyncio.ensure_future(until_end()), asyncio.ensure_future(until_gone())
    try:
        await asyncio.wait({ended, gone}, return_when=asyncio.FIRST_COMPLETED)
        return ended.done()
    finally:
        for task in (ended, gone):
            task.cancel()
        await asyncio.gather(ended, gone, return_exceptions=True)


def _sse_follow(hub: StreamHub, log: StreamLog, after: int, heartbeat_s: float,
                headers: dict[str, str]) -> PushedEventStream:
    """The SSE response of one reader: ``retry``, the tokens after ``after`` (each with ``id: seq``), then
    ``done`` or ``error`` with ``id: end``. A silent model gets keep-alive comments.

    The events are written by the reply's producer in the step that read them (``StreamHub.open_push``):
    every event that was waiting goes out in one write (a writer that fell behind coalesces: the same
    events, ids and times, in fewer writes)."""
    def open_push(write):
        async def deliver(batch) -> bool:
            return await write(b"".join([_sse_event(event, log) for event in batch]))
        return hub.open_push(log, deliver, after, heartbeat_s)
    return PushedEventStream(open_push, b"retry: 1000\n\n", headers)


def _sse_event(event, log: StreamLog) -> bytes:
    if isinstance(event, Heartbeat):
        return encode_comment("ping")
    if type(event) is Token:             # the hot path: one per token, JSON is one line already
        return encode_json_event(json.dumps({"seq": event.seq, "content": event.content, "t": event.t}),
                                 event="token", id=event.seq)
    if isinstance(event, End):
        if log.status == DONE:
            return encode_event(json.dumps({"content": log.text, "tokens": len(log.tokens),
                                            "finish_reason": log.finish_reason}), event="done", id=END_ID)
        return encode_event(json.dumps({"code": log.error_code, "message": log.error_message}),
                            event="error", id=END_ID)
    return b""                                         # stage changes say nothing over SSE


class _WSChatSession:
    """One WebSocket chat: reads frames while at most one reply is followed in a task beside it.

    The conversation is kept per connection; a ``resume`` on a new connection restores it from
    the reply it resumes. A clean close (the user left) cancels the reply at once; a connection that
    just vanished leaves it running for ``resume_grace_s``, for the client to come back.
    """

    def __init__(self, ws: WebSocket, user: str, config: ChatConfig, stats: ServerStats, hub: StreamHub,
                 manager: ConnectionManager, progressive: bool):
        self.ws, self.user, self.config, self.stats, self.hub, self.manager = ws, user, config, stats, hub, manager
        self.progressive = progressive
        self.turns = ChatConnection()
        # ?coalesce=1 (plain /ws/chat): tokens already waiting go out as one ``tokens`` frame
        self.coalesce = not progressive and ws.query_params.get("coalesce") in ("1", "true")
        self.reader: asyncio.Task | None = None
        self.clean_close = False

    @property
    def current(self) -> StreamLog | None:
        return self.turns.current

    async def send(self, message: dict) -> bool:
        return await self.manager.send(self.ws, message)

    async def run(self) -> None:
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                self.clean_close = frame.get("code", 1000) in (1000, 1001)
                return
            raw = frame.get("text") if frame.get("text") is not None else frame.get("bytes", b"")
            try:
                if len(raw) > self.config.max_ws_message_bytes:
                    raise proto.ProtocolError("message_too_large", f"A message may have at most "
                                                                   f"{self.config.max_ws_message_bytes} bytes.")
                msg = proto.parse_client_message(raw, self.config.max_content_chars)
            except proto.ProtocolError as e:
                await self.send(proto.error(e.code, e.message))
                continue
            try:
                await self._handle(msg)
            except Exception:                  # a bug must cost this message, not the connection
                log.exception("handling a /ws/chat message failed")
                await self.send(proto.error("server_error", "The server had an error handling that message."))

    async def _handle(self, msg: proto.ClientMessage) -> None:
        action = self.turns.on_message(msg)
        if isinstance(action, Reply):
            await self.send(action.message)
        elif isinstance(action, Cancel):
            self.hub.cancel(action.log, "cancelled", "The client cancelled the reply.")
        elif isinstance(action, Resume):
            await self._resume(action)
        elif isinstance(action, Ask):
            await self._ask(action)

    async def _ask(self, ask: Ask) -> None:
        try:
            log = self.hub.start(self.user, ask.messages, ask.options)
        except APIError as e:
            retry = e.headers.get("retry-after")
            await self.send(proto.error(e.code or "error", e.message, None, float(retry) if retry else None))
            return
        await self.send(proto.ack(log.id))
        self._follow(log, -1, self.hub.expected_tokens(ask.options))

    async def _resume(self, resume: Resume) -> None:
        try:
            log = await self.hub.find(resume.stream_id, self.user)
        except APIError as e:
            await self.send(proto.error(e.code, e.message, resume.stream_id))
            return
        problem = self.turns.resuming(log, resume.last_seq)
        if problem is not None:
            await self.send(problem)
            return
        self.stats.resumes += 1
        self._follow(log, resume.last_seq, self.hub.expected_tokens({}))

    def _follow(self, log: StreamLog, after: int, expected_tokens: float) -> None:
        self.turns.following(log)
        self.reader = asyncio.create_task(self._forward(log, after, expected_tokens))

    async def _forward(self, log: StreamLog, after: int, expected_tokens: float) -> None:
        """Send the reply as this connection's view renders it, until it ends (or the client is gone)."""
        view = chat_view(self.progressive, log.id, expected_tokens)
        typing = _Typing(self, self.config.typing_interval_s)
        send = self.send_now
        coalesce = self.coalesce

        async def deliver(batch) -> bool:
            """Runs in the producer's step (``StreamHub.push``): it must not tie itself to a task."""
            tokens = [e for e in batch if type(e) is Token] if coalesce else ()
            if len(tokens) > 1:          # fallen behind: the waiting tokens in one frame, then the rest
                for event in tokens:
                    self.turns.saw(event)
                if not await send(proto.tokens(log.id, [(e.seq, e.content, e.t) for e in tokens])):
                    return False
                batch = [e for e in batch if type(e) is not Token]
            for event in batch:
                self.turns.saw(event)
                for action in view.render(event):
                    if isinstance(action, StartTyping):
                        typing.start()
                    elif isinstance(action, StopTyping):
                        await typing.stop()
                    elif not await send(action.message):
                        return False     # the client is gone: leaving the push starts the grace period
                if type(event) is End:
                    self.turns.ended()   # at once: the client may ask again as soon as it has 'complete'
            return True

        try:
            outcome = await self.hub.push(log, deliver, after, send_timeout_s=self.manager.send_timeout_s)
            if outcome == "timed_out":   # as ConnectionManager.send does with a send that timed out
                self.manager.disconnect(self.ws)
        finally:
            self.turns.ended()
            await typing.stop(notify=False)

    async def send_now(self, message: dict) -> bool:
        """:meth:`send` with no timeout of its own (the push that calls it bounds a send that waits)."""
        return await self.manager.send(self.ws, message, bounded=False)

    async def stop(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.clean_close and self.current is not None and self.current.running:
            self.hub.cancel(self.current, "client_left", "The client closed the connection.")


class _Typing:
    """The typing indicator, done right: repeated while the model is silent, stopped on *every* path
    (first token, error, cancel, disconnect), and never left running behind a finished reply."""

    def __init__(self, session: _WSChatSession, interval_s: float):
        self.session, self.interval_s = session, interval_s
        self.task: asyncio.Task | None = None

    @property
    def active(self) -> bool:
        return self.task is not None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._repeat())

    async def _repeat(self) -> None:
        while await self.session.send(proto.typing(True)):
            await asyncio.sleep(self.interval_s)

    async def stop(self, notify: bool = True) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if notify:
            await self.session.send(proto.typing(False))
