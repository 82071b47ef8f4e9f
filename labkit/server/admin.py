"""The instructor's controls: who is in the class, and switches that apply to everyone at once.

``GET /lab/participants`` is for anyone let in (it shows names and latencies, nothing secret).
The switches are for the instructor only (``Identity.is_instructor``): the holder of the instructor
key when the server has one (the classroom does), else of the class token itself, or the local user
of a loopback server without a token (whose browser pages are kept out by the Origin and
Content-Type checks of :mod:`labkit.server.guard`).

* ``POST /lab/admin/model {"model": "gpt-4o"}``: the model the chat routes ask for from now on;
* ``POST /lab/admin/network {"profile": "3g"}``: the network everyone's traffic goes through, when the
  server runs behind the classroom's :class:`~labkit.netem.NetemProxy` (``python -m labkit classroom``).
"""

from __future__ import annotations

import base64
import html
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..auth import is_loopback
from ..model.profiles import UnknownModelError, resolve_model
from ..netem import PROFILES
from ..protocol import safejson
from ..protocol.openai_chat import APIError
from .participants import Participants
from .state import LiveSettings, UpstreamConfig

__all__ = ["create_admin_router"]


def create_admin_router(live: LiveSettings, participants: Participants, upstream: UpstreamConfig) -> APIRouter:
    """The instructor's routes: the one writer of ``live`` (the model, the network)."""
    router = APIRouter()

    def instructor_only(request: Request) -> None:
        if not request.state.identity.is_instructor:
            raise APIError(403, "Only the instructor (with the instructor key) can change this.", code="forbidden")

    async def field(request: Request, name: str) -> str:
        try:
            value = safejson.loads(await request.body())[name]
        except (ValueError, KeyError, TypeError):
            raise APIError(400, f"Send {{\"{name}\": \"...\"}}.", code="invalid_body") from None
        if not isinstance(value, str):
            raise APIError(400, f"'{name}' must be a string.", param=name, code="invalid_body")
        return value

    @router.get("/lab/participants")
    async def list_participants() -> dict:
        return {**participants.snapshot(), "model": live.model, "network": live.network}

    @router.post("/lab/admin/model")
    async def set_model(request: Request) -> dict:
        instructor_only(request)
        model = await field(request, "model")
        local = is_loopback(urlsplit(upstream.upstream_base_url or "http://127.0.0.1").hostname or "")
        if local:                                      # the local model: the name must be one it knows
            try:
                resolve_model(model)
            except UnknownModelError:
                raise APIError(404, f"The model `{model}` does not exist.", param="model",
                               code="model_not_found") from None
        live.model = model
        return {"model": model}

    @router.post("/lab/admin/network")
    async def set_network(request: Request) -> dict:
        instructor_only(request)
        name = await field(request, "profile")
        if name not in PROFILES:
            raise APIError(400, f"Unknown network profile {name!r}; one of {sorted(PROFILES)}.", param="profile",
                           code="invalid_profile")
        if not live.can_switch_network:
            raise APIError(409, "This server is not behind the classroom's network emulator "
                                "(start it with `python -m labkit classroom`).", code="no_network_emulator")
        live.set_network(name)
        return {"network": name}

    @router.get("/lab/instructor", include_in_schema=False)
    async def instructor_page(request: Request) -> HTMLResponse:
        """The instructor's page: the join link's QR code as an image, to put on the projector."""
        instructor_only(request)
        join_url = live.join_url
        if join_url is None:
            raise APIError(409, "This server has no join link (start it with `python -m labkit classroom`).",
                           code="no_classroom")
        from ..joinlink import mask_secret, qr_png
        token = parse_qs(urlsplit(join_url).query).get("token", [None])[0]
        png = base64.b64encode(qr_png(join_url, scale=10)).decode()
        page = (f"<!doctype html><meta charset=utf-8><title>Join the lab</title>"
                f"<body style='background:#fff;color:#000;font-family:sans-serif;text-align:center'>"
                f"<h1>Scan to join the Realtime AI Lab</h1><img alt='QR code of the join link' "
                f"src='data:image/png;base64,{png}'><p><code>{html.escape(mask_secret(join_url, token))}</code></p>")
        return HTMLResponse(page, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})

    return router
