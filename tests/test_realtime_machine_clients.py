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


MEASUREMENT_TOOL = {"type": "function", "name": "lookup_measurement",
                    "description": "Look up a latency measurement the lab made, like time to first token.",
                    "parameters": {"type": "object", "required": ["metric"], "additionalProperties": False,
                                   "properties": {"metric": {"type": "string"}}}}


@pytest.mark.parametrize("beta", [False, True])
def test_a_function_call_then_the_answer_from_its_output(beta):
    from labkit.model import PROFILES, plan_completion

    s = RealtimeSession("gpt-realtime", beta=beta)
    session = {"tools": [MEASUREMENT_TOOL], "tool_choice": "auto"}
    feed(s, {"type": "session.update", "session": session if beta else {"type": "realtime", **session}})
    order = ask(s, "What was the time to first token?")
    (call,) = order.tool_calls
    assert call.name == "lookup_measurement"
    jsonschema.validate(json.loads(call.arguments), MEASUREMENT_TOOL["parameters"])
    events = []
    for piece in (call.arguments[:5], call.arguments[5:]):
        events += s.arguments_delta(order.response_id, 0, piece)
    events += s.finish_response(order.response_id, prompt_tokens=10, output_tokens=2)
    for e in events:
        validate_server_event(e, beta=beta)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.function_call_arguments.delta"] * 2 + ["response.function_call_arguments.done"]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["type"] == "function_call"
    assert done["output"][0]["arguments"] == call.arguments and done["output"][0]["call_id"] == call.id

    feed(s, {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": call.id,
                                                          "output": json.dumps({"ttft_ms": 212})}})
    _, (answer,) = feed(s, {"type": "response.create"})
    assert not answer.tool_calls and answer.messages[-1] == {"role": "tool", "tool_call_id": call.id,
                                                             "content": '{"ttft_ms": 212}'}
    text = plan_completion(answer.messages, PROFILES["instant"]).text
    assert "lookup_measurement" in text and "212" in text


def test_tool_choice_none_and_bad_tools():
    s = RealtimeSession("gpt-realtime")
    feed(s, {"type": "session.update", "session": {"type": "realtime", "tools": [MEASUREMENT_TOOL]}})
    assert ask(s, "What was the time to first token?", tool_choice="none").tool_calls == ()
    (err,), _ = feed(s, {"type": "session.update", "session": {"type": "realtime", "tools": [{"type": "web"}]}})
    assert err["error"]["param"] == "session.tools[0].type"
    (err,), _ = feed(s, {"type": "conversation.item.create", "item": {"type": "function_call_output"}})
    assert err["error"]["param"] == "item.call_id"


def test_with_tools_a_voice_answer_waits_for_the_transcript_before_deciding():
    import base64

    import numpy as np

    s = RealtimeSession("gpt-realtime")
    feed(s, {"type": "session.update", "session": {"type": "realtime", "tools": [MEASUREMENT_TOOL], "audio": {
        "input": {"transcription": {"model": "gpt-4o-mini-transcribe"}, "turn_detection": None}}}})
    feed(s, {"type": "input_audio_buffer.append", "audio": base64.b64encode(np.zeros(4800, "<i2").tobytes()).decode()})
    events, orders = feed(s, {"type": "input_audio_buffer.commit"})
    (transcription,) = orders
    events, orders = feed(s, {"type": "response.create"})
    assert [e["type"] for e in events] == ["response.created"] and orders == []
    events = s.transcription_done(transcription.item_id, "what was the time to first token", 0.5)
    for e in events:
        validate_server_event(e)
    assert "response.output_item.added" in [e["type"] for e in events]
    (order,) = s.take_orders()
    assert order.tool_calls[0].name == "lookup_measurement" and s.take_orders() == []
    # a response cancelled while it waits ends cleanly, with no output
    feed(s, {"type": "input_audio_buffer.append", "audio": base64.b64encode(np.zeros(4800, "<i2").tobytes()).decode()})
    s.finish_response(order.response_id)
    _, (second,) = feed(s, {"type": "input_audio_buffer.commit"})
    feed(s, {"type": "response.create"})
    events, orders = feed(s, {"type": "response.cancel"})
    assert events[-1]["response"]["status"] == "cancelled" and events[-1]["response"]["output"] == []
    assert s.transcription_done(second.item_id, "hello", 0.1)[-1]["type"].endswith("completed")
    assert s.take_orders() == []


def test_response_level_tools_override_the_session():
    s = RealtimeSession("gpt-realtime")
    plain = ask(s, "What was the time to first token?")
    assert plain.tool_calls == ()                          # no tools in the session
    s.finish_response(plain.response_id)
    order = ask(s, "What was the time to first token?", tools=[MEASUREMENT_TOOL],
                tool_choice={"type": "function", "name": "lookup_measurement"})
    assert [c.name for c in order.tool_calls] == ["lookup_measurement"]
    s.finish_response(order.response_id)
    feed(s, {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hi"}]}})
    (err,), orders = feed(s, {"type": "response.create", "response": {"tools": [MEASUREMENT_TOOL],
                                                                      "tool_choice": {"type": "function",
                                                                                      "name": "nope"}}})
    assert err["error"]["param"] == "response.tool_choice" and orders == [] and s.response is None
