"""Minting ephemeral Realtime keys: ``POST /v1/realtime/client_secrets`` (GA) and ``POST /v1/realtime/sessions`` (beta).

Thin routes over :class:`labkit.ephemeral.EphemeralKeys`: the request's session is validated the
way ``session.update`` validates it (same errors, as 400s), the key is minted for it, and the
answer has OpenAI's shapes (``openai.types.realtime.ClientSecretCreateResponse``; the beta
``SessionCreateResponse`` with ``client_secret``). Minting needs a real key (the server's
``api_key`` when one is set); an ephemeral key cannot mint another.
"""

from __future__ import annotations

import json
import secrets

from fastapi import APIRouter, Request

from ..ephemeral import PREFIX, EphemeralKeys
from ..protocol.openai_chat import APIError
from ..realtime.session import RealtimeError, SessionConfig, apply_update, render_session
from .state import ModelServerConfig

__all__ = ["create_key_routes"]


def create_key_routes(router: APIRouter, config: ModelServerConfig, keys: EphemeralKeys) -> None:
    def check_minter(request: Request) -> None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if key.startswith(PREFIX):
            raise APIError(401, "An ephemeral key cannot mint another key: use your server's API key.",
                           code="invalid_api_key")
        if config.api_key is not None and not secrets.compare_digest(key.encode(), config.api_key.encode()):
            raise APIError(401, "Incorrect API key provided." if key else "You didn't provide an API key.",
                           code="invalid_api_key" if key else None)

    async def body_of(request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise APIError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise APIError(400, "Invalid type for request body: expected an object.", code="invalid_type")
        return body

    def ttl(body: dict) -> int:
        try:
            return keys.ttl_from(body.get("expires_after"))
        except ValueError as e:
            param, _, message = str(e).partition("|")
            raise APIError(400, message, param=param, code="invalid_value") from None

    def validated(session: dict, *, beta: bool) -> SessionConfig:
        base = SessionConfig(id="sess_" + secrets.token_hex(8), model=session.get("model") or "gpt-realtime")
        try:
            return apply_update(base, session, beta=beta)
        except RealtimeError as e:
            raise APIError(400, e.message, param=e.param, code=e.code) from None

    @router.post("/v1/realtime/client_secrets")
    async def client_secrets(request: Request) -> dict:
        """GA: ``{"expires_after"?, "session"?}`` -> ``{"value": "ek_…", "expires_at", "session"}``."""
        check_minter(request)
        body = await body_of(request)
        lifetime = ttl(body)
        session = body.get("session") if body.get("session") is not None else {"type": "realtime"}
        if not isinstance(session, dict):
            raise APIError(400, "Invalid type for 'session': expected an object.", param="session", code="invalid_type")
        cfg = validated(session, beta=False)
        minted = keys.mint(session, lifetime)
        return {"value": minted.value, "expires_at": minted.expires_at, "session": render_session(cfg, beta=False)}

    @router.post("/v1/realtime/sessions")
    async def beta_sessions(request: Request) -> dict:
        """Beta: the flat session in, the session plus ``client_secret: {value, expires_at}`` out."""
        check_minter(request)
        body = await body_of(request)
        lifetime = ttl({"expires_after": (body.get("client_secret") or {}).get("expires_after")}
                       if isinstance(body.get("client_secret"), dict) else {})
        session = {k: v for k, v in body.items() if k != "client_secret"}
        cfg = validated(session, beta=True)
        minted = keys.mint(session, lifetime, beta=True)
        return {**render_session(cfg, beta=True),
                "client_secret": {"value": minted.value, "expires_at": minted.expires_at}}
