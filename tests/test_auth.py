"""Tokens, users and the rule that keeps a networked server closed."""

import subprocess
import sys

import httpx
import pytest
import websockets

import labkit
from labkit.auth import Authenticator, check_bind, is_loopback, issue_user_token

SECRET = "class-secret-1234"


def test_loopback_needs_no_token_and_the_token_names_the_user():
    auth = Authenticator(None)
    assert auth.identify(None) == "local" and auth.identify("alice") == "alice"
    assert auth.identify("bad name!") is None


def test_with_a_secret_only_it_and_signed_user_tokens_pass():
    auth = Authenticator(SECRET)
    assert auth.identify(None) is None and auth.identify("alice") is None
    assert auth.identify(SECRET) == "shared"
    token = issue_user_token(SECRET, "alice")
    assert auth.identify(token) == "alice"
    assert auth.identify("bob" + token[5:]) is None                       # a forged name fails
    assert Authenticator("another-secret-99").identify(token) is None


def test_a_non_loopback_bind_needs_a_good_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    check_bind("127.0.0.1", None)
    with pytest.raises(PermissionError, match="LAB_TOKEN"):
        check_bind("0.0.0.0", None)
    with pytest.raises(PermissionError, match="too short"):
        check_bind("0.0.0.0", "abc")
    check_bind("0.0.0.0", SECRET)
    with pytest.raises(PermissionError):
        labkit.serve(host="0.0.0.0")


def test_the_command_line_refuses_a_network_bind_without_lab_token():
    env = {k: v for k, v in __import__("os").environ.items() if k != "LAB_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "labkit", "serve", "--host", "0.0.0.0", "--port", "0"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and "refusing to listen on 0.0.0.0 without LAB_TOKEN" in out.stderr


async def test_a_server_with_lab_token_rejects_requests_without_it(make_server):
    server = make_server(lab_token=SECRET)
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/health")).status_code == 200                 # open: load balancers poll it
        r = await client.post("/api/chat", json={"message": "hi"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_token"
        r = await client.post("/api/chat", json={"message": "hi"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
        login = await client.post("/api/login", json={"name": "alice"}, headers={"Authorization": f"Bearer {SECRET}"})
        token = login.json()["token"]
        assert login.status_code == 200 and login.json()["user"] == "alice"
        r = await client.post("/api/chat", json={"message": "hi", "max_tokens": 3}, params={"token": token})
        assert r.status_code == 200 and r.json()["tokens"] == 3
        r = await client.post("/api/login", json={"name": "mallory"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(server.ws_url + "/ws/chat")
    assert e.value.response.status_code == 403
    async with websockets.connect(server.ws_url + f"/ws/chat?token={token}") as ws:
        await ws.send('{"type": "ping"}')
        assert await ws.recv() == '{"type": "pong"}'
