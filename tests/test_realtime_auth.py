"""How clients authenticate to ``/v1/realtime``: subprotocols (the browser way) and ephemeral keys.

The key store and the handshake rule are pure and tested with an injected clock; the routes are
driven by the official SDK and by a plain websockets client offering the browsers' subprotocols.
Every server event is validated strictly against the SDK's models."""

from __future__ import annotations

import json
import time

import pytest
import websockets
from openai import AsyncOpenAI, AuthenticationError, BadRequestError
from openai.types.beta.realtime.session_create_response import SessionCreateResponse
from openai.types.realtime import ClientSecretCreateResponse

from labkit.ephemeral import (EphemeralKeys, KeyRefused, check_realtime_key, handshake_credentials)
from labkit.realtime import validate_server_event

KEY = "sk-lab-right"


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


# ------------------------------------------------------------------------------------------ pure

def test_minted_keys_expire_exactly_and_are_forgotten():
    clock = Clock()
    keys = EphemeralKeys(clock=clock, token=lambda n: "x" * n)
    k = keys.mint({"type": "realtime", "instructions": "hi"}, 60)
    assert k.value.startswith("ek_") and k.expires_at == 1_000_060 and "x" * 10 not in repr(k)
    assert keys.lookup(k.value).session["instructions"] == "hi"
    clock.t += 59.9
    assert keys.lookup(k.value) is k
    clock.t += 0.1
    with pytest.raises(KeyRefused, match="expired") as e:
        keys.lookup(k.value)
    assert e.value.status == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(KeyRefused, match="not valid"):
        keys.lookup("ek_unknown")
    keys.token = lambda n: "y" * n
    keys.mint({}, 10)                                   # minting sweeps the expired key
    assert len(keys) == 1


@pytest.mark.parametrize("expires_after, ttl", [(None, 600), ({"anchor": "created_at", "seconds": 10}, 10),
                                                ({"seconds": 7200}, 7200)])
def test_expires_after_is_honoured(expires_after, ttl):
    assert EphemeralKeys.ttl_from(expires_after) == ttl


@pytest.mark.parametrize("bad", [{"seconds": 9}, {"seconds": 7201}, {"seconds": "60"}, {"anchor": "now"}, 60])
def test_bad_expires_after_is_refused(bad):
    with pytest.raises(ValueError):
        EphemeralKeys.ttl_from(bad)


def test_handshake_credentials_from_subprotocols_and_headers():
    c = handshake_credentials({}, ["realtime", "openai-insecure-api-key.ek_abc", "openai-beta.realtime-v1"])
    assert (c.key, c.beta, c.subprotocol) == ("ek_abc", True, "realtime")
    assert "ek_abc" not in repr(c)
    c = handshake_credentials({"authorization": "Bearer sk-1", "openai-beta": "realtime=v1"}, [])
    assert (c.key, c.beta, c.subprotocol) == ("sk-1", True, None)
    c = handshake_credentials({}, ["realtime", "openai-agents-sdk.0.20.0"])
    assert (c.key, c.beta, c.subprotocol) == (None, False, "realtime")


def test_the_handshake_rule():
    keys = EphemeralKeys(clock=Clock())
    ek = keys.mint({"type": "realtime"}, 10).value
    assert check_realtime_key(None, None, keys) is None            # no key required
    assert check_realtime_key("sk-any", None, keys) is None
    assert check_realtime_key(KEY, KEY, keys) is None
    assert check_realtime_key(ek, KEY, keys).value == ek            # an ephemeral key stands in for the API key
    for wrong in (None, "sk-wrong", "ek_forged"):
        with pytest.raises(KeyRefused):
            check_realtime_key(wrong, KEY, keys)
    with pytest.raises(KeyRefused):                                  # even where no key is required
        check_realtime_key("ek_forged", None, keys)


# ------------------------------------------------------------------------------------------ the real server

def _url(server, model="gpt-realtime"):
    return f"{server.ws_url}/v1/realtime?model={model}"


async def _recv(ws, beta=False):
    event = json.loads(await ws.recv())
    validate_server_event(event, beta=beta)
    return event


async def test_sdk_mints_a_key_and_a_browser_style_client_connects_with_it(make_server):
    server = make_server(api_key=KEY)
    client = AsyncOpenAI(base_url=server.base_url, api_key=KEY)
    asked_at = time.time()
    secret = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "instructions": "Answer briefly.", "output_modalities": ["text"]})
    raw = secret.model_dump(mode="json", exclude_unset=True)
    ClientSecretCreateResponse.model_validate_json(json.dumps(raw), strict=True)
    # created while the request was in flight (however long a busy machine took to answer it), plus 120 s
    assert secret.value.startswith("ek_") and int(asked_at) + 120 <= secret.expires_at <= time.time() + 121
    assert secret.session.output_modalities == ["text"]

    protocols = ["realtime", "openai-insecure-api-key." + secret.value]
    async with websockets.connect(_url(server), subprotocols=protocols) as ws:
        assert ws.subprotocol == "realtime"
        created = await _recv(ws)
        assert created["session"]["instructions"] == "Answer briefly."       # the key's session applies
        assert created["session"]["output_modalities"] == ["text"]
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is SSE?"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        while (event := await _recv(ws))["type"] != "response.done":
            pass
        assert event["response"]["status"] == "completed" and event["response"]["output"][0]["content"][0]["text"]

    # the subprotocol key is accepted like a header; a wrong one is refused like a wrong header
    async with websockets.connect(_url(server), subprotocols=["realtime", "openai-insecure-api-key." + KEY]) as ws:
        assert ws.subprotocol == "realtime" and (await _recv(ws))["type"] == "session.created"
    for wrong in ("sk-wrong", "ek_forged"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as e:
            await websockets.connect(_url(server), subprotocols=["realtime", "openai-insecure-api-key." + wrong])
        assert e.value.response.status_code == 401
        assert json.loads(e.value.response.body)["error"]["code"] == "invalid_api_key"


async def test_an_expired_key_is_refused_and_a_key_cannot_mint(make_server):
    server = make_server(api_key=KEY)
    now = [time.time()]                  # the key store's clock moves only when the test says: a busy machine
    server.app.state.realtime_keys.clock = lambda: now[0]       # cannot expire the key before its ten seconds
    client = AsyncOpenAI(base_url=server.base_url, api_key=KEY)
    secret = await client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 10})
    async with websockets.connect(_url(server), additional_headers={"Authorization": f"Bearer {secret.value}"}) as ws:
        assert (await _recv(ws))["type"] == "session.created"
    now[0] += 11                                                        # ten seconds later
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        await websockets.connect(_url(server), subprotocols=["realtime", "openai-insecure-api-key." + secret.value])
    assert e.value.response.status_code == 401
    assert "expired" in json.loads(e.value.response.body)["error"]["message"]

    with pytest.raises(AuthenticationError):
        await AsyncOpenAI(base_url=server.base_url, api_key=secret.value).realtime.client_secrets.create()
    with pytest.raises(AuthenticationError):
        await AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong").realtime.client_secrets.create()
    with pytest.raises(BadRequestError) as e:
        await client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 5})
    assert e.value.param == "expires_after.seconds"
    with pytest.raises(BadRequestError) as e:
        await client.realtime.client_secrets.create(session={"type": "realtime",
                                                             "audio": {"output": {"voice": "robot"}}})
    assert e.value.param == "session.audio.output.voice"


async def test_beta_sessions_route_and_the_beta_subprotocol(server):
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-any")
    made = await client.beta.realtime.sessions.create(model="gpt-4o-realtime-preview", modalities=["text"],
                                                      voice="alloy")
    SessionCreateResponse.model_validate_json(json.dumps(made.model_dump(mode="json", exclude_unset=True)),
                                              strict=True)
    value = made.client_secret.value
    assert value.startswith("ek_") and made.modalities == ["text"]
    protocols = ["realtime", "openai-insecure-api-key." + value, "openai-beta.realtime-v1"]
    async with websockets.connect(_url(server, "gpt-4o-realtime-preview"), subprotocols=protocols) as ws:
        assert ws.subprotocol == "realtime"
        created = await _recv(ws, beta=True)                  # the beta dialect, chosen by the subprotocol
        assert created["session"]["modalities"] == ["text"] and created["session"]["voice"] == "alloy"
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        kinds = []
        while (event := await _recv(ws, beta=True))["type"] != "response.done":
            kinds.append(event["type"])
        assert "response.text.delta" in kinds and "conversation.item.created" in kinds
