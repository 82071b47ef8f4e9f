"""Past one process: replies resumable on any server through Redis, and ``serve --workers N``.

Two servers on one Redis share nothing else (each has its own streams, tasks and connections): that
is what ``--workers 2`` runs, except that here the test chooses which server each connection
reaches. They run in this test's process (threads), which starts in a fraction of the time of two
processes; the last test runs the real ``serve --workers 2``."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from labkit.bench.load import process_tree
from labkit.protocol.sse import SSEDecoder
from labkit.server.process import ServerProcess

BODY = {"message": "How do Server-Sent Events work?", "model": "gpt-4o", "max_tokens": 40, "seed": 7}


def app(redis_url: str, *extra: str) -> ServerProcess:
    # gpt-4o at half speed: 40 tokens ~12 ms apart, long enough to leave mid-stream
    return ServerProcess(["serve", "--port", "0", "--time-scale", "0.5", "--redis-url", redis_url, *extra],
                         timeout_s=120)


@pytest.fixture
def two(redis_url, make_server):
    return make_server(redis_url=redis_url, time_scale=0.5), make_server(redis_url=redis_url, time_scale=0.5)


def sse_tokens(url: str, headers: dict | None = None, stop_after: int | None = None) -> tuple[list[dict], str | None]:
    """The token events of one SSE response (stopping after ``stop_after`` of them), and the end event."""
    tokens, decoder = [], SSEDecoder()
    with httpx.stream("GET", url, headers=headers or {}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_bytes():
            for event in decoder.feed(chunk):
                if event.event == "token":
                    tokens.append(json.loads(event.data))
                    if stop_after is not None and len(tokens) >= stop_after:
                        return tokens, None
                elif event.event in ("done", "error"):
                    return tokens, event.event
    return tokens, None


def test_a_stream_started_on_one_server_resumes_on_another_over_sse(two):
    p1, p2 = two
    created = httpx.post(p1.url + "/api/chat/streams", json=BODY, timeout=30).json()
    first, _ = sse_tokens(p1.url + created["url"], stop_after=3)           # then the connection drops
    rest, end = sse_tokens(p2.url + created["url"], {"Last-Event-ID": str(first[-1]["seq"])})
    assert end == "done"
    seqs = [t["seq"] for t in first + rest]
    assert seqs == list(range(len(seqs))) and len(seqs) == 40            # none lost, none twice, in order
    # the same tokens with the generating process's timestamps, as the process itself has them
    whole, _ = sse_tokens(p1.url + created["url"])
    assert [(t["content"], t["t"]) for t in first + rest] == [(t["content"], t["t"]) for t in whole]
    assert httpx.get(p2.url + "/api/chat/streams/" + created["id"], timeout=10).json()["content"] == \
        "".join(t["content"] for t in whole)
    # an id no process knows is still a clear 404 on either
    assert httpx.get(p2.url + "/api/chat/stream/st_nope", timeout=10).status_code == 404


async def test_a_stream_resumes_on_another_server_over_websocket(two):
    p1, p2 = two
    got = []
    async with websockets.connect(p1.url.replace("http", "ws") + "/ws/chat") as ws:
        await ws.send(json.dumps({"type": "message", "content": BODY["message"], "model": "gpt-4o",
                                  "max_tokens": 40, "seed": 7}))
        while len(got) < 3:
            msg = json.loads(await ws.recv())
            if msg["type"] == "ack":
                stream_id = msg["stream_id"]
            elif msg["type"] == "token":
                got.append(msg)
        await ws.close(code=4000)          # not a clean close (1000 would cancel the reply): a lost link
    async with websockets.connect(p2.url.replace("http", "ws") + "/ws/chat") as ws:
        await ws.send(json.dumps({"type": "resume", "stream_id": stream_id, "last_seq": got[-1]["seq"]}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "token":
                got.append(msg)
            elif msg["type"] in ("complete", "error"):
                break
    assert msg["type"] == "complete", msg
    assert [m["seq"] for m in got] == list(range(len(got)))
    assert "".join(m["content"] for m in got) == msg["content"]


def test_a_reply_read_through_another_server_is_not_cancelled_as_abandoned(redis_url, make_server):
    # ~70 tokens 50 ms apart (3.5 s) against a 2 s grace period: the generating server has no reader
    # after the drop, but the other one does, and says so in Redis
    p1, p2 = (make_server(redis_url=redis_url, time_scale=2.0, resume_grace_s=2.0) for _ in range(2))
    body = {**BODY, "max_tokens": 120}
    created = httpx.post(p1.url + "/api/chat/streams", json=body, timeout=30).json()
    first, _ = sse_tokens(p1.url + created["url"], stop_after=2)
    rest, end = sse_tokens(p2.url + created["url"], {"Last-Event-ID": str(first[-1]["seq"])})
    summary = httpx.get(p1.url + "/api/chat/streams/" + created["id"], timeout=10).json()
    assert end == "done" and summary["status"] == "done" and summary["tokens"] > 60, summary
    assert [t["seq"] for t in first + rest] == list(range(summary["tokens"]))


def test_serve_with_two_workers_serves_and_resumes(redis_url):
    with app(redis_url, "--workers", "2") as server:
        assert len(process_tree(server.proc.pid)) >= 3                      # the supervisor and two workers
        created = httpx.post(server.url + "/api/chat/streams", json=BODY, timeout=30).json()
        first, _ = sse_tokens(server.url + created["url"], stop_after=5)
        rest, end = sse_tokens(server.url + created["url"], {"Last-Event-ID": str(first[-1]["seq"])})
        assert end == "done" and [t["seq"] for t in first + rest] == list(range(40))


def test_more_than_one_worker_needs_redis():
    from labkit.server.runner import run_forever
    from labkit.server.state import ServerConfig

    with pytest.raises(OSError, match="needs Redis"):
        run_forever(ServerConfig(), "127.0.0.1", 0, workers=2)


def test_a_worker_takes_its_config_and_its_secrets_out_of_the_environment(monkeypatch):
    """What a worker reads from LABKIT_WORKER_CONFIG holds the server's secrets: once read it is gone from
    the worker's environment, so the processes a worker starts (its recognisers) never inherit them."""
    import os

    from labkit.server import workers
    from labkit.server.state import ServerConfig

    config = ServerConfig(lab_token="t0ken-never-inherited", allowed_hosts=("lab.example",), time_scale=0.5)
    monkeypatch.setenv(workers.ENV, workers.config_to_env(config))
    app = workers.app_from_env()
    assert workers.ENV not in os.environ
    assert app.state.config == config                       # every option came through (tuples as tuples)
