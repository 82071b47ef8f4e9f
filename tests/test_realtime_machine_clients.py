"""The Realtime state machine, events in and events out (no socket): truncating a running answer,
presets from an ephemeral key, and function calls."""

from __future__ import annotations

import json

import jsonschema
import pytest

from labkit.realtime import validate_server_event
from labkit.realtime.machine import CancelResponse, RealtimeSession, StartResponse


def feed(session, frame: dict):
    events, orders = session.receive(json.dumps(frame))
    for e in events:
        validate_server_event(e, beta=session.beta)
    return events, orders


def ask(session, text: str, **response):
    feed(session, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    events, orders = feed(session, {"type": "response.create", **({"response": response} if response else {})})
    (order,) = orders
    assert isinstance(order, StartResponse)
    return order


def speak(session, order, words):
    """Feed words of an answer as the adapter does: each word's transcript, then 200 ms of its audio."""
    for k, word in enumerate(words):
        session.text_delta(order.response_id, word)
        session.audio_delta(order.response_id, b"\0\0" * 4800, [(word, 200 * k)])


def test_truncating_the_answer_while_it_is_still_generated():
    s = RealtimeSession("gpt-realtime")
    order = ask(s, "Tell me about rooms.")
    speak(s, order, ["Rooms ", "share ", "one ", "AI ", "reply."])       # 1000 ms generated so far
    events, orders = feed(s, {"type": "conversation.item.truncate", "item_id": order.item_id, "content_index": 0,
                              "audio_end_ms": 450})
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "conversation.item.truncated" and events[-1]["audio_end_ms"] == 450
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "cancelled" and done["output"][0]["status"] == "incomplete"
    assert orders == [CancelResponse(order.response_id)]                  # the rest is never generated
    assert s.text_delta(order.response_id, "more") == []
    (retrieved,), _ = feed(s, {"type": "conversation.item.retrieve", "item_id": order.item_id})
    assert retrieved["item"]["content"][0]["transcript"] == "Rooms share one "   # what was heard by 450 ms
    # and the conversation goes on
    assert ask(s, "And what is SSE?").messages[-2] == {"role": "assistant", "content": "Rooms share one "}


def test_truncating_a_running_answer_beyond_its_audio_is_refused_and_changes_nothing():
    s = RealtimeSession("gpt-realtime")
    order = ask(s, "Tell me about rooms.")
    speak(s, order, ["Rooms ", "share "])
    (err,), orders = feed(s, {"type": "conversation.item.truncate", "item_id": order.item_id, "content_index": 0,
                              "audio_end_ms": 401})
    assert err["error"]["param"] == "audio_end_ms" and orders == [] and s.response is not None
    text_order = ask(RealtimeSession("gpt-realtime"), "hi", output_modalities=["text"])
    assert text_order.modalities == ("text",)


def test_a_preset_session_applies_before_session_created():
    s = RealtimeSession("gpt-realtime")
    s.configure({"type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"]}, beta=False)
    (created,) = s.opened()
    assert created["event_id"] and created["session"]["instructions"] == "Be brief."
    beta = RealtimeSession("gpt-4o-realtime-preview", beta=True)
    beta.configure({"modalities": ["text"], "voice": "alloy"}, beta=True)
    assert beta.opened()[0]["session"]["voice"] == "alloy"
