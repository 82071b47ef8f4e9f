"""Third-party Realtime clients against the local emulator, unchanged: the official SDK with tools,
and the OpenAI Agents SDK's ``RealtimeRunner`` (text turn, voice turn from ``data/``, ``interrupt()``
while the answer plays, a function tool called during a voice turn). Every server event they
receive is validated strictly against the SDK's models; tool arguments against their schemas."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
from openai import AsyncOpenAI

from labkit.audio.pcm import resample
from labkit.realtime import validate_server_event
from labkit.speechdata import SAMPLE_RATE as SPEECH_RATE, load_clean

agents = pytest.importorskip("agents", reason="openai-agents is not installed")
agents.set_tracing_disabled(True)          # traces would go to OpenAI's servers

MEASUREMENT_TOOL = {"type": "function", "name": "lookup_measurement",
                    "description": "Look up a latency measurement the lab made, like time to first token.",
                    "parameters": {"type": "object", "required": ["metric"], "additionalProperties": False,
                                   "properties": {"metric": {"type": "string"}}}}


def utterance_24k(index: int, tail_s: float = 1.0) -> bytes:
    """One labelled utterance of data/speech (24 kHz PCM16), with silence after it to end the turn."""
    import numpy as np

    clean, utterances = load_clean()
    u = utterances[index]
    piece = clean[int((u.start_s - 0.3) * SPEECH_RATE): int(u.end_s * SPEECH_RATE)]
    audio = np.concatenate([resample(piece, SPEECH_RATE, 24_000), np.zeros(int(tail_s * 24_000), np.int16)])
    return audio.astype("<i2").tobytes()


async def test_official_sdk_realtime_with_a_tool_then_its_output(server):
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-any")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "tools": [MEASUREMENT_TOOL], "tool_choice": "auto"})
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What was the time to first token?"}]})
        await conn.response.create()
        seen, args = [], ""
        async for event in conn:
            validate_server_event(event.model_dump(mode="json", exclude_unset=True))
            seen.append(event.type)
            if event.type == "response.function_call_arguments.delta":
                args += event.delta
            if event.type == "response.done":
                break
        call = event.response.output[0]
        assert call.type == "function_call" and call.name == "lookup_measurement" and call.arguments == args
        jsonschema.validate(json.loads(args), MEASUREMENT_TOOL["parameters"])
        assert seen.index("response.function_call_arguments.delta") < seen.index("response.function_call_arguments.done")
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call.call_id,
                                                  "output": json.dumps({"p50_ms": 212})})
        await conn.response.create()
        async for event in conn:
            validate_server_event(event.model_dump(mode="json", exclude_unset=True))
            if event.type == "response.done":
                break
        text = event.response.output[0].content[0].text
        assert event.response.status == "completed" and "212" in text


# ------------------------------------------------------------------------------------------ Agents SDK

def _settings(**extra):
    return {"model_name": "gpt-realtime", **extra}


async def _session(server, agent, **settings):
    from agents.realtime import RealtimeRunner

    runner = RealtimeRunner(agent)
    return await runner.run(model_config={"url": f"{server.ws_url}/v1/realtime?model=gpt-realtime",
                                          "api_key": "sk-any", "initial_model_settings": _settings(**settings)})


async def _until(session, stop, raw: list, timeout: float = 30, got: list | None = None):
    """Session events until ``stop(event)`` (also appended to ``got``); every raw server event validated."""
    got = [] if got is None else got

    async def loop():
        async for event in session:
            if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                validate_server_event(event.data.data)
                raw.append(event.data.data)
            if event.type == "error":
                raise AssertionError(f"the session reported an error: {event.error}")
            got.append(event)
            if stop(event):
                return

    await asyncio.wait_for(loop(), timeout)
    return got


def _assistant_texts(events):
    """The assistant's words in the session's history, as its last ``history_updated`` event shows it."""
    history = next(e.history for e in reversed(events) if e.type == "history_updated")
    out = []
    for item in history:
        if getattr(item, "role", None) == "assistant":
            for part in item.content:
                text = getattr(part, "transcript", None) or getattr(part, "text", None)
                if text:
                    out.append(text)
    return out


async def test_agents_realtime_text_turn(server):
    from agents.realtime import RealtimeAgent

    raw, seen = [], []
    session = await _session(server, RealtimeAgent(name="lab", instructions="Be brief."),
                             output_modalities=["text"])
    async with session:
        await session.send_message("What is SSE?")
        await _until(session, lambda e: any(r["type"] == "response.done" for r in raw), raw, got=seen)
    assert next(e for e in raw if e["type"] == "response.done")["response"]["status"] == "completed"
    assert any("SSE" in t or "Server-Sent" in t for t in _assistant_texts(seen))


async def test_agents_realtime_voice_turn_from_data(server):
    from agents.realtime import RealtimeAgent

    raw, seen = [], []
    session = await _session(server, RealtimeAgent(name="lab", instructions="Be brief."))
    async with session:
        await session.send_audio(utterance_24k(1))
        await _until(session, lambda e: e.type == "audio_end", raw, timeout=60, got=seen)
        await _until(session, lambda e: e.type == "history_updated" and _assistant_texts([e]), raw, got=seen)
    kinds = [e["type"] for e in raw]
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.committed" in kinds
    assert sum(1 for e in seen if e.type == "audio") > 5                    # the spoken answer arrived
    assert _assistant_texts(seen)


async def test_agents_realtime_interrupt_while_the_answer_plays(make_server):
    from agents.realtime import RealtimeAgent

    server = make_server(time_scale=1.0)                   # the answer is spoken at the pace of speech
    raw, seen = [], []
    session = await _session(server, RealtimeAgent(name="lab", instructions="Explain at length."))
    async with session:
        await session.send_message("Tell me about rooms.")
        audio = []
        await _until(session, lambda e: e.type == "audio" and audio.append(e) is None and len(audio) >= 8, raw)
        await session.interrupt()                          # about 0.8 s of a longer answer has played
        await _until(session, lambda e: e.type == "raw_model_event" and e.data.type == "raw_server_event"
                     and e.data.data["type"] == "conversation.item.retrieved", raw, got=seen)
        spoken_after = len([e for e in raw if e["type"] == "response.output_audio.delta"])
        with pytest.raises(asyncio.TimeoutError):          # then nothing more of that answer, for a second
            await _until(session, lambda e: e.type == "raw_model_event" and e.data.type == "raw_server_event"
                         and e.data.data["type"].startswith("response."), raw, timeout=1.0, got=seen)
    done = next(e for e in raw if e["type"] == "response.done")["response"]
    truncated = next(e for e in raw if e["type"] == "conversation.item.truncated")
    assert done["status"] == "cancelled" and truncated["audio_end_ms"] > 0
    assert len([e for e in raw if e["type"] == "response.output_audio.delta"]) == spoken_after
    full = "".join(e["delta"] for e in raw if e["type"] == "response.output_audio_transcript.delta")
    heard = next(e for e in raw if e["type"] == "conversation.item.retrieved")["item"]["content"][0]["transcript"]
    assert heard and full.startswith(heard)
    from labkit.model import default_responder

    answers = default_responder().topic_for("Tell me about rooms.").answers
    assert any(a.startswith(full) and len(heard) < len(a) for a in answers)      # cut short of the whole answer
    assert _assistant_texts(seen)[-1] == heard                        # the history holds what was heard


async def test_agents_realtime_function_tool_in_a_voice_turn(server):
    from agents import function_tool
    from agents.realtime import RealtimeAgent

    calls = []

    @function_tool
    def lookup_measurement(metric: str) -> str:
        """Look up a latency measurement the lab made, like time to first token."""
        calls.append(metric)
        return json.dumps({"metric": metric, "p50_ms": 212})

    raw = []
    agent = RealtimeAgent(name="lab", instructions="Answer with measurements.", tools=[lookup_measurement])
    session = await _session(server, agent, input_audio_transcription={"model": "gpt-4o-mini-transcribe"})
    async with session:
        await session.send_audio(utterance_24k(0))         # "The first token arrived after two hundred milliseconds."
        events = await _until(session, lambda e: e.type == "audio_end", raw, timeout=90)
    assert calls and [e.type for e in events].count("tool_end") == 1
    call_done = next(e for e in raw if e["type"] == "response.function_call_arguments.done")
    jsonschema.validate(json.loads(call_done["arguments"]), MEASUREMENT_TOOL["parameters"])
    spoken = "".join(e["delta"] for e in raw if e["type"] == "response.output_audio_transcript.delta")
    assert "212" in spoken or "two hundred" in spoken.lower()
