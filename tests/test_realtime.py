"""The Realtime emulator, driven by the official SDK (GA and beta) and by plain websockets.

Every server event a test receives is validated strictly against the SDK's own models."""

import asyncio
import base64
import json

import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from labkit.audio.pcm import resample
from labkit.realtime import validate_server_event
from labkit.speechdata import SAMPLE_RATE as SPEECH_RATE, load_clean

TEXT_TURN_GA = ["conversation.item.added", "conversation.item.done", "response.created", "response.output_item.added",
                "conversation.item.added", "response.content_part.added", "response.output_text.delta",
                "response.output_text.done", "response.content_part.done", "response.output_item.done",
                "conversation.item.done", "response.done"]


class Client:
    """A plain websockets client that validates everything it receives."""

    def __init__(self, ws, beta: bool):
        self.ws, self.beta, self.events = ws, beta, []

    @classmethod
    async def connect(cls, server, beta=False, model="gpt-realtime", **headers):
        hdrs = {"Authorization": "Bearer x", **headers}
        if beta:
            hdrs["OpenAI-Beta"] = "realtime=v1"
        ws = await websockets.connect(f"{server.ws_url}/v1/realtime?model={model}", additional_headers=hdrs,
                                      max_size=None)
        client = cls(ws, beta)
        assert (await client.recv())["type"] == "session.created"
        return client

    async def send(self, event: dict):
        await self.ws.send(json.dumps(event))

    async def recv(self, timeout=10) -> dict:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        validate_server_event(event, beta=self.beta)          # strict: raises on any schema violation
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout=20) -> list[dict]:
        got = []
        while True:
            event = await self.recv(timeout)
            got.append(event)
            if event["type"] == kind:
                return got

    async def close(self):
        await self.ws.close()


def speech_24k(seconds: float, start_s: float = 0.0) -> np.ndarray:
    clean, _ = load_clean()
    piece = clean[int(start_s * SPEECH_RATE): int((start_s + seconds) * SPEECH_RATE)]
    return resample(piece, SPEECH_RATE, 24_000)


def appends(audio: np.ndarray, chunk_ms: int = 100):
    n = 24_000 * chunk_ms // 1000
    for i in range(0, audio.size, n):
        yield {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio[i:i + n].tobytes()).decode()}


# ------------------------------------------------------------------------------------------ SDK, GA and beta

async def test_official_sdk_ga_text_turn(server):
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-any")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "What is SSE?"}]})
        await conn.response.create()
        kinds, text = [], ""
        async for event in conn:
            validate_server_event(event.model_dump(mode="json", exclude_unset=True))     # what arrived, strictly
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.done":
                assert event.response.status == "completed"
                assert event.response.output[0].content[0].text == text
                break
    assert kinds[0] == "session.created" and kinds[1] == "session.updated"
    deltas = kinds.count("response.output_text.delta")
    assert kinds[2:] == TEXT_TURN_GA[:6] + ["response.output_text.delta"] * deltas + TEXT_TURN_GA[7:]
    assert "SSE" in text or "Server-Sent" in text


async def test_official_sdk_beta_client_with_old_names(server):
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-any", websocket_base_url=server.ws_url + "/v1")
    async with client.beta.realtime.connect(model="gpt-4o-realtime-preview-2024-10-01") as conn:
        await conn.session.update(session={"modalities": ["text"], "voice": "alloy",
                                           "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}})
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "hello"}]})
        await conn.response.create()
        kinds = []
        async for event in conn:
            validate_server_event(event.model_dump(mode="json", exclude_unset=True), beta=True)
            kinds.append(event.type)
            if event.type == "session.updated":
                assert event.session.modalities == ["text"] and event.session.turn_detection.silence_duration_ms == 400
            if event.type == "response.done":
                break
    assert "response.text.delta" in kinds and "conversation.item.created" in kinds
    assert "response.output_text.delta" not in kinds and "conversation.item.done" not in kinds


async def test_every_event_validates_in_both_dialects(server):
    for beta in (False, True):
        c = await Client.connect(server, beta=beta)
        session = {"modalities": ["text", "audio"]} if beta else {"type": "realtime", "output_modalities": ["audio"]}
        await c.send({"type": "session.update", "session": session})
        await c.recv()
        await c.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me about latency."}]}})
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
        kinds = [e["type"] for e in events]
        audio = "response.audio.delta" if beta else "response.output_audio.delta"
        transcript = "response.audio_transcript.delta" if beta else "response.output_audio_transcript.delta"
        assert kinds.count(audio) > 5 and kinds.count(transcript) > 5
        # each word's transcript delta comes before the audio that speaks it
        assert kinds.index(transcript) < kinds.index(audio)
        done = events[-1]["response"]
        full = "".join(e["delta"] for e in events if e["type"] == transcript)
        assert done["status"] == "completed" and done["output"][0]["content"][0]["transcript"] == full
        pcm = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == audio)
        assert len(pcm) / 2 / 24_000 > 2.0                      # seconds of real speech
        await c.close()


async def test_tutorial_style_client_and_the_extra_headers_error(server):
    url = f"{server.ws_url}/v1/realtime?model=gpt-4o-realtime-preview"
    with pytest.raises(TypeError, match="extra_headers"):
        await websockets.connect(url, extra_headers={"Authorization": "Bearer x", "OpenAI-Beta": "realtime=v1"})
    async with websockets.connect(url, additional_headers={"Authorization": "Bearer x",
                                                            "OpenAI-Beta": "realtime=v1"}) as ws:
        created = json.loads(await ws.recv())
        validate_server_event(created, beta=True)
        assert created["session"]["voice"] == "marin" and created["session"]["input_audio_format"] == "pcm16"


# ------------------------------------------------------------------------------------------ server VAD and audio

async def test_server_vad_times_match_the_labelled_speech(server):
    _, utterances = load_clean()
    c = await Client.connect(server)
    await c.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": False, "silence_duration_ms": 500, "prefix_padding_ms": 300}}}}})
    await c.recv()
    seconds = utterances[2].end_s + 1.0
    for event in appends(speech_24k(seconds)):
        await c.send(event)
    started, stopped = [], []
    while len(stopped) < 3:
        e = await c.recv()
        if e["type"] == "input_audio_buffer.speech_started":
            started.append(e)
        elif e["type"] == "input_audio_buffer.speech_stopped":
            stopped.append(e)
            assert e["item_id"] == started[-1]["item_id"]
    for u, s, e in zip(utterances, started, stopped):
        # OpenAI's definitions: start includes the prefix padding, end includes the silence wait
        assert abs(s["audio_start_ms"] - (1000 * u.start_s - 300)) <= 40, (u, s)
        # the default detector's band envelope keeps the score up ~80 ms after the voice stops
        assert abs(e["audio_end_ms"] - (1000 * u.end_s + 500)) <= 150, (u, e)
    kinds = [e["type"] for e in c.events]
    assert "input_audio_buffer.committed" in kinds and "response.created" not in kinds
    await c.close()


async def _audio_turn_with_transcription(server):
    c = await Client.connect(server)
    await c.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "gpt-4o-mini-transcribe"}}}}})
    await c.recv()
    _, utterances = load_clean()
    for event in appends(speech_24k(utterances[0].end_s + 0.8)):
        await c.send(event)
    events = await c.until("response.done", timeout=30)
    kinds = [e["type"] for e in events]
    i = kinds.index("input_audio_buffer.speech_stopped")
    assert kinds[i + 1: i + 4] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    assert "response.created" in kinds and events[-1]["response"]["status"] == "completed"
    outcome = next((e for e in c.events if e["type"] in ("conversation.item.input_audio_transcription.completed",
                                                          "conversation.item.input_audio_transcription.failed")), None)
    while outcome is None:
        e = await c.recv(timeout=60)         # recognition runs after the reply; a busy machine is slower
        if e["type"] in ("conversation.item.input_audio_transcription.completed",
                         "conversation.item.input_audio_transcription.failed"):
            outcome = e
    await c.close()
    return outcome, utterances[0].text


async def test_audio_turn_is_transcribed_offline(server):
    from labkit.audio._sphinx import normalise

    outcome, said = await _audio_turn_with_transcription(server)
    assert outcome["type"].endswith("completed"), outcome
    heard, truth = normalise(outcome["transcript"]).split(), normalise(said).split()
    # decoded incrementally while spoken (issue 18): 5 of these 8 words ('that token arrived often two hundred
    # milliseconds'); decoded whole with the batch mean it heard 6. WER on the 20 sessions' utterances: 0.224 vs 0.192
    assert len(set(heard) & set(truth)) >= 0.6 * len(truth), (heard, truth)


async def test_without_a_recogniser_transcription_fails_clearly(server, monkeypatch):
    from labkit.audio import asr

    async def unavailable(audio, rate, **_):      # the server passes session= (fair scheduling)
        raise asr.ASRUnavailable("offline speech recognition is not installed: pip install pocketsphinx")

    monkeypatch.setattr(asr, "transcribe_async", unavailable)
    outcome, _ = await _audio_turn_with_transcription(server)
    assert outcome["type"].endswith("failed") and "pocketsphinx" in outcome["error"]["message"]


async def test_manual_commit_when_turn_detection_is_off(server):
    c = await Client.connect(server)
    await c.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    assert (await c.recv())["session"]["audio"]["input"]["turn_detection"] is None
    for event in appends(speech_24k(1.5, start_s=1.0)):
        await c.send(event)
    await c.send({"type": "input_audio_buffer.commit", "event_id": "evt_commit"})
    await c.until("input_audio_buffer.committed")
    assert not any(e["type"].startswith("input_audio_buffer.speech") for e in c.events)
    await c.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"
    await c.close()


async def test_barge_in_cancels_the_response(make_server):
    server = make_server(time_scale=1.0)
    c = await Client.connect(server)
    await c.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me about rooms."}]}})
    await c.send({"type": "response.create"})
    await c.until("response.output_audio.delta")
    for event in appends(speech_24k(1.5, start_s=1.0)):         # the user starts talking over the answer
        await c.send(event)
    events = await c.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "turn_detected"
    kinds = [e["type"] for e in events]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
    assert "response.output_audio.done" in kinds and "response.output_item.done" in kinds
    assert done["output"][0]["status"] == "incomplete"
    await asyncio.sleep(0.3)                                     # nothing more of the cancelled response
    await c.send({"type": "input_audio_buffer.clear"})
    while (e := await c.recv())["type"] != "input_audio_buffer.cleared":
        assert e.get("response_id") != done["id"]
    await c.close()


async def test_cancel_and_truncate(make_server):
    server = make_server(time_scale=1.0)
    c = await Client.connect(server)
    await c.send({"type": "response.cancel", "event_id": "evt_1"})
    err = await c.recv()
    assert err["error"]["code"] == "response_cancel_not_active" and err["error"]["event_id"] == "evt_1"
    await c.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is VAD?"}]}})
    await c.send({"type": "response.create"})
    heard_ms = 0.0                    # cancelled once a second of audio has arrived (not after a second of
    while heard_ms < 1000:            # wall time, which a busy machine may fill with less than the 600 ms cut)
        event = await c.recv()
        assert event["type"] != "response.done", "the answer ended before a second of its audio arrived"
        if event["type"] == "response.output_audio.delta":
            heard_ms += len(base64.b64decode(event["delta"])) / 48     # 24 kHz, 16-bit mono: 48 bytes a ms
    await c.send({"type": "response.cancel"})
    events = await c.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    item_id = done["output"][0]["id"]
    heard = done["output"][0]["content"][0]["transcript"]
    await c.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 600})
    truncated = await c.until("conversation.item.truncated")
    assert truncated[-1]["audio_end_ms"] == 600
    await c.send({"type": "conversation.item.retrieve", "item_id": item_id})
    item = (await c.until("conversation.item.retrieved"))[-1]["item"]
    shorter = item["content"][0]["transcript"]
    assert heard.startswith(shorter) and 0 < len(shorter) < len(heard)
    await c.close()


# ------------------------------------------------------------------------------------------ errors

BAD = [
    ("{not json", "invalid_json", None),
    ('{"type": "dance"}', "invalid_value", "type"),
    ('{"type": "input_audio_buffer.append"}', "missing_required_parameter", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "@@not base64@@"}', "invalid_value", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}), "invalid_value", "audio"),
    ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty", None),
    ('{"type": "conversation.item.create"}', "missing_required_parameter", "item"),
    ('{"type": "conversation.item.truncate", "item_id": "x"}', "missing_required_parameter", "content_index"),
    ('{"type": "conversation.item.delete", "item_id": "nope"}', "item_not_found", "item_id"),
    ('{"type": "session.update", "session": {"modalities": ["text"]}}', "missing_required_parameter", "session.type"),
    ('{"type": "session.update", "session": {"type": "realtime", "modalities": ["text"]}}', "unknown_parameter",
     "session.modalities"),
    ('{"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "robot"}}}}',
     "invalid_value", "session.audio.output.voice"),
    ('{"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}',
     "invalid_value", "session.audio.input.format"),
    ('{"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": '
     '{"type": "server_vad", "threshold": 1.5}}}}}', "invalid_value", "session.audio.input.turn_detection.threshold"),
]


async def test_bad_input_gets_an_error_and_the_connection_stays_open(server):
    c = await Client.connect(server)
    for frame, code, param in BAD:
        await c.ws.send(frame.replace('{"type"', '{"event_id": "evt_bad", "type"', 1) if frame.startswith('{"type"') else frame)
        err = await c.recv()
        assert err["type"] == "error" and err["error"]["code"] == code and err["error"]["param"] == param, frame
        assert err["error"]["message"]
        if frame.startswith('{"type"'):
            assert err["error"]["event_id"] == "evt_bad"
    huge = "A" * (15 * 1024 * 1024 + 4)
    await c.send({"type": "input_audio_buffer.append", "audio": huge})
    assert (await c.recv())["error"]["param"] == "audio"
    # the session is unchanged by the refused updates
    await c.send({"type": "session.update", "session": {"type": "realtime"}})
    session = (await c.recv())["session"]
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["turn_detection"]["threshold"] == 0.5
    # and it still works
    await c.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    await c.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    await c.send({"type": "response.create"})
    events = await c.until("response.done")
    assert any(e["type"] == "error" and e["error"]["code"] == "conversation_already_has_active_response" for e in events)
    assert events[-1]["response"]["status"] == "completed"
    await c.close()


async def test_handshake_refusals(make_server):
    server = make_server(api_key="sk-lab-right")
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        await websockets.connect(f"{server.ws_url}/v1/realtime?model=gpt-realtime",
                                 additional_headers={"Authorization": "Bearer sk-wrong"})
    assert e.value.response.status_code == 401
    ok = await Client.connect(server, Authorization="Bearer sk-lab-right")
    await ok.close()
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        await websockets.connect(f"{server.ws_url}/v1/realtime?model=llama-9",
                                 additional_headers={"Authorization": "Bearer sk-lab-right"})
    assert e.value.response.status_code == 404


# ------------------------------------------------------------------------------------------ the learner's client

async def test_realtime_client_text_audio_and_barge_in_with_truncation(make_server):
    from labkit.realtime.client import AudioPlayer, RealtimeClient

    server = make_server(time_scale=1.0)
    async with RealtimeClient.local(server) as rt:
        assert "key" not in repr(rt)
        await rt.update_session(output_modalities=["text"])
        await rt.send_text("What is SSE?")
        text = "".join([e["delta"] async for e in rt.events() if e["type"] == "response.output_text.delta"])
        assert "Server-Sent" in text or "SSE" in text
        with pytest.raises(RuntimeError, match="voice"):
            await rt.update_session(audio={"output": {"voice": "robot"}})

        await rt.update_session(output_modalities=["audio"])
        await rt.send_text("Tell me about rooms.")
        player = AudioPlayer(use_speaker=False)
        item_id = None
        while player.received < RATE_HALF_SECOND:
            e = await rt.next_event()
            if e["type"] == "response.output_audio.delta":
                player.feed(e["delta"])
                item_id = e["item_id"]
        for k, chunk in enumerate(appends(speech_24k(1.2, start_s=1.0))):   # the user talks over it
            await rt.send(chunk)
        cancelled = await rt.wait_for("response.done")
        heard = player.stop()
        assert cancelled["response"]["status"] == "cancelled" and heard > 0
        await rt.truncate(item_id, heard)
        truncated = await rt.wait_for("conversation.item.truncated", "error")
        assert truncated["type"] == "conversation.item.truncated" and truncated["audio_end_ms"] == heard
        kinds = [e["type"] for _, way, e in rt.timeline if way == "in"]
        assert kinds[0] == "session.created" and "input_audio_buffer.speech_started" in kinds


RATE_HALF_SECOND = 12_000


async def test_failed_synthesis_is_an_error_never_silence(server, monkeypatch):
    from labkit.audio import tts

    def broken(*args, **kwargs):
        raise tts.TTSUnavailable("libespeak-ng could not be loaded: test")

    monkeypatch.setattr(tts, "synthesize_words", broken)
    c = await Client.connect(server)
    await c.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}})
    await c.send({"type": "response.create"})
    events = await c.until("response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert errors and "espeak" in errors[0]["error"]["message"]
    assert events[-1]["response"]["status"] == "failed"
    assert not any(e["type"] == "response.output_audio.delta" for e in events)
    await c.close()


async def test_stream_input_sends_a_source(server):
    from labkit.audio import ArraySource
    from labkit.realtime.client import RealtimeClient

    async with RealtimeClient.local(server) as rt:
        await rt.update_session(audio={"input": {"turn_detection": {"type": "server_vad", "create_response": False}}})
        sent = await rt.stream_input(ArraySource(speech_24k(4.8), sample_rate=24_000, realtime=False))
        assert sent >= 4.8 * 24_000
        stopped = await rt.wait_for("input_audio_buffer.speech_stopped")
        assert stopped["audio_end_ms"] > 0
        with pytest.raises(ValueError, match="24000"):
            await rt.stream_input(ArraySource(np.zeros(160, np.int16), sample_rate=16_000))
