"""The relay's cheap hot path (issue #18) changes nothing a client sees.

* the token event's fast encoder writes exactly :func:`encode_event`'s bytes;
* the SSE decoder's LF-only fast path decodes exactly what its general path does, in any cut;
* the model server's ``/v1`` stream sends tokens that are already due together, in one write,
  the same chunks in the same order (checked on the generator, with a stream that is late by
  construction, and over the wire through the SDK);
* the app server's upstream, on aiohttp (the default) and on httpx, relays the same tokens, sends
  the upstream the conversation as it was asked, and turns a connection the model cuts mid-stream
  into the stream's ``upstream_error`` (on httpx2, the SDK's httpx, this used to escape the handler:
  it caught ``httpx.HTTPError``, which httpx2's errors are not, and the reply never ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from labkit.model import plan_completion, resolve_model
from labkit.protocol import openai_chat as oc
from labkit.protocol.sse import SSEDecoder, encode_event, encode_json_event

PROMPT = [{"role": "user", "content": "How do Server-Sent Events work?"}]


def test_the_token_event_encoder_writes_encode_events_bytes():
    rng = random.Random(7)
    alphabet = ["a", " ", '"', "\\", "é", "\u2028", "\x00", "\t", "\n", "\r", "😀", "<", "}"]
    for seq in range(300):
        content = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        data = json.dumps({"seq": seq, "content": content, "t": time.time()})
        for event, id in (("token", seq), (None, None), ("done", "end"), (None, seq)):
            assert encode_json_event(data, event=event, id=id) == encode_event(data, event=event, id=id)
    with pytest.raises(ValueError):
        encode_json_event("two\nlines")


def _events(raw: bytes, cuts: list[int]) -> list:
    decoder, out, start = SSEDecoder(), [], 0
    for cut in [*cuts, len(raw)]:
        out += decoder.feed(raw[start:cut])
        start = cut
    return out


def test_the_decoders_lf_fast_path_agrees_with_its_general_path_in_any_cut():
    lf = b"".join(encode_event(json.dumps({"i": i, "s": "x" * i}), event="token", id=i) for i in range(6))
    lf += b": comment\n\nretry: 10\ndata: a\ndata: b\n\n"
    mixed = lf.replace(b"\n", b"\r\n", 8)           # CRLF in the first events, LF after: both paths in one stream
    expected = _events(lf, [])
    assert len(expected) == 7 and expected[-1].data == "a\nb"
    rng = random.Random(3)
    for raw in (lf, mixed):
        assert _events(raw, []) == expected
        for _ in range(200):
            cuts = sorted(rng.sample(range(1, len(raw)), rng.randint(1, 6)))
            assert _events(raw, cuts) == expected, cuts




def test_the_sdk_reads_a_coalesced_v1_stream_token_for_token(make_server):
    server = make_server(time_scale=0.001)        # tokens due faster than a write: they go out together
    client = server.client(sync=True)
    reference = make_server(time_scale=1.0).client(sync=True)
    for seed in (1, 2):
        got = [c.choices[0].delta.content for c in client.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, seed=seed, max_tokens=20, stream=True) if c.choices]
        want = [c.choices[0].delta.content for c in reference.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, seed=seed, max_tokens=20, stream=True) if c.choices]
        assert got == want and len([g for g in got if g]) == 20


def _sse_events(url: str, body: dict) -> list:
    with httpx.Client(timeout=30) as http, http.stream("POST", url + "/api/chat/stream", json=body) as r:
        assert r.status_code == 200
        decoder, events = SSEDecoder(), []
        for raw in r.iter_bytes():
            events += decoder.feed(raw)
    return events


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_both_upstream_transports_relay_the_models_tokens(make_server, transport):
    model = make_server()
    app = make_server(upstream_base_url=model.url + "/v1", upstream_http=transport)
    events = _sse_events(app.url, {"message": PROMPT[0]["content"], "seed": 4, "max_tokens": 15})
    tokens = [json.loads(e.data) for e in events if e.event == "token"]
    assert [t["seq"] for t in tokens] == list(range(15))
    want = list(plan_completion(PROMPT, resolve_model("gpt-4o-mini"), seed=4, max_tokens=15).tokens)
    assert [t["content"] for t in tokens] == want
    assert events[-1].event == "done" and json.loads(events[-1].data)["finish_reason"] == "length"


class _CuttingUpstream(BaseHTTPRequestHandler):
    """Sends three tokens, then drops the connection without ending the chunked body; records each
    request's JSON body."""
    protocol_version = "HTTP/1.1"
    bodies: list[dict] = []
    raw: list[tuple[bytes, str | None]] = []            # each body as sent, and its Authorization header

    def do_POST(self):                                          # noqa: N802 (http.server's name)
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).raw.append((raw, self.headers.get("authorization")))
        type(self).bodies.append(json.loads(raw))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for word in ("one", " two", " three"):
            chunk = encode_event(json.dumps(oc.content_chunk("c1", 0, "gpt-4o-mini", word)))
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.close_connection = True                            # no "0\r\n\r\n": the body is cut short

    def log_message(self, *args):
        pass


@pytest.fixture
def cutting_upstream():
    _CuttingUpstream.bodies, _CuttingUpstream.raw = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CuttingUpstream)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_model_that_cuts_the_stream_is_an_upstream_error_and_the_asked_conversation_went_up(
        make_server, cutting_upstream, transport):
    app = make_server(upstream_base_url=cutting_upstream, upstream_http=transport)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    events = _sse_events(app.url, {"messages": messages, "max_tokens": 9, "seed": 2})
    assert [json.loads(e.data)["content"] for e in events if e.event == "token"] == ["one", " two", " three"]
    assert events[-1].event == "error" and json.loads(events[-1].data)["code"] == "upstream_error"
    body = _CuttingUpstream.bodies[-1]
    assert body["messages"] == messages and body["stream"] is True
    assert body["max_tokens"] == 9 and body["seed"] == 2 and body["model"] == "gpt-4o-mini"
    # and the server is fine afterwards: the stream ended, nothing is left running
    stats = httpx.get(app.url + "/lab/stats").json()
    assert stats["app_streams_active"] == 0


def test_the_relay_sends_the_upstream_the_bytes_the_sdks_create_sends(make_server, cutting_upstream):
    """The relay opens its stream with the SDK's ``client.post`` (no TypedDict transform, the cost of a
    new connection); the request is the one ``chat.completions.create(stream=True)`` makes, byte for byte,
    with the key."""
    from openai import AsyncOpenAI

    app = make_server(upstream_base_url=cutting_upstream, upstream_api_key="sk-test-relay")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    _sse_events(app.url, {"messages": messages, "max_tokens": 9, "seed": 2, "temperature": 0.5,
                          "model": "gpt-4o"})

    async def by_the_sdk():
        async with AsyncOpenAI(base_url=cutting_upstream, api_key="sk-test-relay") as client:
            stream = await client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=9, seed=2,
                                                          temperature=0.5, stream=True)
            with contextlib.suppress(Exception):
                async for _ in stream:
                    pass

    asyncio.run(by_the_sdk())
    (relayed, relayed_key), (sdk, sdk_key) = _CuttingUpstream.raw
    assert relayed == sdk
    assert relayed_key == sdk_key == "Bearer sk-test-relay"


def test_an_unknown_upstream_transport_is_refused_at_configuration():
    from labkit.server.state import ServerConfig
    from labkit.server.upstream import http_client

    with pytest.raises(ValueError, match="upstream_http"):
        ServerConfig(upstream_http="curl")
    with pytest.raises(ValueError, match="upstream_http"):
        http_client("curl")


def test_tokens_that_came_in_the_same_read_as_the_models_error_are_all_delivered(make_server):
    server = make_server(fail_after_tokens=5, time_scale=0.0001)     # role, 5 tokens and the error: one write
    events = _sse_events(server.url, {"message": PROMPT[0]["content"], "seed": 3})
    assert [json.loads(e.data)["seq"] for e in events if e.event == "token"] == [0, 1, 2, 3, 4]
    assert events[-1].event == "error" and json.loads(events[-1].data)["code"] == "upstream_error"
