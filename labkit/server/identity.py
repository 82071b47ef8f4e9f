"""Who is connecting: one ASGI middleware that names the user of every app request, or refuses it.

It runs before routing, for HTTP and WebSocket alike, so no route can forget the check. The user
lands in ``request.state.user`` / ``websocket.state.user``. Refusals are protocol-correct: HTTP gets
401 with an OpenAI-style error body; a WebSocket handshake gets HTTP 403 (an ASGI app that closes
before accepting makes the server answer the upgrade with 403), which every client reports.
The model API (``/v1``) has its own API-key check, and ``/health`` and the browser page are open:
the page holds no secret, it asks for the token.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from ..auth import Authenticator, token_from
from ..protocol.openai_chat import error_body

__all__ = ["IdentityMiddleware", "PROTECTED_PREFIXES"]

PROTECTED_PREFIXES = ("/api/", "/ws/", "/lab/")


class IdentityMiddleware:
    def __init__(self, app, authenticator: Authenticator):
        self.app, self.auth = app, authenticator

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(PROTECTED_PREFIXES):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        user = self.auth.identify(token_from(headers, query))
        if user is None:
            return await self._refuse(scope, send, headers, query)
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)

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
