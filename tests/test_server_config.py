"""ServerConfig is the user's flat set of options; each component gets its own small part of it, and
the settings switched at run time (model, network) live in one LiveSettings that admin.py writes."""

from __future__ import annotations

from dataclasses import fields

import httpx
import pytest

from labkit.clients import ChatError, collect, http_chat
from labkit.server.state import LiveSettings, ServerConfig, ServerParts

RUNTIME = {"default_model"}          # the initial value of LiveSettings.model, not a component's option


def test_every_option_reaches_a_component():
    config = ServerConfig()
    parts = config.split()
    used = set()
    for part in (getattr(parts, f.name) for f in fields(ServerParts)):
        for f in fields(part):
            used.add(f.name)
            assert getattr(part, f.name) == getattr(config, f.name), (type(part).__name__, f.name)
    assert used | RUNTIME == {f.name for f in fields(ServerConfig)}


def test_split_carries_the_values_and_parts_are_frozen():
    parts = ServerConfig(resume_grace_s=1.5, room_lease_s=9, lab_token="t", time_scale=0.1).split()
    assert parts.streams.resume_grace_s == 1.5 and parts.rooms.room_lease_s == 9
    assert parts.access.lab_token == parts.chat.lab_token == parts.rooms.lab_token == "t"
    assert parts.model.time_scale == 0.1 and not hasattr(parts.streams, "lab_token")
    with pytest.raises(AttributeError):
        parts.streams.resume_grace_s = 2                      # frozen: only LiveSettings changes at run time


def test_live_settings_network_switch_exists_only_when_attached():
    live = LiveSettings("gpt-4o-mini")
    assert live.network is None and not live.can_switch_network
    with pytest.raises(LookupError):
        live.set_network("3g")
    current = ["lan"]
    live.attach_network(lambda: current[0], lambda name: current.__setitem__(0, name))
    live.set_network("3g")
    assert live.network == "3g"


async def test_admin_switches_the_live_model_the_chat_routes_use(make_server):
    server = make_server()
    async with httpx.AsyncClient(base_url=server.url) as client:      # loopback, no token: the instructor
        assert (await client.get("/lab/participants")).json()["model"] == "gpt-4o-mini"
        assert (await client.post("/lab/admin/model", json={"model": "gpt-4o"})).json() == {"model": "gpt-4o"}
        assert (await client.get("/lab/participants")).json()["model"] == "gpt-4o"
        r = await client.post("/lab/admin/network", json={"profile": "3g"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "no_network_emulator"
    assert server.live.model == "gpt-4o" and server.config.default_model == "gpt-4o-mini"
    assert (await collect(http_chat(server.url, "hello", max_tokens=3))).tokens
    server.live.model = "gpt-17"                 # no such model: proof that each request reads live.model
    with pytest.raises(ChatError) as e:
        await collect(http_chat(server.url, "hello", max_tokens=3))
    assert e.value.code == "model_not_found"
    switched = []
    server.live.attach_network(lambda: "lan", switched.append)   # what the classroom attaches
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/lab/admin/network", json={"profile": "3g"})).json() == {"network": "3g"}
    assert switched == ["3g"]
