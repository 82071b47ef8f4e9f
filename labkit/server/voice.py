"""``POST /lab/voice/session``: a short-lived Realtime key for the lab's own web page (voice mode).

A browser cannot keep a secret and cannot set ``Authorization`` on a WebSocket, so the page asks its
server for an *ephemeral* key and offers it as a subprotocol (``openai-insecure-api-key.<key>``).
The key is minted the way any production app mints one: ``POST {model API}/realtime/client_secrets``
with the server's own credentials, which the page never sees.

* Offline, the model API is this server's own ``/v1`` (the Realtime emulator), and the page connects
  to ``/v1/realtime`` on the origin it was loaded from (so it also works behind the classroom's proxy
  and over ``https://``).
* With ``OPENAI_API_KEY`` (the server's upstream is OpenAI), the key comes from OpenAI and the page
  connects to ``wss://api.openai.com/v1/realtime`` directly. Against OpenAI itself that needs the
  network and a key; the offline tests exercise it with a second, OpenAI-compatible lab server
  standing in for OpenAI.

Like every ``/lab/`` route it sits behind the class token (:mod:`labkit.server.identity`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..protocol.openai_chat import error_body
from .state import UpstreamConfig
from .upstream import LOCAL_API_KEY

__all__ = ["create_voice_router", "realtime_url_for", "DEFAULT_VOICE_MODEL", "KEY_SECONDS"]

DEFAULT_VOICE_MODEL = "gpt-realtime"
#: How long a page's key stays valid for opening a connection (OpenAI's default is 600 s).
KEY_SECONDS = 600
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def realtime_url_for(upstream_base_url: str, model: str) -> tuple[str, str]:
    """Where the page opens its Realtime socket, and whose API that is ("local" or "upstream").

    A loopback model API is this lab (the page cannot reach 127.0.0.1 of the server from a phone):
    the page then uses a path on its own origin. Anything else is a real service, reached directly.
    """
    parts = urlsplit(upstream_base_url)
    if parts.hostname in _LOOPBACK:
        return f"/v1/realtime?model={model}", "local"
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/realtime?model={model}", "upstream"


def create_voice_router(config: UpstreamConfig) -> APIRouter:
    router = APIRouter()

    @router.post("/lab/voice/session")
    async def voice_session(request: Request) -> JSONResponse:
        """Mint an ephemeral key for one voice connection of this page."""
        try:
            body = await request.json() if (await request.body()) else {}
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("model", DEFAULT_VOICE_MODEL), str):
            return JSONResponse(error_body("Invalid request: expected a JSON object like {\"model\": \"gpt-realtime\"}."),
                                status_code=400)
        model = body.get("model", DEFAULT_VOICE_MODEL)
        base = config.upstream_base_url
        if not base:
            return JSONResponse(error_body("The server has no model API yet.", type="server_error"), status_code=503)
        url, kind = realtime_url_for(base, model)
        request_body = {"expires_after": {"anchor": "created_at", "seconds": KEY_SECONDS},
                        "session": {"type": "realtime", "model": model}}
        try:
            async with httpx.AsyncClient(timeout=15) as client:
                r = await client.post(f"{base.rstrip('/')}/realtime/client_secrets", json=request_body,
                                      headers={"Authorization": f"Bearer {config.upstream_api_key or LOCAL_API_KEY}"})
        except httpx.HTTPError as e:
            return JSONResponse(error_body(f"The model API could not be reached to mint a voice key "
                                           f"({type(e).__name__}).", type="server_error"), status_code=502)
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {r.status_code}"
            return JSONResponse(error_body(f"The model API refused to mint a voice key: {message}",
                                           type="server_error"), status_code=502)
        secret = r.json()
        return JSONResponse({"value": secret["value"], "expires_at": secret["expires_at"], "model": model,
                             "realtime_url": url, "upstream": kind},
                            headers={"Cache-Control": "no-store"})

    return router
