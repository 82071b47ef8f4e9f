"""Reconnect and resume, exactly once: replies are resources that outlive their connections."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest
import websockets

from labkit.clients import ChatError, collect
from labkit.clients.resume import Backoff, ResumableWSChat, resumable_sse_chat
from labkit.netem import NetemProxy
from labkit.protocol.sse import SSEDecoder

Q = "Why does time to first token matter?"


async def _generated(server, stream_id: str) -> dict:
    """What the server generated for a stream, asked directly (not through the lossy proxy)."""
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{server.url}/api/chat/streams/{stream_id}")
        r.raise_for_status()
        return r.json()


async def test_200_random_drops_lose_and_duplicate_nothing(make_server):
    """The connection is cut at random moments, at least 200 times, over SSE and WebSocket alike;
    every reply received equals the reply generated, token for token."""
    server = make_server(time_scale=0.1, resume_grace_s=10)
    rng = random.Random(2026)
    async with NetemProxy(server.port) as proxy:
        stop = asyncio.Event()

        delivered = [0]                       # tokens that got through, on every lane

        async def cut_at_random() -> None:
            # a cut only after something got through since the last one: on a busy machine a request
            # can take longer than the gap between cuts, and cutting it every time tests nothing
            last = -1
            while not stop.is_set():
                await asyncio.sleep(rng.uniform(0.002, 0.05))
                if delivered[0] != last:
                    last = delivered[0]
                    proxy.drop_all()

        async def counted(reply):
            async for token in reply:
                delivered[0] += 1
                yield token

        async def one_lane(lane: int, replies: list) -> None:
            n = 0
            while sum(r[3] for r in replies) < 220:
                n += 1
                backoff = Backoff(initial_s=0.005, max_s=0.05, rng=random.Random(lane * 1000 + n))
                prompt = f"{Q} ({lane}-{n})"
                if n % 2:
                    reply = resumable_sse_chat(proxy.url, prompt, backoff=backoff, max_retries=500)
                    got = await collect(counted(reply))
                else:
                    async with ResumableWSChat(proxy.url, backoff=backoff, max_retries=500) as chat:
                        reply = chat.ask(prompt)
                        got = await collect(counted(reply))
                        reply.reconnects = chat.reconnects
                replies.append(("sse" if n % 2 else "ws", reply.stream_id, got, reply.reconnects))

        replies: list = []
        cutter = asyncio.create_task(cut_at_random())
        await asyncio.wait_for(asyncio.gather(*(one_lane(i, replies) for i in range(4))), 120)
        stop.set()
        await cutter

    assert proxy.drops >= 200
    assert sum(r[3] for r in replies) >= 200, "the clients did not reconnect as often as the link was cut"
    for transport in ("sse", "ws"):
        assert sum(r[3] for r in replies if r[0] == transport) >= 50, transport
    for transport, stream_id, got, _ in replies:
        generated = await _generated(server, stream_id)
        assert generated["status"] == "done", (transport, generated)
        assert [t.seq for t in got.tokens] == list(range(generated["tokens"])), transport
        assert got.text == generated["content"], transport


async def test_last_event_id_resumes_after_that_event(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        created = await client.post("/api/chat/streams", json={"message": Q})
        assert created.status_code == 201 and created.headers["location"] == created.json()["url"]
        stream_id = created.json()["id"]
        full = await _read_sse(client, f"/api/chat/stream/{stream_id}")
        tokens = [e for e in full if e.event == "token"]
        assert [e.id for e in tokens] == [str(i) for i in range(len(tokens))]
        assert full[-1].event == "done" and full[-1].id == "end"
        rest = await _read_sse(client, f"/api/chat/stream/{stream_id}", headers={"Last-Event-ID": "9"})
        rest_tokens = [json.loads(e.data)["seq"] for e in rest if e.event == "token"]
        assert rest_tokens == list(range(10, len(tokens)))
        again = await client.get(f"/api/chat/stream/{stream_id}", headers={"Last-Event-ID": "end"})
        assert again.status_code == 204                       # EventSource stops for good on 204
        bad = await client.get(f"/api/chat/stream/{stream_id}", headers={"Last-Event-ID": "banana"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_last_event_id"
        missing = await client.get("/api/chat/stream/st_nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "stream_not_found"


async def _read_sse(client, path, headers=None):
    decoder, events = SSEDecoder(), []
    async with client.stream("GET", path, headers=headers or {}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async for chunk in r.aiter_raw():
            events += decoder.feed(chunk)
    return events


async def test_post_stream_has_ids_and_can_be_resumed_with_get(server):
    """The fetch-with-a-body style works too: the POST's events carry ids and X-Stream-Id names the reply."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        async with client.stream("POST", "/api/chat/stream", json={"message": Q}) as r:
            stream_id = r.headers["x-stream-id"]
            decoder, events = SSEDecoder(), []
            async for chunk in r.aiter_raw():
                events += decoder.feed(chunk)
                if len(events) >= 3:
                    break
        last = events[-1].id
        rest = await _read_sse(client, f"/api/chat/stream/{stream_id}", headers={"Last-Event-ID": last})
    text = "".join(json.loads(e.data)["content"] for e in events + rest if e.event == "token")
    assert text == json.loads(rest[-1].data)["content"]


async def test_finished_streams_expire_with_a_clear_error(make_server):
    server = make_server(stream_keep_s=0.2)
    async with httpx.AsyncClient(base_url=server.url) as client:
        stream_id = (await client.post("/api/chat/streams", json={"message": "hi", "max_tokens": 3})).json()["id"]
        await _read_sse(client, f"/api/chat/stream/{stream_id}")
        await asyncio.sleep(0.4)
        late = await client.get(f"/api/chat/stream/{stream_id}", headers={"Last-Event-ID": "1"})
        assert late.status_code == 410
        assert late.json()["error"]["code"] == "stream_expired" and "no longer kept" in late.json()["error"]["message"]
    async with websockets.connect(server.ws_url + "/ws/chat") as ws:
        await ws.send(json.dumps({"type": "resume", "stream_id": stream_id, "last_seq": 1}))
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["code"] == "stream_expired"
        await ws.send(json.dumps({"type": "ping"}))           # the connection stays open
        assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_websocket_resume_on_a_new_connection_gets_the_rest_and_the_conversation(server):
    ws = await websockets.connect(server.ws_url + "/ws/chat")
    await ws.send(json.dumps({"type": "message", "content": Q}))
    stream_id, seen = None, []
    while len(seen) < 5:
        msg = json.loads(await ws.recv())
        if msg["type"] == "ack":
            stream_id = msg["stream_id"]
        elif msg["type"] == "token":
            seen.append(msg)
    ws.transport.abort()                                       # vanished, no close frame
    async with websockets.connect(server.ws_url + "/ws/chat") as ws2:
        await ws2.send(json.dumps({"type": "resume", "stream_id": stream_id, "last_seq": seen[-1]["seq"]}))
        while True:
            msg = json.loads(await ws2.recv())
            if msg["type"] == "complete":
                break
            assert msg["type"] == "token"
            seen.append(msg)
        assert [m["seq"] for m in seen] == list(range(len(seen)))
        assert "".join(m["content"] for m in seen) == msg["content"]
        await ws2.send(json.dumps({"type": "message", "content": "and WebSockets?"}))   # the conversation goes on
        while (msg := json.loads(await ws2.recv()))["type"] != "complete":
            pass
    assert server.stats["resumes"] == 1


async def test_resume_bad_input_is_an_error_and_the_connection_stays(server):
    async with websockets.connect(server.ws_url + "/ws/chat") as ws:
        for bad, code in (({"type": "resume"}, "invalid_stream_id"),
                          ({"type": "resume", "stream_id": "x", "last_seq": "3"}, "invalid_last_seq"),
                          ({"type": "resume", "stream_id": "st_unknown", "last_seq": 0}, "stream_not_found")):
            await ws.send(json.dumps(bad))
            assert json.loads(await ws.recv())["code"] == code
        assert (await collect(_ask(ws, "hi"))).n_tokens > 0


async def _ask(ws, prompt):
    await ws.send(json.dumps({"type": "message", "content": prompt}))
    from labkit.clients.timing import TimedToken
    while (msg := json.loads(await ws.recv()))["type"] != "complete":
        if msg["type"] == "token":
            yield TimedToken(msg["content"], 0.0, 0.0, msg["seq"])


def test_backoff_grows_with_jitter_and_is_capped():
    b = Backoff(initial_s=0.1, factor=2, max_s=1.0, rng=random.Random(1))
    delays = [b.delay(n) for n in range(1, 8)]
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2 and all(d <= 1.0 for d in delays)
    assert len({round(b.delay(5), 6) for _ in range(5)}) > 1     # jitter: no two clients in lockstep


async def test_client_gives_up_with_a_clear_error_when_the_server_is_gone(server):
    url = server.url
    server.stop()
    with pytest.raises(ChatError) as e:
        await collect(resumable_sse_chat(url, "hi", backoff=Backoff(initial_s=0.001, max_s=0.002), max_retries=3))
    assert e.value.code == "gave_up" and "ConnectError" in str(e.value)
