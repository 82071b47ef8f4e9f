"""The app server's HTTP, SSE and WebSocket transports, with the real clients over real sockets."""

import json

import httpx
import pytest
import websockets

from labkit.clients import ChatError, WSChat, collect, http_chat, sdk_chat, sse_chat, ws_chat
from labkit.protocol.sse import SSEDecoder

Q = "How do Server-Sent Events work?"


def _reply_tokens(question: str, seed: int) -> int:
    """How many tokens the whole reply has (the model's plan is deterministic for a seed)."""
    from labkit.model import plan_completion, resolve_model
    return plan_completion([{"role": "user", "content": question}], resolve_model("gpt-4o-mini"),
                           seed=seed).completion_tokens


async def test_three_transports_and_the_sdk_stream_the_same_reply(server):
    results = {
        "http": await collect(http_chat(server.url, Q, seed=5)),
        "sse": await collect(sse_chat(server.url, Q, seed=5)),
        "sdk": await collect(sdk_chat(server.client(), Q, seed=5)),
    }
    texts = {name: r.text for name, r in results.items()}
    assert len(set(texts.values())) == 1 and "SSE" in texts["sse"]
    for name, r in results.items():
        assert r.finish_reason == "stop" and r.n_tokens > 30, name
        assert 0 < r.ttft_s <= r.total_s
    # streaming transports deliver the first token before the end; HTTP delivers everything at once
    sse = results["sse"].tokens
    assert sse[0].sent_wall < sse[-1].sent_wall      # sent one by one as they came (not all at the end)
    assert results["http"].ttft_s == results["http"].total_s
    ws = await collect(ws_chat(server.url, Q, seed=5))
    assert ws.text == texts["sse"] and ws.finish_reason == "stop"
    assert [t.seq for t in ws.tokens] == list(range(ws.n_tokens))


async def test_tokens_carry_send_times_so_delivery_delay_is_measurable(server):
    sse = await collect(sse_chat(server.url, Q))
    delays = [t.delivery_delay for t in sse.tokens]
    assert all(d is not None and -0.01 < d < 0.5 for d in delays)
    http = await collect(http_chat(server.url, Q))
    # over plain HTTP the first token waits for the whole reply
    assert http.tokens[0].delivery_delay > http.tokens[-1].delivery_delay


async def test_sse_response_headers_and_format(server):
    async with httpx.AsyncClient() as client:
        async with client.stream("POST", server.url + "/api/chat/stream", json={"message": Q, "max_tokens": 3}) as r:
            raw = await r.aread()
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
    assert raw.startswith(b"retry: 1000\n\n") and r.headers["x-stream-id"].startswith("st_")
    events = SSEDecoder().feed(raw)
    assert [e.event for e in events] == ["token", "token", "token", "done"]
    assert json.loads(events[-1].data)["finish_reason"] == "length"


async def test_sse_sends_heartbeats_while_the_model_thinks(make_server):
    server = make_server(time_scale=1.0, heartbeat_s=0.05)
    async with httpx.AsyncClient() as client:
        async with client.stream("POST", server.url + "/api/chat/stream",
                                 json={"message": Q, "model": "slow-large", "max_tokens": 1}) as r:
            raw = await r.aread()
    assert raw.count(b": ping\n\n") >= 5


@pytest.mark.parametrize("body, code", [
    (b"not json", "invalid_json"), (b"[]", "invalid_body"), (b'{"message": ""}', "empty_content"),
    (b'{"message": 5}', "invalid_content"), (b'{"message": "hi", "messages": []}', "invalid_body"),
    (json.dumps({"message": "x" * 9000}).encode(), "content_too_long"), (b'{"message": "hi", "seed": "x"}', "invalid_body"),
])
async def test_http_and_sse_reject_bad_bodies_with_400(server, body, code):
    async with httpx.AsyncClient() as client:
        for path in ("/api/chat", "/api/chat/stream"):
            r = await client.post(server.url + path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["code"] == code, path
    assert (await collect(sse_chat(server.url, "hi", max_tokens=2))).n_tokens == 2   # still serving


async def test_upstream_errors_keep_their_status(server, make_server):
    with pytest.raises(ChatError) as e:
        await collect(sse_chat(server.url, Q, model="gpt-17"))
    assert e.value.status == 404 and e.value.code == "model_not_found"
    with pytest.raises(ChatError) as e:
        await collect(http_chat(server.url, Q, model="gpt-17"))
    assert e.value.status == 404
    dead = make_server(upstream_base_url="http://127.0.0.1:9/v1")      # nothing listens on port 9
    with pytest.raises(ChatError) as e:
        await collect(http_chat(dead.url, Q))
    assert e.value.status == 502 and e.value.code == "upstream_unreachable"


async def test_websocket_errors_keep_the_connection_open(server):
    async with WSChat(server.url) as chat:
        for frame, code in [("{not json", "invalid_json"), ('"just a string"', "invalid_message"),
                            ('{"type": "dance"}', "unknown_type"), ('{"type": "message", "content": "  "}', "empty_content"),
                            ('{"type": "message"}', "invalid_content"),
                            ('{"type": "message", "content": "hi", "seed": "x"}', "invalid_option"),
                            (json.dumps({"type": "message", "content": "x" * 9000}), "content_too_long")]:
            await chat.ws.send(frame)
            reply = await chat.receive()
            assert reply["type"] == "error" and reply["code"] == code, frame
        await chat.ws.send(b'{"type": "ping"}')                      # binary frames are read too
        assert await chat.receive() == {"type": "pong"}
        reply = await collect(chat.ask(Q))
        assert reply.finish_reason == "stop" and reply.n_tokens > 30
        await chat.send({"type": "message", "content": "hi", "model": "gpt-17"})     # upstream 404
        assert (await chat.receive())["type"] == "ack"
        reply = await chat.receive()
        assert reply["type"] == "error" and reply["code"] == "model_not_found"
        assert (await collect(chat.ask("hi", max_tokens=3))).n_tokens == 3


async def test_websocket_keeps_the_conversation_and_refuses_overlapping_questions(server):
    async with WSChat(server.url) as chat:
        await chat.send({"type": "message", "content": "hello"})
        await chat.send({"type": "message", "content": "and again"})
        kinds = []
        while "complete" not in kinds:
            msg = await chat.receive()
            kinds.append(msg["type"] if msg["type"] != "error" else msg["code"])
        assert kinds[0] == "ack" and "busy" in kinds
        second = await collect(chat.ask("What about WebSockets?"))
        assert "WebSocket" in second.text


async def test_websocket_client_uses_additional_headers(server):
    """websockets >= 14 takes `additional_headers=`; the tutorial's `extra_headers=` now fails."""
    async with WSChat(server.url, additional_headers={"Authorization": "Bearer x"}) as chat:
        assert (await collect(chat.ask("hi"))).n_tokens > 0
    with pytest.raises(TypeError):
        await websockets.connect(server.ws_url + "/ws/chat", extra_headers={"Authorization": "Bearer x"})


@pytest.mark.parametrize("grace_s", [0.0, 0.3])
async def test_sse_disconnect_cancels_the_generation_upstream(make_server, grace_s):
    """A reader that leaves gives the reply ``resume_grace_s`` to be resumed; then the model is stopped."""
    server = make_server(time_scale=1.0, resume_grace_s=grace_s)
    async with httpx.AsyncClient() as client:
        async with client.stream("POST", server.url + "/api/chat/stream", json={"message": Q, "seed": 3}) as r:
            decoder, seen = SSEDecoder(), 0
            async for chunk in r.aiter_raw():
                seen += len(decoder.feed(chunk))
                if seen >= 5:
                    break
    stats = await server.idle(timeout_s=30)           # waits for the end, however slow the machine
    # cancelled (not finished): the model stopped before the end of the reply
    assert stats["app_streams_cancelled"] == 1 and stats["model_streams_cancelled"] == 1
    assert stats["tokens_generated"] < _reply_tokens(Q, seed=3)


async def test_websocket_disconnect_cancels_the_generation_upstream(make_server):
    """The user closed the tab on purpose (close frame 1000): nobody will resume, so the model stops at
    once, however long the grace period for vanished connections is."""
    server = make_server(time_scale=1.0, resume_grace_s=30)
    ws = await websockets.connect(server.ws_url + "/ws/chat")
    await ws.send(json.dumps({"type": "message", "content": Q, "seed": 3}))
    tokens = 0
    while tokens < 5:
        tokens += json.loads(await ws.recv())["type"] == "token"
    await ws.close()
    stats = await server.idle(timeout_s=10)           # well before the 30 s grace: the close stopped it
    assert stats["app_streams_cancelled"] == 1 and stats["model_streams_cancelled"] == 1
    assert stats["tokens_generated"] < _reply_tokens(Q, seed=3) and stats["ws_connections"] == 0


async def test_abrupt_websocket_loss_mid_stream_is_cleaned_up(make_server):
    """No close frame: the client may come back, so the reply runs on for the grace period, then stops."""
    server = make_server(time_scale=1.0, resume_grace_s=0.2)
    ws = await websockets.connect(server.ws_url + "/ws/chat")
    await ws.send(json.dumps({"type": "message", "content": Q}))
    while json.loads(await ws.recv())["type"] != "token":
        pass
    ws.transport.abort()                              # no close frame: like a laptop lid shutting
    stats = await server.idle()
    assert stats["app_streams_cancelled"] == 1 and stats["tokens_generated"] < 40
    assert (await collect(ws_chat(server.url, "hi"))).n_tokens > 0


async def test_websocket_declines_per_message_deflate_and_the_chat_is_unchanged(server):
    """The server declines permessage-deflate (zlib per ~100-byte token frame cost CPU per token):
    a client that offers it (the ``websockets`` library does by default) gets plain frames, the same
    messages."""
    async with websockets.connect(server.ws_url + "/ws/chat") as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        await ws.send(json.dumps({"type": "message", "content": Q, "max_tokens": 3}))
        kinds = []
        while not kinds or kinds[-1] not in ("complete", "error"):
            kinds.append(json.loads(await ws.recv())["type"])
    assert kinds == ["ack", "token", "token", "token", "complete"]
