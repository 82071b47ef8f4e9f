"""Who is connecting: one ASGI middleware that names the user of every request, or refuses it.

It runs before routing, for HTTP and WebSocket alike, so no route can forget the check. The
:class:`~labkit.auth.Identity` lands in ``request.state.identity`` (its name in ``request.state.user``).

* A server with ``LAB_TOKEN`` (any networked bind) refuses every request without a valid token:
  the model API (``/v1``, ``/v1/realtime`` included), the app (``/api``, ``/ws``), the instructor's
  ``/lab`` and the API docs (``/docs``, ``/openapi.json``). Only :data:`OPEN_PATHS` stay open:
  ``/health`` (load balancers poll it) and the browser page, which holds no secret (it asks for one).
* On an open loopback server, a token only names the user; the model API keeps its own key check.
  Such requests are proven by no secret, so a state-changing one (or a WebSocket) from another
  site's page (its ``Origin``) is refused with 403: see :mod:`labkit.server.guard`.

Refusals are protocol-correct: HTTP gets 401 with an OpenAI-style error body; a WebSocket handshake
gets HTTP 403 (an ASGI app that closes before accepting makes the server answer the upgrade with 403).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from ..auth import LOCAL_USER, Authenticator, Identity, token_from
from ..protocol.openai_chat import error_body
from .guard import SAFE_METHODS, origin_is_allowed

__all__ = ["IdentityMiddleware", "APP_PREFIXES", "OPEN_PATHS", "is_open_path"]

#: The app's own routes: on an open server a bad token there is still refused (it names no user).
APP_PREFIXES = ("/api/", "/ws/", "/lab/")
#: What needs no token even on a networked server.
OPEN_PATHS = ("/health", "/", "/favicon.ico")
OPEN_PREFIXES = ("/app/",)


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path == "/app" or path.startswith(OPEN_PREFIXES)


class IdentityMiddleware:
    def __init__(self, app, authenticator: Authenticator, allowed_origins: tuple[str, ...] = ()):
        self.app, self.auth, self.allowed_origins = app, authenticator, tuple(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or is_open_path(scope["path"]):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        identity = self.auth.authenticate(token_from(headers, query))
        if identity is None and not self.auth.required and not scope["path"].startswith(APP_PREFIXES):
            identity = Identity(LOCAL_USER, "anonymous")     # open server, model API: /v1 checks its own key
        if identity is None:
            return await self._refuse(scope, send, headers, query)
        state_changing = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if state_changing and not identity.proven and not origin_is_allowed(headers.get("origin"), headers.get("host"),
                                                                           self.allowed_origins):
            # no secret proves this request: it could come from any web page the user has open
            return await self._deny(scope, send, f"Requests from the page at {headers.get('origin')!r} are not "
                                                 f"allowed (cross-origin).", "invalid_origin")
        state = scope.setdefault("state", {})
        state["identity"], state["user"] = identity, identity.user
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(scope, send, message: str, code: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps(error_body(message, code=code)).encode()
        await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _refuse(self, scope, send, headers, query) -> None:
        sent = "authorization" in headers or "token" in query
        message = ("The token is not valid for this server." if sent else
                   "This server needs a token: send 'Authorization: Bearer <token>' or add ?token=<token> to the URL "
                   "(the instructor's join link has it).")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps(error_body(message, code="invalid_token" if sent else "missing_token")).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
