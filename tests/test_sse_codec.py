"""The hand-written SSE codec, checked against the spec's edge cases and two library parsers."""

import random

import httpx_sse._decoders as httpx_sse_dec
import pytest
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from labkit.protocol.sse import SSEDecoder, ServerSentEvent, encode_comment, encode_event


def decode_all(raw: bytes, chunk_sizes=None) -> list[ServerSentEvent]:
    dec, out, i = SSEDecoder(), [], 0
    sizes = iter(chunk_sizes or [len(raw) or 1])
    while i < len(raw):
        n = next(sizes, len(raw))
        out += dec.feed(raw[i:i + n])
        i += n
    return out


def test_encode_one_event():
    assert encode_event('{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_event("x", event="token", id=3, retry=200) == b"event: token\nid: 3\nretry: 200\ndata: x\n\n"


def test_multiline_data_round_trips():
    text = "line one\nline two\r\nline three\n"
    raw = encode_event(text)
    assert raw.count(b"data: ") == 4
    assert decode_all(raw)[0].data == "line one\nline two\nline three\n"


def test_encode_rejects_line_breaks_in_fields():
    with pytest.raises(ValueError):
        encode_event("x", event="a\nb")
    with pytest.raises(ValueError):
        encode_event("x", id="1\r2")


def test_comments_are_ignored_and_look_like_keepalives():
    assert encode_comment("ping") == b": ping\n\n"
    raw = encode_comment("ping") + encode_event("hi") + encode_comment()
    assert [e.data for e in decode_all(raw)] == ["hi"]


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"])
def test_all_three_line_endings(eol):
    raw = f"event: token{eol}data: a{eol}data: b{eol}{eol}data:c{eol}{eol}".encode()
    events = decode_all(raw)
    assert [(e.event, e.data) for e in events] == [("token", "a\nb"), ("message", "c")]


def test_crlf_split_across_chunks_is_one_line_end():
    raw = b"data: a\r\n\r\ndata: b\r\n\r\n"
    for cut in range(1, len(raw)):
        assert [e.data for e in decode_all(raw, [cut, len(raw)])] == ["a", "b"], cut


def test_every_split_of_a_crlf_stream_gives_the_same_events_as_httpx_sse():
    """One or two cuts anywhere (an empty chunk included, as a proxy may deliver between CR and LF):
    always the events httpx-sse finds in the whole stream. (Before the fix, ``feed(b"...\\r")``,
    ``feed(b"")``, ``feed(b"\\n...")`` read the LF as a second, empty line and split the event in two.)"""
    raw = b"data: a\r\ndata: b\r\n\r\nid: 1\r\ndata: c\r\n\r\n: ping\r\nevent: e\r\ndata: d\r\n\r\n"
    expected = _httpx_sse_events(raw)
    assert [d for _, d, _ in expected] == ["a\nb", "c", "d"]
    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1):
            dec = SSEDecoder()
            events = dec.feed(raw[:i]) + dec.feed(raw[i:j]) + dec.feed(raw[j:])
            assert [(e.event, e.data, e.id) for e in events] == expected, (i, j)


def test_any_chunking_gives_the_same_events():
    raw = b"".join(encode_event(f"tok {i} \u00e9\u20ac", event="token", id=i) for i in range(30))
    whole = decode_all(raw)
    rng = random.Random(1)
    for _ in range(50):
        sizes = [rng.randint(1, 9) for _ in range(len(raw))]
        assert decode_all(raw, sizes) == whole
    assert decode_all(raw, [1] * len(raw)) == whole        # byte by byte, splitting UTF-8 sequences too


def test_spec_details_bom_space_id_retry():
    raw = "\ufeffdata:no space\n\ndata:  two spaces\n\n".encode()
    assert [e.data for e in decode_all(raw)] == ["no space", " two spaces"]
    dec = SSEDecoder()
    events = dec.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nretry: 1500\n\nretry: soon\n\n")
    assert [e.id for e in events] == ["7", "7", "7"]       # id persists; an id with NUL is ignored
    assert dec.retry == 1500
    assert dec.feed(b"event: ping\n\n") == []                # no data: nothing is dispatched


def _openai_events(raw: bytes):
    return [(e.event or "message", e.data, e.id or "") for e in OpenAISSEDecoder().iter_bytes(iter([raw]))]


def _httpx_sse_events(raw: bytes):
    lines, dec, out = httpx_sse_dec.SSELineDecoder(), httpx_sse_dec.SSEDecoder(), []
    for line in lines.decode(raw.decode()) + lines.flush():
        event = dec.decode(line)
        if event is not None:
            out.append((event.event, event.data, event.id))
    return out


@pytest.mark.parametrize("raw", [
    b"".join(encode_event(f'{{"n": {i}}}') for i in range(5)) + b"data: [DONE]\n\n",
    encode_comment("keep-alive") + encode_event("a\nb", event="token", id=1) + encode_event("c", id=2),
    b"data: x\r\n\r\nevent: done\r\ndata: y\r\n\r\n",
    b"data:tight\n\n:comment\ndata: after\n\n",
])
def test_agrees_with_the_openai_sdk_and_httpx_sse(raw):
    ours = [(e.event, e.data, e.id) for e in decode_all(raw)]
    assert ours == _openai_events(raw) == _httpx_sse_events(raw)


def test_where_the_sdk_differs_an_event_without_data():
    """The SDK dispatches an event with no data (and then fails to parse it as JSON); the spec says
    such an event is dropped. That is why the model server never sends one."""
    raw = b"event: ping\n\ndata: {}\n\n"
    assert [e.data for e in decode_all(raw)] == ["{}"]
    assert [d for _, d, _ in _openai_events(raw)] == ["", "{}"]
