"""The labkit server: one ASGI app with the model API (``/v1``) and the app transports (``/api``, ``/ws``).

Every error leaves as OpenAI's ``{"error": {message, type, param, code}}`` body with a real status
code: malformed input, unknown routes and wrong methods included, so any client can read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..resources import package_file
from ..protocol.openai_chat import APIError, error_body
from .chat import create_chat_router
from .connections import ConnectionManager
from .model_api import create_model_router, openai_error_response
from .realtime import create_realtime_router
from .webrtc import WebRTCCalls, create_webrtc_router
from ..auth import Authenticator, Identity
from ..ephemeral import EphemeralKeys
from ..rooms.broker import make_broker
from .admin import create_admin_router
from .guard import RequestGuard
from .identity import IdentityMiddleware
from .participants import Participants
from .rooms import RoomHub, create_room_router
from .sharedstreams import SharedStreams
from .state import LiveSettings, ServerConfig, ServerStats
from .streamhub import StreamHub
from .voice import create_voice_router
from .upstream import Upstream

__all__ = ["create_app"]

log = logging.getLogger("labkit.server")

#: Who a request made with an ephemeral Realtime key is (the key names no person).
EPHEMERAL_USER = "realtime-key"

STATIC_DIR = package_file("server", "static")


def create_app(config: ServerConfig | None = None, live: LiveSettings | None = None) -> FastAPI:
    """The app. Each component gets its own part of ``config`` (:meth:`ServerConfig.split`) and its
    collaborators as arguments; ``live`` (made here unless given) holds what admin switches at run time."""
    config = config or ServerConfig()
    parts = config.split()
    live = live or LiveSettings(config.default_model)
    stats = ServerStats()
    upstream = Upstream(parts.upstream, live)
    manager = ConnectionManager()
    participants = Participants()
    # with Redis (several processes), replies are resumable on any of them, as rooms are shared
    shared = (SharedStreams(config.redis_url, keep_s=config.stream_keep_s, reader_ttl_s=max(5.0, 2 * config.resume_grace_s))
              if config.redis_url else None)
    hub = StreamHub(parts.streams, stats, upstream, participants, shared)
    broker = make_broker(parts.rooms.redis_url)
    rooms = RoomHub(parts.rooms, stats, upstream, broker, lease_s=parts.rooms.room_lease_s, participants=participants)

    async def end_streams() -> None:
        """Stop every generation and room (a server that stops cleanly first ends what it streams)."""
        await rooms.aclose()
        await hub.aclose()

    calls = WebRTCCalls()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.loop = asyncio.get_running_loop()
        app.state.end_streams = end_streams
        yield
        try:                                  # bounded: a broker that went away must not hold the exit
            async with asyncio.timeout(5):
                await rooms.aclose()
                await broker.aclose()
        except Exception:
            log.warning("rooms did not close cleanly (is the broker still there?)")
        await hub.aclose()
        if shared is not None:
            with contextlib.suppress(Exception):
                await shared.aclose()
        await calls.aclose()                  # WebRTC calls still open
        await upstream.aclose()

    app = FastAPI(title="labkit", summary="The Realtime AI Lab's local OpenAI-compatible backend and chat app.",
                  lifespan=lifespan)
    # Handles for whoever holds the app (LabServer, the classroom, tests); no component reads them.
    app.state.config, app.state.live, app.state.stats = config, live, stats
    app.state.upstream, app.state.connections, app.state.hub, app.state.rooms = upstream, manager, hub, rooms
    access = parts.access
    authenticator = Authenticator(access.lab_token, instructor_key=access.instructor_key,
                                  api_keys=(access.api_key,) if access.api_key else ())
    app.state.authenticator = authenticator      # add_verifier() here accepts other credentials
    app.add_middleware(IdentityMiddleware, authenticator=authenticator, allowed_origins=access.allowed_origins)
    app.add_middleware(RequestGuard, token_required=authenticator.required, max_body_bytes=access.max_body_bytes,
                       body_timeout_s=access.body_timeout_s, allowed_hosts=access.allowed_hosts)

    app.include_router(create_model_router(parts.model, stats))
    app.include_router(create_chat_router(parts.chat, stats, upstream, manager, hub))
    app.state.realtime_keys = keys = EphemeralKeys()      # ephemeral Realtime keys (labkit.ephemeral)
    # a page that was handed an ephemeral key may use it wherever a key is required (the token of a
    # networked server included): it was minted by someone who held a valid credential, and expires
    authenticator.add_verifier(lambda token: Identity(EPHEMERAL_USER) if keys.is_valid(token) else None)
    app.include_router(create_realtime_router(parts.model, stats, keys))
    app.include_router(create_webrtc_router(parts.model, keys, calls))   # WebRTC: /v1/realtime/calls
    app.include_router(create_room_router(parts.rooms, rooms))
    app.include_router(create_admin_router(live, participants, parts.upstream))
    app.include_router(create_voice_router(parts.upstream))

    app.mount("/app", StaticFiles(directory=STATIC_DIR, html=True), name="browser-client")

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> RedirectResponse:
        """The browser client (the query string, e.g. ``?token=…``, is kept)."""
        query = request.url.query
        return RedirectResponse("/app/" + (f"?{query}" if query else ""))

    @app.get("/lab/stats")
    async def lab_stats() -> dict:
        """Live counters (tokens generated, active and cancelled streams, connections)."""
        return stats.as_dict()

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, exc: APIError) -> JSONResponse:
        stats.errors += 1
        return openai_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        stats.errors += 1
        messages = {404: f"Unknown request URL: {request.method} {request.url.path}.",
                    405: f"Method {request.method} is not allowed for {request.url.path}."}
        return JSONResponse(error_body(messages.get(exc.status_code, str(exc.detail)),
                                       code="unknown_url" if exc.status_code == 404 else None),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        stats.errors += 1
        return JSONResponse(error_body(f"Invalid request: {exc.errors()[0].get('msg', 'bad input')}"),
                            status_code=400)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        stats.errors += 1
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("The server had an error while processing your request.",
                                       type="server_error"), status_code=500)

    return app
