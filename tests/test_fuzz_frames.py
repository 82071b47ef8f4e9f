"""10,000 generated frames each to ``/v1/realtime`` and ``/ws/chat`` (seeded, so a failure replays):
every answer is a valid event or a well-formed error, the connection stays open, and another
client's turn completes meanwhile."""

from __future__ import annotations

import asyncio
import base64
import json
import random

import pytest
import websockets

from labkit.realtime.validate import validate_server_event

SEED = 20_261_201
FRAMES = 10_000

REALTIME_TYPES = ["session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                  "input_audio_buffer.clear", "conversation.item.create", "conversation.item.delete",
                  "conversation.item.retrieve", "conversation.item.truncate", "response.create", "response.cancel",
                  "output_audio_buffer.clear", "transcription_session.update"]
# The fields each client event has (and a few it has not); values are drawn at random. Left out on
# purpose: audio output (speech synthesis would make this test minutes long), input transcription
# (the recogniser's CPU), and tools (their validation belongs to the tools work).
FIELDS = {
    "session.update": ["session"], "input_audio_buffer.append": ["audio"],
    "conversation.item.create": ["item", "previous_item_id"], "conversation.item.delete": ["item_id"],
    "conversation.item.retrieve": ["item_id"],
    "conversation.item.truncate": ["item_id", "content_index", "audio_end_ms"],
    "response.create": ["response"], "response.cancel": ["response_id"],
}
KEYS = ["type", "session", "audio", "input", "output", "format", "rate", "turn_detection", "threshold",
        "prefix_padding_ms", "silence_duration_ms", "create_response", "interrupt_response", "eagerness",
        "idle_timeout_ms", "voice", "speed", "instructions", "output_modalities", "modalities", "max_output_tokens",
        "max_response_output_tokens", "item", "role", "content", "text", "id", "noise_reduction", "tracing",
        "truncation", "model", "temperature", "metadata", "conversation", "x", ""]
STRINGS = ["", "realtime", "message", "user", "assistant", "system", "input_text", "output_text", "text",
           "server_vad", "semantic_vad", "low", "auto", "inf", "marin", "nope", "audio/pcm", "pcm16", "item_1",
           "resp_1", "near_field", "disabled", "\u0000", "\ud7ff" * 3, "x" * 300, "🙂"]


class Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.item_ids: list[str] = []

    def value(self, depth: int = 0):
        r = self.rng.random()
        if depth > 3 or r < 0.45:
            return self.rng.choice([None, True, False, 0, -1, 1, 2 ** 63, 3.5, -0.0, 1e308,
                                    self.rng.randint(-5, 5000), self.rng.choice(STRINGS),
                                    self.rng.choice(self.item_ids or ["item_x"])])
        if r < 0.65:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return {self.rng.choice(KEYS): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def realtime(self) -> str | bytes:
        r = self.rng.random()
        if r < 0.03:
            return self.rng.choice(["", "{", "nul", "[1,2", "{\"type\": \"session.update\"", "\"x\"", "42",
                                    "[" * 3000 + "]" * 3000, '{"a":' * 200 + "1" + "}" * 200])
        if r < 0.05:
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(0, 40)))
        if r < 0.08:
            return json.dumps(self.value())
        kind = self.rng.choice(REALTIME_TYPES + [None, {}, [], 5, "response.creat", "x" * 100])
        event: dict = {"type": kind}
        if self.rng.random() < 0.3:
            event["event_id"] = self.rng.choice(["evt_1", 5, None, {}, "e" * 40])
        for name in FIELDS.get(kind, []) if isinstance(kind, str) else []:
            if self.rng.random() < 0.8:
                event[name] = self.plausible(kind, name)
        if self.rng.random() < 0.1:
            event[self.rng.choice(KEYS)] = self.value()
        return json.dumps(event)

    def plausible(self, kind: str, name: str):
        """Half the time a value of the right shape (so the handlers run deep), else anything."""
        rng = self.rng
        if rng.random() < 0.5:
            return self.value()
        if name == "audio":
            return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 2, 64, 480])))).decode()
        if name == "item":
            role = rng.choice(["user", "system", "assistant", "tool", 5])
            part = rng.choice([{"type": "input_text", "text": rng.choice(STRINGS)},
                               {"type": "output_text", "text": "hi"}, {"type": "input_audio"}, "x", self.value()])
            item = {"type": rng.choice(["message", "message", "function_call", None]), "role": role,
                    "content": rng.choice([[part], [], part, None])}
            if rng.random() < 0.3:
                item["id"] = rng.choice(["item_a", "item_b", 7, "", "x" * 80])
            return item
        if name == "session":
            session = {"type": rng.choice(["realtime", "realtime", "transcription", None])}
            if rng.random() < 0.5:
                session["audio"] = {"input": {"turn_detection": rng.choice([
                    None, {"type": "server_vad"}, {"type": "semantic_vad", "eagerness": self.value()},
                    {"type": "server_vad", "threshold": self.value(), "silence_duration_ms": self.value()}]),
                    **({"format": self.value()} if rng.random() < 0.2 else {})}}
                if rng.random() < 0.3:
                    session["audio"]["output"] = {"voice": self.value(), "speed": self.value()}
            for key in ("instructions", "max_output_tokens", "tracing", "truncation"):
                if rng.random() < 0.2:
                    session[key] = self.value()
            if rng.random() < 0.2:
                session["output_modalities"] = ["text"]
            return session
        if name == "response":
            response = {}
            for key in ("instructions", "max_output_tokens", "audio", "voice", "metadata", "conversation"):
                if rng.random() < 0.25:
                    response[key] = self.value()
            if rng.random() < 0.3:
                response["output_modalities"] = rng.choice([["text"], "text", [], [5]])
            return response
        if name in ("item_id", "previous_item_id", "response_id"):
            return rng.choice(self.item_ids or ["item_x"])
        return self.value()

    def chat(self) -> str | bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            return rng.choice(["", "{", "[]", "null", "[" * 3000 + "]" * 3000, "\"ping\""])
        if r < 0.08:
            return json.dumps(self.value())
        kind = rng.choice(["message", "ping", "ping", "resume", "cancel", None, {}, [], 3, "x"])
        msg: dict = {"type": kind}
        if kind == "message" or rng.random() < 0.2:
            msg["content"] = rng.choice([rng.choice(STRINGS), "What is SSE?", None, 5, ["x"], "x" * 9000])
            for key in ("model", "max_tokens", "temperature", "seed"):
                if rng.random() < 0.2:
                    msg[key] = rng.choice([self.value(), "gpt-4o-mini", "instant", 3, 0.5])
            if rng.random() < 0.7:
                msg["max_tokens"] = rng.randint(1, 4)
                msg["model"] = "instant"
        if kind == "resume" or rng.random() < 0.1:
            msg["stream_id"] = rng.choice(["st_nope", 5, "", "x" * 100, None])
            msg["last_seq"] = self.value()
        return json.dumps(msg)


def _valid_chat_message(raw: str) -> bool:
    msg = json.loads(raw)
    shapes = {"ack": {"stream_id"}, "token": {"stream_id", "seq", "content", "t"},
              "complete": {"stream_id", "content", "tokens", "finish_reason"}, "error": {"code", "message"},
              "pong": set()}
    kind = msg.get("type")
    return kind in shapes and shapes[kind] <= set(msg) and all(isinstance(msg[k], str) for k in ("code", "message")
                                                              if kind == "error")


async def _bystander_realtime_turn(server) -> str:
    async with websockets.connect(server.ws_url + "/v1/realtime?model=gpt-realtime") as ws:
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
        await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "response.done":
                return event["response"]["status"]


async def _bystander_chat_turn(server) -> str:
    async with websockets.connect(server.ws_url + "/ws/chat") as ws:
        await ws.send(json.dumps({"type": "message", "content": "What is SSE?", "max_tokens": 5}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] in ("complete", "error"):
                return msg["type"]


async def _fuzz(url: str, frames: list, validate, sentinel: str, is_answer) -> list[str]:
    """Send every frame, read everything meanwhile; return the answers that were not valid."""
    bad: list[str] = []
    async with websockets.connect(url, max_size=None) as ws:
        done = asyncio.get_running_loop().create_future()

        async def read() -> None:
            async for raw in ws:
                try:
                    validate(raw)
                except Exception as e:                     # noqa: BLE001 - any failure is a finding
                    bad.append(f"{e!r:.300} <- {raw[:300]!r}")
                if is_answer(raw):
                    done.set_result(None)
                    return
        reader = asyncio.create_task(read())
        for i, frame in enumerate(frames):
            await ws.send(frame)
            if i % 500 == 0:
                await asyncio.sleep(0)                     # let the reader keep up
        await ws.send(sentinel)
        await asyncio.wait_for(done, 60)                   # answered in order: every frame before it was handled
        assert ws.close_code is None, f"the server closed the connection: {ws.close_code} {ws.close_reason}"
        reader.cancel()
    return bad


@pytest.mark.timeout(180)
async def test_fuzzed_realtime_frames(server):
    gen = Gen(SEED)
    frames = [gen.realtime() for _ in range(FRAMES)]
    setup = json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                              "audio": {"input": {"turn_detection": None}}}})
    sentinel = json.dumps({"type": "conversation.item.retrieve", "item_id": "sentinel", "event_id": "evt_sentinel"})

    def is_answer(raw) -> bool:
        event = json.loads(raw)
        return event["type"] == "error" and event["error"].get("event_id") == "evt_sentinel"
    fuzz = asyncio.create_task(_fuzz(server.ws_url + "/v1/realtime?model=gpt-realtime", [setup, *frames],
                                     validate_server_event, sentinel, is_answer))
    status = await asyncio.wait_for(_bystander_realtime_turn(server), 60)      # another client, meanwhile
    bad = await fuzz
    assert status == "completed"
    assert bad == [], f"{len(bad)} invalid events, e.g. {sorted(set(b.splitlines()[1] for b in bad))}"


@pytest.mark.timeout(180)
async def test_fuzzed_chat_frames(server):
    gen = Gen(SEED + 1)
    frames = [gen.chat() for _ in range(FRAMES)]

    def validate(raw) -> None:
        assert _valid_chat_message(raw), raw

    sentinel = json.dumps({"type": "sentinel-42"})

    def is_answer(raw) -> bool:
        msg = json.loads(raw)
        return msg["type"] == "error" and "sentinel-42" in msg["message"]
    fuzz = asyncio.create_task(_fuzz(server.ws_url + "/ws/chat", frames, validate, sentinel, is_answer))
    status = await asyncio.wait_for(_bystander_chat_turn(server), 60)         # another client, meanwhile
    bad = await fuzz
    assert status == "complete"
    assert bad == [], f"{len(bad)} invalid messages, e.g. {bad[:3]}"
