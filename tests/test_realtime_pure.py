"""The Realtime pieces the adapter used to decide inline, directly: the dialect object, the spoken
reply cut into chunks with its words, and which failure the client hears. No socket, no clock."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from labkit.audio.asr import ASRUnavailable
from labkit.audio.tts import TTSUnavailable
from labkit.model.profiles import ContextLengthExceeded
from labkit.realtime.dialect import BETA, GA, dialect_for
from labkit.realtime.failures import TRANSCRIPTION_FAILED, response_failure, transcription_failure
from labkit.realtime.machine import RealtimeSession, StartResponse
from labkit.realtime.session import SAMPLE_RATE
from labkit.realtime.speechout import speech_chunks, word_times_ms
from labkit.realtime.validate import validate_server_event


def session(beta: bool) -> RealtimeSession:
    n = itertools.count(1)
    return RealtimeSession("gpt-realtime", beta=beta, ids=lambda prefix: f"{prefix}_{next(n):03d}")


def test_a_dialect_is_chosen_once_and_renders_its_own_names():
    assert dialect_for(True) is BETA and dialect_for(False) is GA
    assert session(True).dialect is BETA and session(True).beta
    assert GA.event_type("response.output_audio.delta") == "response.output_audio.delta"
    assert BETA.event_type("response.output_audio.delta") == "response.audio.delta"
    assert BETA.event_type("conversation.item.added") == "conversation.item.created"
    item = {"id": "i", "role": "assistant", "content": [{"type": "output_audio", "transcript": "hi"}]}
    assert BETA.render_item(item)["content"] == [{"type": "audio", "transcript": "hi"}]
    assert GA.render_item(item) is item
    assert GA.confirms_items and not BETA.confirms_items
    assert "output_modalities" in GA.response_fields(("audio",), "alloy", 0.8)
    assert BETA.response_fields(("audio",), "alloy", 0.8)["modalities"] == ["text", "audio"]


def test_words_go_with_the_chunk_they_start_in_and_leftovers_with_the_last():
    rate = 1000                                          # 100 samples a 100 ms chunk, to read it easily
    words = [("Hel", 0), ("lo ", 150), ("there", 199), (".", 450)]
    chunks = speech_chunks(320, words, rate, chunk_ms=100, pace=0.5)
    assert [(c.start, c.end) for c in chunks] == [(0, 100), (100, 200), (200, 300), (300, 320)]
    assert [c.words for c in chunks] == [(("Hel", 0),), (("lo ", 150), ("there", 199)), (), ((".", 450),)]
    assert [c.due_s for c in chunks] == [0.0, 0.05, 0.1, 0.15]                 # the pace scales the timing
    assert word_times_ms([("a", 22_050), ("b", 11_025)], 22_050) == [("a", 1000), ("b", 500)]
    with pytest.raises(ValueError):
        speech_chunks(10, [], rate, chunk_ms=0)


@pytest.mark.parametrize("beta", [False, True])
def test_a_spoken_reply_through_the_machine_is_valid_in_both_dialects(beta):
    s = session(beta)
    s.opened()
    s.receive(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
    events, [order] = s.receive(json.dumps({"type": "response.create"}))
    assert isinstance(order, StartResponse) and order.modalities == ("audio",)
    audio = np.zeros(SAMPLE_RATE // 4, dtype="<i2")                          # 250 ms: three chunks
    out = []
    for chunk in speech_chunks(audio.size, [("Hi ", 0), ("you", 120)], SAMPLE_RATE):
        out += s.speech_chunk(order.response_id, audio[chunk.start:chunk.end].tobytes(), chunk.words)
    out += s.finish_response(order.response_id, prompt_tokens=3, output_tokens=2)
    for e in out:
        validate_server_event(e, beta=beta)
    # each word's transcript just before the audio it starts in, named in the session's dialect
    assert [e["type"] for e in out[:5]] == [s.dialect.event_type(t) for t in (
        "response.content_part.added", "response.output_audio_transcript.delta", "response.output_audio.delta",
        "response.output_audio_transcript.delta", "response.output_audio.delta")]
    assert ("conversation.item.done" in [e["type"] for e in out]) is not beta
    done = out[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["transcript"] == "Hi you"


def test_which_failure_the_client_hears():
    too_long = response_failure(ContextLengthExceeded(9000, 8192))
    assert (too_long.code, too_long.type, too_long.unexpected) == ("context_length_exceeded",
                                                                   "invalid_request_error", False)
    assert "8192" in too_long.message
    no_voice = response_failure(TTSUnavailable("espeak-ng is not installed"))
    assert (no_voice.code, no_voice.message, no_voice.unexpected) == ("response_failed",
                                                                      "espeak-ng is not installed", False)
    bug = response_failure(KeyError("secret internals"))
    assert bug.unexpected and "secret" not in bug.message and bug.code == "response_failed"
    assert transcription_failure(ASRUnavailable("busy")) == ("busy", False)
    assert transcription_failure(ZeroDivisionError()) == (TRANSCRIPTION_FAILED, True)


def test_a_failed_reply_frees_the_slot_for_the_next_response_create():
    s = session(False)
    s.receive(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
    _, [order] = s.receive(json.dumps({"type": "response.create"}))
    failure = response_failure(ContextLengthExceeded(9000, 8192))
    out = s.fail_response(order.response_id, failure.message, code=failure.code, type=failure.type)
    assert out[0]["type"] == "error" and out[0]["error"]["code"] == "context_length_exceeded"
    assert out[-1]["type"] == "response.done" and out[-1]["response"]["status"] == "failed"
    events, orders = s.receive(json.dumps({"type": "response.create"}))
    assert events[0]["type"] == "response.created" and len(orders) == 1
