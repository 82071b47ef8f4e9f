"""``RealtimeSession``, the pure core of the Realtime emulator: client events in, server events and
work orders out. No socket, no clock, ids from a counter: whole event streams compare exactly."""

from __future__ import annotations

import base64
import itertools
import json

import numpy as np
import pytest

from labkit.realtime.machine import CancelResponse, RealtimeSession, StartResponse, StartTranscription
from labkit.realtime.validate import validate_server_event


def counter():
    n = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(n):03d}"


def session(**kw) -> RealtimeSession:
    return RealtimeSession("gpt-realtime", ids=counter(), **kw)


def send(s: RealtimeSession, event: dict) -> tuple[list[dict], list]:
    events, orders = s.receive(json.dumps(event))
    for e in events:
        validate_server_event(e, beta=s.beta)            # every event a valid one of the SDK's models
    return events, orders


USER_HI = {"type": "conversation.item.create",
           "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}
TEXT_ONLY = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                   "audio": {"input": {"turn_detection": None}}}}


def test_opening_and_an_item_give_exactly_these_events():
    s = session()
    assert s.opened()[0]["session"]["id"] == "sess_001" and s.opened()[0]["type"] == "session.created"
    events, orders = send(s, USER_HI)
    item = {"id": "item_002", "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]}
    assert events == [
        {"type": "conversation.item.added", "event_id": "event_00003", "previous_item_id": None, "item": item},
        {"type": "conversation.item.done", "event_id": "event_00004", "previous_item_id": None, "item": item},
    ]
    assert orders == []


def test_a_text_turn_events_in_events_out():
    s = session()
    send(s, TEXT_ONLY)
    send(s, USER_HI)
    events, orders = send(s, {"type": "response.create"})
    assert [e["type"] for e in events] == ["response.created", "response.output_item.added", "conversation.item.added"]
    [order] = orders
    assert isinstance(order, StartResponse) and order.response_id == "resp_003" and order.item_id == "item_004"
    assert order.modalities == ("text",) and order.messages[-1] == {"role": "user", "content": "hi"}
    out = s.text_delta("resp_003", "Hel") + s.text_delta("resp_003", "lo") + \
        s.finish_response("resp_003", prompt_tokens=10, output_tokens=2)
    for e in out:
        validate_server_event(e)
    assert [e["type"] for e in out] == [
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "conversation.item.done", "response.done"]
    done = out[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"] == [{"type": "output_text", "text": "Hello"}]
    assert done["usage"]["total_tokens"] == 12
    assert s.response is None                              # the slot is free again
    assert s.text_delta("resp_003", "late") == []          # a finished response takes nothing more


def test_the_same_input_gives_the_same_stream():
    def run() -> list[dict]:
        s = session()
        out = s.opened()
        for event in (TEXT_ONLY, USER_HI, {"type": "response.create"}):
            out += s.receive(json.dumps(event))[0]
        out += s.text_delta("resp_003", "Hi") + s.finish_response("resp_003")
        return out
    assert run() == run()


def test_cancel_closes_the_response_and_orders_the_generation_stopped():
    s = session()
    send(s, TEXT_ONLY)
    send(s, USER_HI)
    send(s, {"type": "response.create"})
    events, orders = send(s, {"type": "response.cancel"})
    assert orders == [CancelResponse("resp_003")]
    assert events[-1]["type"] == "response.done" and events[-1]["response"]["status"] == "cancelled"
    assert events[-1]["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    events, orders = send(s, {"type": "response.cancel", "event_id": "evt_7"})
    assert events[0]["error"]["code"] == "response_cancel_not_active" and events[0]["error"]["event_id"] == "evt_7"
    assert orders == []


def test_cancel_after_deleting_the_replys_item():
    s = session()
    send(s, TEXT_ONLY)
    send(s, USER_HI)
    send(s, {"type": "response.create"})
    assert send(s, {"type": "conversation.item.delete", "item_id": "item_004"})[0][0]["type"] == \
        "conversation.item.deleted"
    events, orders = send(s, {"type": "response.cancel"})
    assert events[-1]["type"] == "response.done" and orders == [CancelResponse("resp_003")]
    assert "conversation.item.done" not in [e["type"] for e in events]    # the item is gone: nothing to finish
    assert send(s, {"type": "response.create"})[1]                        # not wedged


@pytest.mark.parametrize("response, param", [
    ({"max_output_tokens": "abc"}, "response.max_output_tokens"), ({"instructions": 123}, "response.instructions"),
    ({"audio": "loud"}, "response.audio"), ({"audio": {"output": {"voice": 5}}}, "response.audio.output.voice"),
    ({"output_modalities": ["video"]}, "response.output_modalities"), ("yes", "response"),
])
def test_a_bad_response_create_starts_nothing(response, param):
    s = session()
    send(s, USER_HI)
    events, orders = send(s, {"type": "response.create", "response": response})
    assert [e["type"] for e in events] == ["error"] and events[0]["error"]["param"] == param
    assert orders == [] and s.response is None
    assert len(s.items) == 1                                              # no half-made assistant item


@pytest.mark.parametrize("frame", ['{"type": {}}', '{"type": []}', "[" * 50_000, "{}", "nope", '"x"'])
def test_a_bad_frame_is_one_error_event(frame):
    s = session()
    events, orders = s.receive(frame)
    assert [e["type"] for e in events] == ["error"] and orders == []
    validate_server_event(events[0])


def test_committing_audio_makes_an_item_and_orders_its_transcription():
    s = session()
    send(s, {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": None, "transcription": {"model": "whisper-1"}}}}})
    audio = base64.b64encode(np.zeros(4800, "<i2").tobytes()).decode()          # 200 ms at 24 kHz
    assert send(s, {"type": "input_audio_buffer.append", "audio": audio}) == ([], [])
    events, orders = send(s, {"type": "input_audio_buffer.commit"})
    assert [e["type"] for e in events] == ["input_audio_buffer.committed", "conversation.item.added",
                                           "conversation.item.done"]
    [order] = orders
    assert isinstance(order, StartTranscription) and order.item_id == "item_002" and order.audio.size == 4800
    done = s.transcription_done("item_002", "hello there", 0.25)
    assert [e["type"] for e in done] == ["conversation.item.input_audio_transcription.delta",
                                         "conversation.item.input_audio_transcription.completed"]
    failed = s.transcription_failed("item_002", "the speech recogniser is busy")
    validate_server_event(failed[0])
    events, _ = send(s, {"type": "input_audio_buffer.commit"})             # nothing left: too small
    assert events[0]["error"]["code"] == "input_audio_buffer_commit_empty"


def test_the_beta_dialect_names_events_its_way():
    s = session(beta=True)
    s.receive(json.dumps({"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None}}))
    events, _ = send(s, USER_HI)
    assert [e["type"] for e in events] == ["conversation.item.created"]
    send(s, {"type": "response.create"})
    out = s.text_delta("resp_003", "Hi") + s.finish_response("resp_003")
    assert "response.text.delta" in [e["type"] for e in out]
    for e in out:
        validate_server_event(e, beta=True)


def test_server_vad_ends_a_turn_and_starts_the_reply():
    """A labelled utterance from data/ (real speech: a detector rightly treats a steady tone as noise)."""
    from labkit.audio.pcm import resample
    from labkit.speechdata import SAMPLE_RATE as SPEECH_RATE, load_clean

    s = session()
    send(s, {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    samples, utterances = load_clean()
    u = utterances[0]
    clip = samples[: int((u.end_s + 1.5) * SPEECH_RATE)]
    audio = resample(clip, SPEECH_RATE, 24_000).astype("<i2")
    out, orders = [], []
    for i in range(0, audio.size, 2400):                                     # 100 ms appends
        e, o = send(s, {"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(audio[i:i + 2400].tobytes()).decode()})
        out += e
        orders += o
    kinds = [e["type"] for e in out]
    assert kinds[:2] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"]
    assert "input_audio_buffer.committed" in kinds and "response.created" in kinds
    start, stop = out[0], out[1]
    padding, silence = 300, 500                                               # the server VAD's defaults
    assert abs(start["audio_start_ms"] + padding - 1000 * u.start_s) <= 150
    assert abs(stop["audio_end_ms"] - silence - 1000 * u.end_s) <= 150
    assert any(isinstance(o, StartResponse) for o in orders)
