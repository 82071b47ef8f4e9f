"""The local model server over real sockets, spoken to by the official openai SDK and by raw HTTP."""

import contextlib
import asyncio
import json
import subprocess
import sys

import httpx
import openai
import pytest

import labkit
from labkit.protocol.sse import SSEDecoder

MSG = [{"role": "user", "content": "What is SSE?"}]


def sse_frames(server, **body) -> tuple[httpx.Response, bytes]:
    payload = {"model": "gpt-4o-mini", "messages": MSG, "stream": True, **body}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=payload,
                      headers={"Authorization": "Bearer x"}) as r:
        return r, r.read()


def test_sync_sdk_streams_like_the_real_api(server):
    client = server.client(sync=True)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True, seed=4)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)            # no usage chunk unless asked for
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, seed=4)
    assert whole.choices[0].message.content == text and whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == len(chunks) - 2


async def test_async_sdk_streams_with_usage_and_max_tokens(server):
    client = server.client()
    stream = await client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True, max_tokens=4,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 4
    # the stream helper works on the same chunks
    async with client.chat.completions.stream(model="gpt-4o-mini", messages=MSG, seed=1) as s:
        final = await s.get_final_completion()
    assert final.choices[0].message.content


def test_wire_framing_exactly(server):
    r, raw = sse_frames(server, max_tokens=2, stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert raw.endswith(b"data: [DONE]\n\n")
    assert b"\nid:" not in raw and b"event:" not in raw      # the SDK must never see id: or data-less events
    events = SSEDecoder().feed(raw)
    objs = [json.loads(e.data) for e in events[:-1]]
    assert [list(o["choices"][0]["delta"]) if o["choices"] else None for o in objs] == \
        [["role", "content", "refusal"], ["content"], ["content"], [], None]
    assert all(o["usage"] is None for o in objs[:-1]) and objs[-1]["usage"]["completion_tokens"] == 2
    assert len({(o["id"], o["created"], o["model"]) for o in objs}) == 1


def test_same_seed_same_reply_over_the_wire(server):
    client = server.client(sync=True)
    texts = {client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}],
                                            seed=11).choices[0].message.content for _ in range(3)}
    assert len(texts) == 1


def test_keepalive_comments_during_a_long_wait(make_server):
    server = make_server(time_scale=1.0, heartbeat_s=0.05)
    r, raw = sse_frames(server, model="slow-large", max_tokens=1)     # ~0.6 s to the first token
    assert raw.count(b": keep-alive\n\n") >= 5
    events = SSEDecoder().feed(raw)
    assert events[-1].data == "[DONE]" and len(events) == 4           # comments are not events


def test_models_are_listed_with_their_profiles(server):
    models = server.client(sync=True).models.list()
    ids = {m.id for m in models}
    assert {"gpt-4o-mini", "gpt-4o", "fast-small", "slow-large"} <= ids
    one = httpx.get(server.base_url + "/models/gpt-4o-mini").json()
    assert one["profile"]["name"] == "fast-small"
    assert httpx.get(server.base_url + "/models/nope").status_code == 404


@pytest.mark.parametrize("raw", [b"{oops", b'{"model": "gpt-4o-mini"}', b'{"model": "gpt-4o-mini", "messages": []}'])
def test_malformed_requests_get_400_and_the_server_keeps_serving(server, raw):
    r = httpx.post(server.base_url + "/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert server.client(sync=True).chat.completions.create(model="gpt-4o-mini", messages=MSG).choices


def test_sdk_raises_the_matching_exceptions(server):
    client = server.client(sync=True, max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, temperature=9)
    assert e.value.param == "temperature" and e.value.code == "decimal_above_max_value"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-17", messages=MSG, stream=True)
    assert e.value.code == "model_not_found"


def test_unknown_routes_and_methods_answer_in_openai_shape(server):
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.get(server.base_url + "/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_wrong_key_is_401_when_a_key_is_required(make_server):
    server = make_server(api_key="sk-lab-right")
    with pytest.raises(openai.AuthenticationError) as e:
        server.client(sync=True, api_key="sk-lab-wrong-key").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert e.value.code == "invalid_api_key" and "sk-lab-wrong-key" not in str(e.value)   # never echo a key
    assert httpx.post(server.base_url + "/chat/completions", json={}).status_code == 401
    ok = server.client(sync=True, api_key="sk-lab-right").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert ok.choices[0].message.content


def test_rate_limit_is_429_with_retry_after_ms(make_server):
    server = make_server(rate_limit_rpm=60)           # one request per second, burst of one
    payload = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 1}
    key = {"Authorization": "Bearer lab-local-key"}         # the key the SDK clients below use: one bucket
    assert httpx.post(server.base_url + "/chat/completions", json=payload, headers=key).status_code == 200
    r = httpx.post(server.base_url + "/chat/completions", json=payload, headers=key)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert 0 < int(r.headers["retry-after-ms"]) <= 1000
    with pytest.raises(openai.RateLimitError):
        server.client(sync=True, max_retries=0).chat.completions.create(**payload)
    other_key = {"Authorization": "Bearer another-user"}
    assert httpx.post(server.base_url + "/chat/completions", json=payload, headers=other_key).status_code == 200
    # the SDK honours retry-after-ms: with retries it waits and then succeeds
    ok = server.client(sync=True, max_retries=3).chat.completions.create(**payload)
    assert ok.choices[0].finish_reason == "length"


async def test_concurrent_streams_do_not_block_each_other(make_server):
    server = make_server(time_scale=1.0)
    client = server.client()

    started = asyncio.Event()
    first_chunks, active_when_all_began = 0, None

    async def one():
        nonlocal first_chunks, active_when_all_began
        s = await client.chat.completions.create(model="slow-large", messages=MSG, stream=True, max_tokens=40, seed=1)
        chunks = 0
        async for _ in s:
            chunks += 1
            if chunks == 1:
                first_chunks += 1
                if first_chunks == 20:
                    active_when_all_began = server.stats["model_streams_active"]
                    started.set()
        return chunks

    # All 20 stream at once: when the last one has begun, the server is generating all of them (each
    # has ~2 s of tokens left). A server that served them one by one would have one active at a time.
    together = await asyncio.gather(*(one() for _ in range(20)))
    assert len(together) == 20 and len(set(together)) == 1
    assert active_when_all_began >= 2


def test_two_servers_at_once_do_not_collide():
    with labkit.serve(time_scale=0.05) as a, labkit.serve(time_scale=0.05) as b:
        assert a.port != b.port
        for s in (a, b):
            assert httpx.get(s.url + "/health").json() == {"status": "ok"}
    assert not a.running and not b.running


def test_stop_returns_promptly_while_a_stream_is_open():
    server = labkit.serve(time_scale=1.0)
    client = httpx.Client()
    with client.stream("POST", server.base_url + "/chat/completions",
                       json={"model": "slow-large", "messages": MSG, "stream": True}) as r:
        chunks = r.iter_raw()
        next(chunks)
        server.stop()
        assert not server.running
        rest = b""
        with contextlib.suppress(httpx.HTTPError):
            for chunk in chunks:
                rest += chunk
    # judged by the stream, not a clock: stop cut the open reply (no [DONE], no finish) instead of
    # waiting for it to end; slow-large needs several seconds for it, stop's grace is one
    assert b"[DONE]" not in rest and b'"finish_reason":"stop"' not in rest.replace(b" ", b"")


def test_command_line_server_prints_its_url_and_serves_at_once():
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--port", "0", "--time-scale", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("labkit server listening on http://127.0.0.1:")
        url = line.split()[-1]
        # the instant the URL is printed the socket accepts connections: one attempt, no retry
        assert httpx.get(url + "/health", timeout=30).status_code == 200
        client = openai.OpenAI(base_url=url + "/v1", api_key="any")
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices[0].message.content
    finally:
        proc.terminate()
        proc.wait(10)


def test_command_line_reports_a_port_in_use():
    with labkit.serve() as busy:
        out = subprocess.run([sys.executable, "-m", "labkit", "serve", "--port", str(busy.port)],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{busy.port}" in out.stderr
