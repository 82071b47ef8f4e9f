"""Classroom mode: `python -m labkit classroom` prints a join link; students with it get in, others do not."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import websockets

from labkit.classroom import Classroom, qr_svg, qr_terminal
from labkit.clients.room import RoomClient, answers_at_least


@pytest.fixture
def classroom_process():
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "classroom", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl+C" in line or not line:
            break
    yield proc, "".join(lines)
    proc.terminate()
    proc.wait(10)


async def _login(base: str, class_token: str, name: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/api/login", json={"name": name}, headers={"Authorization": f"Bearer {class_token}"})
        r.raise_for_status()
        return r.json()["token"]


async def test_make_demo_prints_a_join_link_that_lets_two_students_meet(classroom_process):
    proc, banner = classroom_process
    match = re.search(r"join: (http://\S+)", banner)
    assert match, banner
    join = urlparse(match.group(1))
    token = parse_qs(join.query)["token"][0]
    base, ws_base = f"http://{join.netloc}", f"ws://{join.netloc}"
    assert "█" in banner or "▀" in banner or "▄" in banner                  # the QR code, in the terminal
    page = httpx.get(match.group(1), follow_redirects=True)
    assert page.status_code == 200 and "Realtime AI Lab" in page.text        # the browser client is served
    ann_token, ben_token = await _login(base, token, "ann"), await _login(base, token, "ben")
    async with RoomClient(ws_base, "class", "ann", token=ann_token) as ann, \
            RoomClient(ws_base, "class", "ben", token=ben_token) as ben:
        await ann.wait_for(lambda ev: any(e["type"] == "joined" and e["user"] == "ben" for e in ev))
        await ann.say("hello from ann")
        await ben.say("hello from ben")
        await ann.wait_for(lambda ev: any(e.get("content") == "hello from ben" for e in ev))
        await ben.wait_for(lambda ev: any(e.get("content") == "hello from ann" for e in ev))
        await ben.wait_for(answers_at_least(1), timeout=30)
    # without the token: refused, over HTTP and WebSocket alike
    assert httpx.post(base + "/api/chat", json={"message": "hi"}).status_code == 401
    assert httpx.post(base + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}).status_code == 401
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(ws_base + "/ws/room/class?name=eve")
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(ws_base + "/ws/room/class?name=eve&token=" + ann_token[:-1] + "x")
    participants = httpx.get(base + "/lab/participants", headers={"Authorization": f"Bearer {token}"}).json()
    assert {p["user"] for p in participants["participants"]} >= {"ann", "ben"}


async def test_the_instructor_switches_model_and_network_for_everyone():
    with Classroom(host="127.0.0.1", port=0) as room:
        teacher = {"Authorization": f"Bearer {room.instructor_key}"}
        student = await _login(room.url, room.token, "ann")
        async with httpx.AsyncClient(base_url=room.url) as client:
            for who in (student, room.token):                               # students cannot, nor the join link's token
                r = await client.post("/lab/admin/network", json={"profile": "3g"}, headers={"Authorization": f"Bearer {who}"})
                assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
            assert (await client.post("/lab/admin/network", json={"profile": "3g"}, headers=teacher)).json() == {"network": "3g"}
            assert (await client.post("/lab/admin/model", json={"model": "gpt-4o"}, headers=teacher)).status_code == 200
            bad = await client.post("/lab/admin/network", json={"profile": "5g"}, headers=teacher)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_profile"
            state = (await client.get("/lab/participants", headers=teacher)).json()
            assert state["network"] == "3g" and state["model"] == "gpt-4o"
            assert room.proxy.profile.name == "3g"                          # the emulator itself was switched
    assert "join:" in room.banner(qr=False)


def test_the_dashboard_shows_and_switches_what_the_server_runs():
    """Switched behind the dashboard's back (the instructor key from a terminal), the server is shown as
    it is on the next refresh, and showing it switches nothing; setting the menu to what it already
    shows still switches the server (a notebook cell did exactly this and left the class on 3g)."""
    from labkit.widgets import Dashboard
    with Classroom(host="127.0.0.1", port=0) as room:
        teacher = {"Authorization": f"Bearer {room.instructor_key}"}
        dash = Dashboard(room.url, room.instructor_key)
        dash.refresh()
        assert dash.network.value == "lan" and dash.message.value == ""
        assert httpx.post(room.url + "/lab/admin/network", json={"profile": "3g"}, headers=teacher).status_code == 200
        dash.set_network("lan")                                      # the menu still says lan
        assert room.proxy.profile.name == "lan" and "network is now <b>lan</b>" in dash.message.value
        httpx.post(room.url + "/lab/admin/network", json={"profile": "3g"}, headers=teacher)
        httpx.post(room.url + "/lab/admin/model", json={"model": "gpt-4o"}, headers=teacher)
        dash.message.value = ""
        dash.refresh()
        assert (dash.network.value, dash.model.value) == ("3g", "gpt-4o") and dash.message.value == ""
        assert room.proxy.profile.name == "3g"
        dash.set_model("gpt-4o")
        assert httpx.get(room.url + "/lab/participants", headers=teacher).json()["model"] == "gpt-4o"
        assert "model is now <b>gpt-4o</b>" in dash.message.value


def test_qr_codes_render():
    assert qr_svg("http://10.0.0.5:8000/?token=abc").startswith("<svg")
    assert len(qr_terminal("http://10.0.0.5:8000/?token=abc").splitlines()) > 10
