"""The instructor's controls: who is in the class, and switches that apply to everyone at once.

``GET /lab/participants`` is for anyone let in (it shows names and latencies, nothing secret).
The switches are for the instructor only: whoever holds the class token itself (user ``shared``),
or anyone on a loopback server without a token (user ``local``).

* ``POST /lab/admin/model {"model": "gpt-4o"}``: the model the chat routes ask for from now on;
* ``POST /lab/admin/network {"profile": "3g"}``: the network everyone's traffic goes through, when the
  server runs behind the classroom's :class:`~labkit.netem.NetemProxy` (``python -m labkit classroom``).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from ..auth import LOCAL_USER, SHARED_USER
from ..model.profiles import UnknownModelError, resolve_model
from ..netem import PROFILES
from ..protocol.openai_chat import APIError
from .participants import Participants
from .state import ServerConfig

__all__ = ["create_admin_router"]


def create_admin_router(config: ServerConfig, participants: Participants, app_state) -> APIRouter:
    router = APIRouter()

    def instructor_only(request: Request) -> None:
        if request.state.user not in (SHARED_USER, LOCAL_USER):
            raise APIError(403, "Only the instructor (the class token itself) can change this.", code="forbidden")

    async def field(request: Request, name: str) -> str:
        try:
            value = json.loads(await request.body())[name]
        except (ValueError, KeyError, TypeError):
            raise APIError(400, f"Send {{\"{name}\": \"...\"}}.", code="invalid_body") from None
        if not isinstance(value, str):
            raise APIError(400, f"'{name}' must be a string.", param=name, code="invalid_body")
        return value

    def network() -> str | None:
        proxy = getattr(app_state, "netem_proxy", None)
        return proxy.profile.name if proxy is not None else None

    @router.get("/lab/participants")
    async def list_participants() -> dict:
        return {**participants.snapshot(), "model": config.default_model, "network": network()}

    @router.post("/lab/admin/model")
    async def set_model(request: Request) -> dict:
        instructor_only(request)
        model = await field(request, "model")
        if config.upstream_api_key is None:           # the local model: the name must be one it knows
            try:
                resolve_model(model)
            except UnknownModelError:
                raise APIError(404, f"The model `{model}` does not exist.", param="model",
                               code="model_not_found") from None
        config.default_model = model
        return {"model": model}

    @router.post("/lab/admin/network")
    async def set_network(request: Request) -> dict:
        instructor_only(request)
        name = await field(request, "profile")
        if name not in PROFILES:
            raise APIError(400, f"Unknown network profile {name!r}; one of {sorted(PROFILES)}.", param="profile",
                           code="invalid_profile")
        setter = getattr(app_state, "set_network", None)
        if setter is None:
            raise APIError(409, "This server is not behind the classroom's network emulator "
                                "(start it with `python -m labkit classroom`).", code="no_network_emulator")
        setter(name)
        return {"network": name}

    return router
