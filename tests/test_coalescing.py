"""Coalescing: a writer that fell behind sends every waiting token in one write (SSE) or one
``tokens`` frame (``/ws/chat?coalesce=1``), and the client sees the same tokens, in order, once
each, with their server times. A reader that arrives after the reply ended is as far behind as a
writer can be: everything is waiting at once, deterministically (no timing involved)."""

from __future__ import annotations

import json

import httpx
import httpx_sse
import pytest
import websockets

from labkit.clients import WSChat, collect, ws_chat

BODY = {"message": "How do WebSockets work?", "max_tokens": 30, "seed": 3}


def _finished_stream(server) -> tuple[str, list[tuple[int, str, float]]]:
    """A reply read live to its end: its id and its (seq, content, t) tokens."""
    created = httpx.post(server.url + "/api/chat/streams", json=BODY, timeout=30).json()
    with httpx.Client(timeout=30) as client, \
            httpx_sse.connect_sse(client, "GET", server.url + created["url"]) as source:
        live = [json.loads(e.data) for e in source.iter_sse() if e.event == "token"]
    return created["id"], [(t["seq"], t["content"], t["t"]) for t in live]


def test_sse_catch_up_keeps_every_token_id_and_time(server):
    stream_id, live = _finished_stream(server)
    assert [seq for seq, _, _ in live] == list(range(30))
    # a late reader: every event is waiting at once (the server writes them as one chunk)
    with httpx.Client(timeout=30) as client, \
            client.stream("GET", server.url + f"/api/chat/stream/{stream_id}",
                          headers={"Last-Event-ID": "4"}) as r:
        chunks = [c for c in r.iter_raw() if c]
    body = b"".join(chunks)
    # the real SSE parser of a third-party library reads the same tokens with the same times
    events = list(httpx_sse.EventSource(httpx.Response(200, content=body, headers={
        "content-type": "text/event-stream"})).iter_sse())
    tokens = [json.loads(e.data) for e in events if e.event == "token"]
    assert [(t["seq"], t["content"], t["t"]) for t in tokens] == live[5:]
    assert [e.id for e in events if e.event == "token"] == [str(s) for s, _, _ in live[5:]]
    assert events[-1].event == "done" and json.loads(events[-1].data)["tokens"] == 30


async def test_ws_catch_up_is_one_tokens_frame_and_the_labs_client_reads_it(server):
    stream_id, live = _finished_stream(server)
    async with websockets.connect(server.ws_url + "/ws/chat?coalesce=1") as ws:
        await ws.send(json.dumps({"type": "resume", "stream_id": stream_id, "last_seq": 9}))
        frames = []
        while not frames or frames[-1]["type"] not in ("complete", "error"):
            frames.append(json.loads(await ws.recv()))
    assert [f["type"] for f in frames] == ["tokens", "complete"]           # 20 tokens, one frame
    assert [(t["seq"], t["content"], t["t"]) for t in frames[0]["tokens"]] == live[10:]
    # without ?coalesce the protocol is unchanged: one frame per token
    async with websockets.connect(server.ws_url + "/ws/chat") as ws:
        await ws.send(json.dumps({"type": "resume", "stream_id": stream_id, "last_seq": 27}))
        kinds = []
        while not kinds or kinds[-1] not in ("complete", "error"):
            kinds.append(json.loads(await ws.recv())["type"])
    assert kinds == ["token", "token", "complete"]


async def test_the_labs_ws_client_with_coalescing_gets_every_token_once_in_order(server):
    options = {"max_tokens": 40, "seed": 11}
    plain = await collect(ws_chat(server.url, "What is SSE?", **options), "ws")
    merged = await collect(ws_chat(server.url, "What is SSE?", coalesce=True, **options), "ws")
    assert [t.seq for t in merged.tokens] == list(range(40))
    assert merged.text == plain.text and all(t.sent_wall for t in merged.tokens)
    async with WSChat(server.url, coalesce=True) as chat:                  # a kept connection, two questions
        first = [t async for t in chat.ask("Hello", max_tokens=5, seed=1)]
        second = [t async for t in chat.ask("And WebSockets?", max_tokens=5, seed=2)]
    assert [t.seq for t in first] == [t.seq for t in second] == list(range(5))


def test_the_load_generator_asks_for_coalescing_only_when_told(server, tmp_path, monkeypatch):
    from labkit.bench import loadclient
    from labkit.clients import lean

    urls = []

    class Protocol(lean.ClientProtocol):             # the real sans-I/O client, the URL it opens noted
        def __init__(self, uri, **options):
            urls.append(f"ws://{uri.host}:{uri.port}{uri.resource_name}")
            super().__init__(uri, **options)

    monkeypatch.setattr(lean, "ClientProtocol", Protocol)
    for flags in ([], ["--coalesce"]):
        out = tmp_path / f"ws{len(flags)}.json"
        loadclient.main(["--url", server.url, "--transport", "ws", "--clients", "2", "--ramp-s", "0",
                         "--model", "instant", "--max-tokens", "5", "--out", str(out), *flags])
        assert [r["error"] for r in json.loads(out.read_text())] == [None, None]
    assert sorted(urls) == [server.ws_url + "/ws/chat"] * 2 + [server.ws_url + "/ws/chat?coalesce=1"] * 2
    with pytest.raises(SystemExit) as refused:       # an SSE client has no such option: refused, not ignored
        loadclient.main(["--url", server.url, "--transport", "sse", "--clients", "1", "--coalesce", "--out", "x"])
    assert refused.value.code == 2
