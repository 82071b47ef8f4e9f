"""The OpenAI chat shapes, pure: validation errors as OpenAI words them, chunks as the SDK's models want."""

import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from labkit.protocol import openai_chat as oc
from labkit.ratelimit import KeyedBuckets, TokenBucket


def body(**fields) -> bytes:
    base = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_a_good_request_parses():
    req = oc.parse_chat_request(body(stream=True, stream_options={"include_usage": True}, max_tokens=5,
                                     temperature=0, seed=1, top_p=0.5))
    assert (req.stream, req.include_usage, req.max_tokens, req.temperature, req.seed) == (True, True, 5, 0.0, 1)
    assert oc.parse_chat_request(body(max_completion_tokens=9)).max_tokens == 9


@pytest.mark.parametrize("raw, param, code", [
    (b"{not json", None, None),
    (b"[1, 2]", None, "invalid_type"),
    (body(model=...), "model", "missing_required_parameter"),
    (body(model=5), "model", "invalid_type"),
    (body(messages=...), "messages", "missing_required_parameter"),
    (body(messages=[]), "messages", "empty_array"),
    (body(messages="hi"), "messages", "invalid_type"),
    (body(messages=[{"content": "x"}]), "messages[0].role", "missing_required_parameter"),
    (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "invalid_value"),
    (body(messages=[{"role": "user", "content": 3}]), "messages[0].content", "invalid_type"),
    (body(messages=[{"role": "user"}]), "messages[0].content", "missing_required_parameter"),
    (body(temperature=2.5), "temperature", "decimal_above_max_value"),
    (body(temperature=-1), "temperature", "decimal_below_min_value"),
    (body(temperature="hot"), "temperature", "invalid_type"),
    (body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    (body(max_tokens=True), "max_tokens", "invalid_type"),
    (body(stream="yes"), "stream", "invalid_type"),
    (body(stream_options={"include_usage": True}), "stream_options", None),
    (body(n=2), "n", "integer_above_max_value"),
    (body(bogus=1), "bogus", "unknown_parameter"),
])
def test_bad_requests_are_400_with_openai_fields(raw, param, code):
    with pytest.raises(oc.APIError) as info:
        oc.parse_chat_request(raw)
    err = info.value
    assert err.status == 400 and err.type == "invalid_request_error"
    assert (err.param, err.code) == (param, code)
    assert set(err.body()["error"]) == {"message", "type", "param", "code"} and err.message


def test_chunks_validate_strictly_against_the_sdk_models():
    cid, created, model = oc.completion_id(), 1_730_000_000, "gpt-4o-mini"
    frames = [oc.role_chunk(cid, created, model), oc.content_chunk(cid, created, model, "Hel"),
              oc.finish_chunk(cid, created, model, "length"),
              oc.usage_chunk(cid, created, model, {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})]
    parsed = [ChatCompletionChunk.model_validate_json(json.dumps(f), strict=True) for f in frames]
    assert parsed[0].choices[0].delta.role == "assistant" and parsed[0].choices[0].delta.content == ""
    assert parsed[1].choices[0].delta.role is None and parsed[1].choices[0].delta.content == "Hel"
    assert parsed[2].choices[0].finish_reason == "length"
    assert parsed[3].choices == [] and parsed[3].usage.total_tokens == 8
    assert len({p.id for p in parsed}) == 1 and cid.startswith("chatcmpl-")
    whole = oc.completion(cid, created, model, "Hello", "stop", {"prompt_tokens": 1, "completion_tokens": 2,
                                                                "total_tokens": 3})
    assert ChatCompletion.model_validate_json(json.dumps(whole), strict=True).choices[0].message.content == "Hello"


def test_token_bucket_allows_bursts_then_tells_the_wait():
    bucket = TokenBucket(rate=2.0, capacity=3)
    assert [bucket.take(0.0)[0] for _ in range(3)] == [True, True, True]
    ok, wait = bucket.take(0.0)
    assert not ok and wait == pytest.approx(0.5)
    assert bucket.take(0.49)[0] is False
    assert bucket.take(1.0)[0] is True                  # refilled at 2 tokens per second
    assert TokenBucket(1, 1).take(100.0) == (True, 0.0)


def test_keyed_buckets_are_independent_and_bounded():
    buckets = KeyedBuckets(rate=1, capacity=1, max_keys=2)
    assert buckets.take("a", 0)[0] and not buckets.take("a", 0)[0]
    assert buckets.take("b", 0)[0]
    buckets.take("c", 0)
    assert len(buckets._buckets) == 2
