"""Hardening, bad frames: each is an error event (or a 400), never a dropped connection or a wedged
session. The reproductions of the audit, against a real server."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from labkit.realtime.validate import validate_server_event

DEEP = "[" * 100_000 + "]" * 100_000                  # RecursionError in json.loads
DEEP_OBJECT = '{"type": "session.update", "session": ' + '{"a": ' * 5_000 + "1" + "}" * 5_001


class Realtime:
    """A /v1/realtime client that checks every server event against the SDK's own models."""

    def __init__(self, ws):
        self.ws, self.events = ws, []

    async def send(self, event) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))

    async def recv(self) -> dict:
        raw = await self.ws.recv()
        validate_server_event(raw)                       # strict: fields, types and literals of the GA protocol
        event = json.loads(raw)
        self.events.append(event)
        return event

    async def until(self, kind: str) -> dict:
        while True:
            event = await self.recv()
            if event["type"] == kind:
                return event

    async def error_for(self, event: dict | str) -> dict:
        """Send ``event`` with an event_id and return the error event answering it."""
        if isinstance(event, dict):
            event = {**event, "event_id": "evt_probe"}
        await self.send(event)
        error = await self.until("error")
        if isinstance(event, dict):
            assert error["error"]["event_id"] == "evt_probe"
        return error["error"]

    async def text_turn(self, text: str = "Say hi.") -> dict:
        await self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        await self.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        return (await self.until("response.done"))["response"]


async def _realtime(server):
    ws = await websockets.connect(server.ws_url + "/v1/realtime?model=gpt-realtime", max_size=None)
    rt = Realtime(ws)
    await rt.until("session.created")
    await rt.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                         "audio": {"input": {"turn_detection": None}}}})
    await rt.until("session.updated")
    return rt


@pytest.mark.parametrize("frame, code", [
    ({"type": {}}, "invalid_type"), ({"type": []}, "invalid_type"), ({"type": 5}, "invalid_type"),
    ({"event_id": "x"}, "invalid_type"), (DEEP, "invalid_json"), (DEEP_OBJECT, "invalid_json"),
    ({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": []}}}}}, "invalid_value"),
    ({"type": "response.create", "response": {"audio": "loud"}}, "invalid_type"),
    ({"type": "response.create", "response": {"audio": {"output": []}}}, "invalid_type"),
    ({"type": "response.create", "response": {"max_output_tokens": "abc"}}, "invalid_type"),
    ({"type": "response.create", "response": {"instructions": 123}}, "invalid_type"),
    ({"type": "response.create", "response": {"output_modalities": "text"}}, "invalid_type"),
    ({"type": "response.create", "response": {"voice": "nope"}}, "invalid_value"),
    ({"type": "conversation.item.create", "previous_item_id": 5, "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}, "invalid_type"),
    ({"type": "conversation.item.truncate", "item_id": "x", "content_index": "0", "audio_end_ms": 0}, "invalid_type"),
])
async def test_a_bad_realtime_frame_is_an_error_event_and_the_session_goes_on(server, frame, code):
    rt = await _realtime(server)
    async with rt.ws:
        error = await rt.error_for(frame)
        assert error["code"] == code and error["type"] == "invalid_request_error"
        # not wedged: the next turn completes
        assert (await rt.text_turn())["status"] == "completed"


async def test_a_rejected_response_create_starts_nothing(server):
    rt = await _realtime(server)
    async with rt.ws:
        for bad in ({"max_output_tokens": "abc"}, {"instructions": 123}, {"max_output_tokens": 0}):
            await rt.error_for({"type": "response.create", "response": bad})
        assert not [e for e in rt.events if e["type"].startswith("response.")]      # no response was begun
        first, second = await rt.text_turn(), await rt.text_turn()
        assert first["status"] == second["status"] == "completed"


async def test_cancelling_after_deleting_the_replys_item(server):
    rt = await _realtime(server)
    async with rt.ws:
        await rt.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a long story."}]}})
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"], "max_output_tokens": 4096}})
        created = await rt.until("response.created")
        item_id = (await rt.until("response.output_item.added"))["item"]["id"]
        await rt.send({"type": "conversation.item.delete", "item_id": item_id})
        await rt.until("conversation.item.deleted")
        await rt.send({"type": "response.cancel"})
        done = await rt.until("response.done")
        assert done["response"]["id"] == created["response"]["id"]
        assert done["response"]["status"] in ("cancelled", "completed")
        assert (await rt.text_turn())["status"] == "completed"


async def test_a_failure_inside_generation_sends_a_clear_message_not_python_text(server, monkeypatch):
    from labkit.server import realtime as adapter

    async def broken(*args, **kwargs):
        raise KeyError("nope")
    monkeypatch.setattr(adapter, "plan_reply", broken)
    rt = await _realtime(server)
    async with rt.ws:
        await rt.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
        await rt.send({"type": "response.create"})
        error = (await rt.until("error"))["error"]
        done = (await rt.until("response.done"))["response"]
        assert done["status"] == "failed"
        assert "KeyError" not in error["message"] and "nope" not in error["message"]
        assert error["message"] == "The server had an error while generating this response."
        monkeypatch.undo()
        assert (await rt.text_turn())["status"] == "completed"        # the slot was released


async def test_an_over_long_realtime_conversation_gets_context_length_exceeded(server):
    rt = await _realtime(server)
    async with rt.ws:
        words = "word " * 80_000                                       # 400,000 characters, ~80,000 tokens
        for _ in range(2):
            await rt.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": words}]}})
            await rt.until("conversation.item.done")
        await rt.send({"type": "response.create"})
        error = (await rt.until("error"))["error"]
        done = (await rt.until("response.done"))["response"]
        assert error["code"] == "context_length_exceeded" and "maximum context length is 128000" in error["message"]
        assert done["status"] == "failed"
        error = await rt.error_for({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 600_000}]}})
        assert error["code"] == "invalid_value" and error["param"] == "item.content"
        for item in [e["item"]["id"] for e in rt.events if e["type"] == "conversation.item.done"
                     and e["item"]["role"] == "user"]:
            await rt.send({"type": "conversation.item.delete", "item_id": item})
        assert (await rt.text_turn())["status"] == "completed"


async def test_deep_json_on_ws_chat_and_rooms_is_an_error_message(server):
    for path in ("/ws/chat", "/ws/room/lab?name=ann"):
        async with websockets.connect(server.ws_url + path, max_size=None) as ws:
            if "room" in path:
                assert json.loads(await ws.recv())["type"] == "room_state"
            await ws.send(DEEP)
            error = json.loads(await ws.recv())
            while error["type"] != "error":
                error = json.loads(await ws.recv())
            assert error["code"] == "invalid_json", path
            await ws.send('{"type": "ping"}')
            reply = json.loads(await ws.recv())
            while reply["type"] != "pong":
                reply = json.loads(await ws.recv())
    async with websockets.connect(server.ws_url + "/ws/chat") as ws:
        for frame in ({"type": {}}, {"type": []}, {"type": "message", "content": {"a": 1}}):
            await ws.send(json.dumps(frame))
            assert json.loads(await ws.recv())["type"] == "error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat", "/api/chat/stream", "/api/chat/streams",
                                  "/api/login", "/lab/admin/model"])
async def test_deep_json_in_an_http_body_is_a_400_and_the_connection_lives(server, path):
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post(path, content=DEEP, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text[:200]
        assert r.json()["error"]["message"]
        assert "Recursion" not in r.text
        # the same keep-alive connection serves the next request
        assert (await client.get("/health")).status_code == 200
        assert r.headers.get("connection") != "close"
