"""Hardening, access: every route behind the token, no secret in a log line, roles kept apart, no
cross-site request from a web page the user visits. Each test runs against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import httpx
import numpy as np
import pytest
import websockets

import labkit
from labkit.classroom import Classroom, qr_png, qr_terminal
from labkit.clients.room import RoomClient

SECRET = "class-secret-1234"


@pytest.fixture
def networked():
    """A server on every interface, as `LAB_TOKEN=… python -m labkit serve --host 0.0.0.0` runs it."""
    with labkit.serve(host="0.0.0.0", lab_token=SECRET, time_scale=0.05) as server:
        yield server


async def test_every_route_needs_the_token_on_a_networked_bind(networked):
    url = networked.url
    async with httpx.AsyncClient(base_url=url) as client:
        for method, path, body in (("GET", "/v1/models", None), ("GET", "/v1/models/gpt-4o", None),
                                   ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
                                       {"role": "user", "content": "hi"}]}),
                                   ("GET", "/docs", None), ("GET", "/openapi.json", None), ("GET", "/redoc", None),
                                   ("GET", "/lab/stats", None), ("GET", "/api/me", None)):
            r = await client.request(method, path, json=body)
            assert r.status_code == 401, (path, r.status_code)
            assert r.json()["error"]["code"] == "missing_token", path
            r = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {SECRET}"})
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert (await client.get("/health")).status_code == 200               # open: load balancers poll it
        assert (await client.get("/app/")).status_code == 200                 # the page holds no secret
    for path in ("/v1/realtime?model=gpt-realtime", "/ws/chat", "/ws/room/lab"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(networked.ws_url + path)
        assert refused.value.response.status_code == 403, path
    async with websockets.connect(networked.ws_url + "/v1/realtime?model=gpt-realtime",
                                  additional_headers={"Authorization": f"Bearer {SECRET}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    # the OpenAI SDK with a student's own token works against /v1 too
    async with httpx.AsyncClient(base_url=url) as client:
        token = (await client.post("/api/login", json={"name": "ann"},
                                   headers={"Authorization": f"Bearer {SECRET}"})).json()["token"]
    sdk = networked.client(api_key=token)
    reply = await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3)
    assert reply.choices[0].message.content


def test_no_secret_reaches_any_log_line(tmp_path):
    """uvicorn's access log prints the URL with its query string: ?token=… must come out masked."""
    token = "log-secret-" + os.urandom(6).hex()
    env = {**os.environ, "LAB_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--host", "0.0.0.0", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "listening on http" in line:
                ready.set()
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "".join(lines)
        url = re.search(r"listening on (http://\S+)", "".join(lines)).group(1)
        deadline = __import__("time").monotonic() + 30
        while True:                                      # the URL is printed just before uvicorn starts
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                assert __import__("time").monotonic() < deadline and proc.poll() is None, "".join(lines)
                ready.wait(0.05)
        httpx.get(url + "/api/me", params={"token": token}).raise_for_status()
        httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        assert httpx.get(url + "/api/me", params={"token": token + "x"}).status_code == 401

        async def ws() -> None:
            async with websockets.connect(url.replace("http", "ws") + f"/ws/chat?token={token}") as conn:
                await conn.send('{"type": "ping"}')
                await conn.recv()
        import asyncio
        asyncio.run(ws())
        # the access log is written after each response: wait until the lines are there
        deadline = __import__("time").monotonic() + 30
        while sum("/api/me" in line for line in lines) < 3 or not any("WebSocket" in line for line in lines):
            assert __import__("time").monotonic() < deadline, "".join(lines)
            ready.wait(0.05)
    finally:
        proc.terminate()
        proc.wait(20)
        reader.join(10)
    log = "".join(lines)
    assert token not in log, log
    assert "token=***" in log                                  # the lines are there, masked


def _render_terminal(text: str, dark_theme: bool) -> np.ndarray:
    """What a terminal shows for ``text``: 8-bit grey pixels, two per character cell (upper and lower
    half), in the theme's default colours unless an ANSI code sets them (30 = black, 107 = white)."""
    default_fg, default_bg = (230, 20) if dark_theme else (20, 230)
    rows = []
    for line in text.splitlines():
        fg, bg = default_fg, default_bg
        top, bottom = [], []
        for token in re.findall(r"\x1b\[[0-9;]*m|.", line):
            if token.startswith("\x1b["):
                codes = [int(c) for c in token[2:-1].split(";") if c] or [0]
                for code in codes:
                    if code == 0:
                        fg, bg = default_fg, default_bg
                    elif code == 30:
                        fg = 0
                    elif code in (47, 107):
                        bg = 255
                    elif code == 7:
                        fg, bg = bg, fg
                continue
            top.append(fg if token in "\u2580\u2588" else bg)
            bottom.append(fg if token in "\u2584\u2588" else bg)
        rows += [top, bottom]
    width = max(len(r) for r in rows)
    image = np.array([r + [default_bg] * (width - len(r)) for r in rows], dtype=np.uint8)
    return np.kron(image, np.ones((8, 8), dtype=np.uint8))          # modules big enough for a scanner


def _decode(image) -> list[str]:
    import zxingcpp
    return [r.text for r in zxingcpp.read_barcodes(image, try_invert=False)]   # as most phone scanners: no inversion


def test_the_classroom_qr_code_decodes_on_light_and_dark_terminals_and_as_an_image():
    link = "http://192.168.1.20:8000/?token=Zq9k-3LmPx_7aBcD"
    for dark in (False, True):
        assert _decode(_render_terminal(qr_terminal(link), dark_theme=dark)) == [link], f"dark={dark}"
    from PIL import Image
    import io
    assert _decode(Image.open(io.BytesIO(qr_png(link))).convert("L")) == [link]


async def test_classroom_roles_are_kept_apart():
    with Classroom(host="127.0.0.1", port=0) as room:
        banner = room.banner(qr=False)
        assert room.instructor_key != room.token and room.instructor_key not in room.join_url
        assert room.instructor_key in banner                                # printed in the instructor's terminal only
        async with httpx.AsyncClient(base_url=room.url) as client:
            as_class = {"Authorization": f"Bearer {room.token}"}
            ann = (await client.post("/api/login", json={"name": "ann"}, headers=as_class)).json()["token"]
            ben = (await client.post("/api/login", json={"name": "ben"}, headers=as_class)).json()["token"]
            assert ann != ben and room.token not in (ann, ben)               # per-student tokens
            for who in (room.token, ann):
                for path, body in (("/lab/admin/network", {"profile": "3g"}), ("/lab/admin/model", {"model": "gpt-4"})):
                    r = await client.post(path, json=body, headers={"Authorization": f"Bearer {who}"})
                    assert r.status_code == 403, (path, who == room.token)
                r = await client.get("/lab/instructor", headers={"Authorization": f"Bearer {who}"})
                assert r.status_code == 403
            teacher = {"Authorization": f"Bearer {room.instructor_key}"}
            assert (await client.post("/lab/admin/model", json={"model": "gpt-4"}, headers=teacher)).status_code == 200
            page = await client.get("/lab/instructor", headers=teacher)
            assert page.status_code == 200 and "data:image/png;base64," in page.text
            assert room.token not in page.text and room.instructor_key not in page.text
            png = __import__("base64").b64decode(re.search(r"base64,([^']+)'", page.text).group(1))
            from PIL import Image
            import io
            assert _decode(Image.open(io.BytesIO(png)).convert("L")) == [room.join_url]
            # a student's token cannot log in anybody else
            r = await client.post("/api/login", json={"name": "mallory"}, headers={"Authorization": f"Bearer {ann}"})
            assert r.status_code == 403


def test_the_dashboard_never_shows_a_secret_in_full():
    from labkit.widgets import Dashboard
    with Classroom(host="127.0.0.1", port=0) as room:
        dash = Dashboard(room.url, room.instructor_key, join_url=room.join_url)
        try:
            dash.refresh()
            dash.set_network("3g")                              # the switch works with the instructor key
            assert "3g" in dash.message.value
            shown = []

            def walk(widget) -> None:
                for name in ("value", "description", "placeholder", "tooltip"):
                    value = getattr(widget, name, None)
                    if isinstance(value, str):
                        shown.append(value)
                for child in getattr(widget, "children", ()):
                    walk(child)
            walk(dash.widget)
            text = "\n".join(shown) + repr(dash)
            assert room.token not in text and room.instructor_key not in text
            assert room.token[:4] + "…" in text                             # the link, masked
            from PIL import Image
            import io
            assert _decode(Image.open(io.BytesIO(dash.qr.value)).convert("L")) == [room.join_url]
        finally:
            dash.close()


async def test_a_name_is_handed_out_once_and_rooms_take_the_author_from_the_token(networked):
    async with httpx.AsyncClient(base_url=networked.url) as client:
        as_class = {"Authorization": f"Bearer {SECRET}"}
        alice = await client.post("/api/login", json={"name": "alice"}, headers=as_class)
        assert alice.status_code == 200
        again = await client.post("/api/login", json={"name": "alice"}, headers=as_class)
        assert again.status_code == 409 and again.json()["error"]["code"] == "name_taken"
        for reserved in ("shared", "instructor", "local"):
            assert (await client.post("/api/login", json={"name": reserved}, headers=as_class)).status_code == 409
        bob = (await client.post("/api/login", json={"name": "bob"}, headers=as_class)).json()["token"]
    # bob's token, asking to speak as alice: refused with a reason
    async with websockets.connect(networked.ws_url + f"/ws/room/lab?name=alice&token={bob}") as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "name_mismatch"
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008
    async with RoomClient(networked.ws_url, "lab", "bob", token=bob) as member:
        await member.say("hello")
        await member.wait_for(lambda ev: any(e["type"] == "user_message" for e in ev))
        assert [e["user"] for e in member.of("user_message")] == ["bob"]


async def test_a_web_page_cannot_drive_a_loopback_server(server):
    """No Origin/Host/Content-Type checks let any site the user visits POST to the lab (the loopback
    user counts as instructor there)."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        # a cross-site "simple request": text/plain, no preflight
        r = await client.post("/lab/admin/model", content=b'{"model": "gpt-4"}',
                              headers={"content-type": "text/plain", "origin": "http://evil.example"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        r = await client.post("/lab/admin/model", json={"model": "gpt-4"}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_origin"
        r = await client.post("/api/chat", json={"message": "hi"},                 # a self-declared name proves nothing
                              headers={"origin": "http://evil.example", "Authorization": "Bearer alice"})
        assert r.status_code == 403
        assert (await client.get("/lab/participants")).json()["model"] == "gpt-4o-mini"     # nothing changed
        r = await client.post("/lab/admin/model", content=b'{"model": "gpt-4"}', headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        r = await client.post("/api/chat", json={"message": "hi"}, headers={"origin": "null"})
        assert r.status_code == 403
        # DNS rebinding: a foreign name that now resolves to 127.0.0.1
        r = await client.get("/lab/participants", headers={"host": f"evil.example:{server.port}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_host"
        # the lab's own page (same origin) and programs (no Origin) still work
        r = await client.post("/lab/admin/model", json={"model": "gpt-4o"}, headers={"origin": server.url})
        assert r.status_code == 200
        r = await client.post("/lab/admin/model", json={"model": "gpt-4o-mini"}, headers={"host": f"localhost:{server.port}"})
        assert r.status_code == 200
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(server.ws_url + "/ws/chat", origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(server.ws_url + "/v1/realtime", origin="http://evil.example")
    async with websockets.connect(server.ws_url + "/ws/chat", origin=server.url) as ws:
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_a_browser_with_an_ephemeral_key_passes_the_networked_servers_token_check(networked):
    """A page on a class server holds no class token: it gets an ephemeral key from a server that
    does, and opens /v1/realtime the browser way (subprotocols only, no header, no query)."""
    async with httpx.AsyncClient(base_url=networked.url) as client:
        r = await client.post("/v1/realtime/client_secrets", json={"expires_after": {"seconds": 60}},
                              headers={"Authorization": f"Bearer {SECRET}"})
        assert r.status_code == 200, r.text
        key = r.json()["value"]
        assert (await client.post("/v1/realtime/client_secrets", json={})).status_code == 401   # minting needs the token
    url = networked.ws_url + "/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key." + key]) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.ek_not-a-key"])
    assert refused.value.response.status_code == 403


async def test_only_the_webrtc_signalling_route_takes_a_body_that_is_not_json(server):
    """OpenAI's /v1/realtime/calls takes SDP (raw or multipart); every other route still wants JSON."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        for content_type in ("application/sdp", "multipart/form-data; boundary=x"):
            r = await client.post("/v1/chat/completions", content=b"v=0", headers={"content-type": content_type})
            assert r.status_code == 415, content_type
            r = await client.post("/v1/realtime/calls?model=gpt-realtime", content=b"v=0",
                                  headers={"content-type": content_type})
            assert r.status_code != 415 and "error" in r.json(), (content_type, r.status_code)   # read, then judged
        r = await client.post("/v1/realtime/calls?model=gpt-realtime", content=b"v=0", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = await client.post("/v1/realtime/calls?model=gpt-realtime", content=b"v=0",
                              headers={"content-type": "application/sdp", "origin": "http://evil.example"})
        assert r.status_code == 403                                # a web page elsewhere still cannot


async def test_a_page_that_holds_a_secret_may_call_from_another_origin(networked):
    """The Origin check is against forgery: a request proven by a secret (the token, an ephemeral
    key) is no forgery, whatever page sends it; on an open server nothing proves a request."""
    async with websockets.connect(networked.ws_url + f"/v1/realtime?model=gpt-realtime&token={SECRET}",
                                  origin="http://localhost:5173") as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    async with httpx.AsyncClient(base_url=networked.url) as client:
        r = await client.post("/api/chat", json={"message": "hi", "max_tokens": 2},
                              headers={"origin": "http://localhost:5173", "Authorization": f"Bearer {SECRET}"})
        assert r.status_code == 200
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(networked.ws_url + "/v1/realtime?model=gpt-realtime", origin="http://localhost:5173")
