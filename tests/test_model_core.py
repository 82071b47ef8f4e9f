"""The simulated model's pure parts: tokenizer, profiles, responder, schedule. No sockets, no sleeping."""

import random

import pytest

from labkit.model import (MODEL_ALIASES, PROFILES, UnknownModelError, count_message_tokens, list_models,
                          plan_completion, resolve_model, tokenize)
from labkit.model.responder import default_responder


@pytest.mark.parametrize("text", [
    "Hello, world!", "Server-Sent Events stream tokens.\n\nNew paragraph:  two  spaces",
    "numbers 1234567 and 3.14", "ünïcödé and emoji 🎤 ok", "", "   ", "supercalifragilisticexpialidocious",
])
def test_tokenize_rebuilds_the_text_exactly(text):
    assert "".join(tokenize(text)) == text


def test_tokens_look_like_bpe_pieces():
    pieces = tokenize("The streaming transports are bidirectional.")
    assert pieces[0] == "The" and " streaming" not in pieces      # long words are cut
    assert " stream" in pieces and "ing" in pieces
    assert pieces[-1] == "."                                       # punctuation stands alone
    words = "Voice activity detection decides when someone is speaking right now in the room.".split()
    assert 1.0 <= len(tokenize(" ".join(words))) / len(words) <= 1.6


def test_prompt_tokens_count_message_framing():
    one = count_message_tokens([{"role": "user", "content": "hi"}])
    two = count_message_tokens([{"role": "system", "content": "hi"}, {"role": "user", "content": "hi"}])
    assert one == 3 + 4 + 1 and two == one + 5


def test_every_alias_resolves_and_dated_snapshots_map_to_their_family():
    for alias, profile in MODEL_ALIASES.items():
        assert resolve_model(alias) is PROFILES[profile]
    assert resolve_model("gpt-4o-2024-08-06") is PROFILES["balanced"]
    assert resolve_model("gpt-4o-mini-2024-07-18") is PROFILES["fast-small"]
    for bad in ("gpt-4o-turbo-x", "llama", "gpt-4ox", ""):
        with pytest.raises(UnknownModelError):
            resolve_model(bad)
    assert {m["id"] for m in list_models()} == set(PROFILES) | set(MODEL_ALIASES)


def test_profiles_are_ordered_fast_to_slow():
    fast, mid, slow = PROFILES["fast-small"], PROFILES["balanced"], PROFILES["slow-large"]
    assert fast.ttft_s(100) < mid.ttft_s(100) < slow.ttft_s(100)
    assert fast.itl_s < mid.itl_s < slow.itl_s


def test_responder_answers_from_the_lab_topics():
    r = default_responder()
    assert r.topic_for("How do Server-Sent Events work?").name == "sse"
    assert r.topic_for("tell me about websockets").name == "websocket"
    assert r.topic_for("why does my VAD never detect silence").name == "vad"
    assert r.topic_for("what is the capital of France") is None
    text = r.reply([{"role": "user", "content": "What is the capital of France?"}], random.Random(0))
    assert "lab" in text                                           # the fallback explains itself
    assert "lorem" not in text.lower()


def test_same_seed_same_text_and_timings():
    msgs = [{"role": "user", "content": "Explain streaming latency."}]
    a = plan_completion(msgs, PROFILES["balanced"], seed=7)
    b = plan_completion(msgs, PROFILES["balanced"], seed=7)
    assert a == b
    others = {plan_completion(msgs, PROFILES["balanced"], seed=s).due_s for s in range(5)}
    assert len(others) == 5                                        # jitter differs between seeds


def test_temperature_zero_is_greedy():
    msgs = [{"role": "user", "content": "hello"}]
    texts = {plan_completion(msgs, PROFILES["instant"], seed=s, temperature=0).text for s in range(10)}
    assert len(texts) == 1


def test_ttft_grows_with_prompt_length_by_the_prefill_cost():
    profile = PROFILES["slow-large"]
    short = [{"role": "user", "content": "hello"}]
    long = [{"role": "user", "content": "hello " + "context " * 2000}]
    # no jitter: the due time of the first token is exactly the profile's formula
    flat = type(profile)(**{**profile.as_dict(), "jitter": 0.0})
    p_short, p_long = plan_completion(short, flat, seed=1), plan_completion(long, flat, seed=1)
    assert p_short.ttft_s == pytest.approx(flat.ttft_s(p_short.prompt_tokens))
    assert p_long.ttft_s - p_short.ttft_s == pytest.approx(
        flat.prefill_s_per_token * (p_long.prompt_tokens - p_short.prompt_tokens))
    assert p_long.prompt_tokens - p_short.prompt_tokens >= 2000


def test_due_times_increase_and_gaps_respect_the_floor():
    p = PROFILES["fast-small"]
    plan = plan_completion([{"role": "user", "content": "What is SSE?"}], p, seed=3)
    gaps = [b - a for a, b in zip(plan.due_s, plan.due_s[1:])]
    assert all(g >= p.itl_min_s for g in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(p.itl_s, rel=0.25)


def test_max_tokens_cuts_with_finish_reason_length():
    msgs = [{"role": "user", "content": "What is SSE?"}]
    full = plan_completion(msgs, PROFILES["instant"], seed=1)
    cut = plan_completion(msgs, PROFILES["instant"], seed=1, max_tokens=5)
    assert full.finish_reason == "stop" and cut.finish_reason == "length"
    assert cut.tokens == full.tokens[:5]
    assert cut.usage == {"prompt_tokens": full.prompt_tokens, "completion_tokens": 5,
                         "total_tokens": full.prompt_tokens + 5}
    assert plan_completion(msgs, PROFILES["instant"], seed=1, max_tokens=10_000).finish_reason == "stop"


def test_scaled_profile_scales_every_delay():
    p = PROFILES["balanced"].scaled(0.1)
    assert p.ttft_s(1000) == pytest.approx(PROFILES["balanced"].ttft_s(1000) * 0.1)
    assert p.itl_s == pytest.approx(PROFILES["balanced"].itl_s * 0.1)
