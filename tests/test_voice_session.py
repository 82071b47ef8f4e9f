"""``POST /lab/voice/session``: the page's ephemeral key, minted through the model API like a production app."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

import labkit
from labkit.classroom import lan_address
from labkit.server.voice import realtime_url_for


def test_the_socket_address_is_this_origin_for_the_local_lab_and_direct_for_a_real_service():
    assert realtime_url_for("http://127.0.0.1:8000/v1", "gpt-realtime") == ("/v1/realtime?model=gpt-realtime", "local")
    assert realtime_url_for("https://api.openai.com/v1", "gpt-realtime") == (
        "wss://api.openai.com/v1/realtime?model=gpt-realtime", "upstream")


async def _open(url: str, key: str) -> dict:
    async with websockets.connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{key}"]) as ws:
        assert ws.subprotocol == "realtime"
        return json.loads(await ws.recv())


async def test_a_local_key_opens_the_lab_socket_the_browser_way(make_server):
    server = make_server(lab_token="class-token", api_key="class-token", upstream_api_key="class-token")
    async with httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.post("/lab/voice/session", json={})
        assert refused.status_code == 401                               # behind the class token like every /lab route
        r = await client.post("/lab/voice/session", json={}, headers={"Authorization": "Bearer class-token"})
        bad = await client.post("/lab/voice/session", content=b"[1]", headers={"Authorization": "Bearer class-token",
                                                                               "Content-Type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()
    body = r.json()
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert body["value"].startswith("ek_") and body["value"] != "class-token" and body["upstream"] == "local"
    assert body["realtime_url"] == "/v1/realtime?model=gpt-realtime"
    created = await _open(server.ws_url + body["realtime_url"], body["value"])
    assert created["type"] == "session.created"


async def test_with_a_real_service_upstream_the_key_comes_from_it_and_the_page_goes_there(make_server):
    address = lan_address()
    if address.startswith("127."):
        pytest.skip("no non-loopback address here to stand in for a remote service")
    # another OpenAI-compatible service (a second lab on this machine's LAN address) plays OpenAI's part
    remote = labkit.LabServer(labkit.ServerConfig(lab_token="remote-secret", api_key="remote-secret", time_scale=0.05),
                              host=address).start()
    try:
        app = make_server(upstream_base_url=remote.base_url, upstream_api_key="remote-secret")
        async with httpx.AsyncClient(base_url=app.url) as client:
            body = (await client.post("/lab/voice/session")).json()
        assert body["upstream"] == "upstream" and body["realtime_url"] == f"{remote.ws_url}/v1/realtime?model=gpt-realtime"
        assert "remote-secret" not in json.dumps(body)                  # the page never sees the server's key
        assert (await _open(body["realtime_url"], body["value"]))["type"] == "session.created"
    finally:
        remote.stop()
