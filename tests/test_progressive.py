"""The tutorial's progressive protocol (typing, progress, token with index, complete, error), done right."""

from __future__ import annotations

import asyncio
import json

import websockets

Q = "Why does time to first token matter?"


async def _until(ws, kinds=("complete", "error"), timeout=10):
    got = []
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        got.append(msg)
        if msg["type"] in kinds:
            return got


async def _quiet(ws, seconds):
    """Messages that arrive in the next ``seconds`` (there should be none after a reply ended)."""
    extra = []
    try:
        while True:
            extra.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    except asyncio.TimeoutError:
        return extra


async def test_stages_in_order_typing_stops_at_the_first_token(make_server):
    server = make_server(time_scale=1.0, typing_interval_s=0.1)
    async with websockets.connect(server.ws_url + "/ws/chat/progressive") as ws:
        await ws.send(json.dumps({"type": "message", "content": Q, "model": "slow-large"}))   # TTFT ~0.6 s
        got = await _until(ws)
        kinds = [m["type"] for m in got]
        first_token = kinds.index("token")
        before = got[:first_token]
        assert kinds[0] == "ack"
        assert sum(m == {"type": "typing", "active": True} for m in before) >= 3   # repeated while it thinks
        assert before[-1] == {"type": "typing", "active": False}                    # off before the first token
        assert "typing" not in kinds[first_token:]
        stages = [m["stage"] for m in got if m["type"] == "progress"]
        assert stages[:2] == ["queued", "waiting_for_first_token"] and stages[-1] == "complete"
        assert set(stages[2:-1]) == {"streaming"}
        fractions = [m["fraction"] for m in got if m["type"] == "progress"]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        tokens = [m for m in got if m["type"] == "token"]
        assert [m["index"] for m in tokens] == list(range(len(tokens)))
        assert got[-1]["type"] == "complete" and got[-1]["tokens"] == len(tokens)
        assert await _quiet(ws, 0.4) == []


async def test_a_failure_mid_stream_sends_error_and_cleans_up(make_server):
    server = make_server(fail_after_tokens=5, typing_interval_s=0.05)
    async with websockets.connect(server.ws_url + "/ws/chat/progressive") as ws:
        await ws.send(json.dumps({"type": "message", "content": Q}))
        got = await _until(ws)
        assert [m["index"] for m in got if m["type"] == "token"] == [0, 1, 2, 3, 4]
        assert got[-1]["type"] == "error" and "failed" in got[-1]["message"]
        assert await _quiet(ws, 0.3) == []                               # no typing task left behind
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}          # and the connection still works
    for _ in range(50):
        if server.stats["app_streams_active"] == 0:
            break
        await asyncio.sleep(0.02)
    assert server.stats["app_streams_active"] == 0 and server.stats["model_streams_active"] == 0


async def test_cancel_while_waiting_stops_typing(make_server):
    server = make_server(time_scale=1.0, typing_interval_s=0.05)
    async with websockets.connect(server.ws_url + "/ws/chat/progressive") as ws:
        await ws.send(json.dumps({"type": "message", "content": Q, "model": "slow-large"}))
        await _until(ws, kinds=("typing",))
        await ws.send(json.dumps({"type": "cancel"}))
        got = await _until(ws)
        assert {"type": "typing", "active": False} in got
        assert got[-1]["type"] == "error" and got[-1]["code"] == "cancelled"
        assert await _quiet(ws, 0.3) == []
