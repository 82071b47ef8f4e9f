"""The source tutorial's code, kept as written, so the lab can show each bug next to its fix.

Nothing here is used by labkit itself. Each piece names its fault and the labkit piece that fixes it;
the notebooks and tests run both side by side.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect   # module level: FastAPI resolves annotations
from fastapi.responses import StreamingResponse
from openai import OpenAI

from .config import LOCAL_API_KEY

__all__ = ["TutorialConnectionManager", "tutorial_tokens_per_second", "TutorialVADConfig", "TutorialVAD",
           "TutorialVADFixedClock", "create_tutorial_app", "tutorial_parallel_completions"]


class TutorialConnectionManager:
    """The tutorial's ``ConnectionManager``.

    Faults: ``broadcast`` stops at the first dead connection (the rest never get the message) and
    waits for each client in turn; ``disconnect`` raises ``ValueError`` when called twice.
    Fixed in :class:`labkit.server.connections.ConnectionManager`.
    """

    def __init__(self):
        self.active_connections: List = []

    async def connect(self, websocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket):
        self.active_connections.remove(websocket)

    async def send_message(self, message: str, websocket):
        await websocket.send_text(message)

    async def broadcast(self, message: str):
        for connection in self.active_connections:
            await connection.send_text(message)


def tutorial_tokens_per_second(chunks: list[str], start: float, end: float) -> float:
    """The tutorial's throughput: chunks counted as tokens, divided by the *total* time.

    The total includes the time to first token, so this is not the decode rate; chapter 06 shows
    how far off it is. Fixed in ``labkit.latency``.
    """
    return len(chunks) / (end - start)


@dataclass
class TutorialVADConfig:
    """The tutorial's ``VADConfig``, unchanged."""

    threshold: float = 0.02             # RMS energy threshold (tune per environment)
    min_speech_duration_ms: int = 200   # Ignore speech shorter than this (filters coughs)
    min_silence_duration_ms: int = 500  # Wait this long before declaring "speech ended"
    sample_rate: int = 16000            # 16kHz is standard for speech recognition


class TutorialVAD:
    """The tutorial's ``VoiceActivityDetector.process_chunk``, line for line.

    Faults, each shown in ``tests/test_vad.py`` and chapter 04:

    * its clock is ``len(speech_buffer) * len(chunk)``: the buffer grows only during speech, so
      during silence time stands still, the measured silence stays 0 ms, and **speech never ends**
      (and the buffer grows without bound as later speech keeps being appended);
    * it keeps no audio from before the chunk that crossed the threshold, so the start of every
      utterance is clipped;
    * it reports ``speech_active`` on every loud chunk but never a start event with a time.

    Fixed in :class:`labkit.vad.VoiceActivityDetector`.
    """

    def __init__(self, config: TutorialVADConfig = None):
        self.config = config or TutorialVADConfig()
        self.is_speaking = False
        self.silence_start = None
        self.speech_start = None
        self.speech_buffer = []

    def process_chunk(self, audio_chunk: bytes) -> Optional[dict]:
        audio = np.frombuffer(audio_chunk, dtype=np.int16)
        rms = np.sqrt(np.mean(audio.astype(np.float32) ** 2)) / 32768
        current_time_ms = len(self.speech_buffer) * len(audio_chunk) * 1000 / (
            self.config.sample_rate * 2  # 2 bytes per sample
        )
        if rms > self.config.threshold:
            if not self.is_speaking:
                self.speech_start = current_time_ms
            self.is_speaking = True
            self.silence_start = None
            self.speech_buffer.append(audio_chunk)
            return {"type": "speech_active", "rms": rms}
        else:
            if self.is_speaking:
                if self.silence_start is None:
                    self.silence_start = current_time_ms
                silence_duration = current_time_ms - self.silence_start
                if silence_duration >= self.config.min_silence_duration_ms:
                    speech_duration = current_time_ms - self.speech_start
                    if speech_duration >= self.config.min_speech_duration_ms:
                        audio_data = b"".join(self.speech_buffer)
                        self.speech_buffer = []
                        self.is_speaking = False
                        return {"type": "speech_end", "audio": audio_data, "duration_ms": speech_duration}
                    self.speech_buffer = []
                    self.is_speaking = False
        return None


class TutorialVADFixedClock(TutorialVAD):
    """The tutorial's detector with only its clock fixed (a sample counter), to isolate that bug.

    It now ends speech, but still clips utterance starts (no prefix audio) and emits no start.
    """

    def __init__(self, config: TutorialVADConfig = None):
        super().__init__(config)
        self.samples_seen = 0

    def process_chunk(self, audio_chunk: bytes) -> Optional[dict]:
        audio = np.frombuffer(audio_chunk, dtype=np.int16)
        current_time_ms = self.samples_seen * 1000 / self.config.sample_rate
        self.samples_seen += audio.size
        rms = np.sqrt(np.mean(audio.astype(np.float32) ** 2)) / 32768
        if rms > self.config.threshold:
            if not self.is_speaking:
                self.speech_start = current_time_ms
            self.is_speaking = True
            self.silence_start = None
            self.speech_buffer.append(audio_chunk)
            return {"type": "speech_active", "rms": rms, "time_ms": current_time_ms}
        if self.is_speaking:
            if self.silence_start is None:
                self.silence_start = current_time_ms
            if current_time_ms - self.silence_start >= self.config.min_silence_duration_ms:
                speech_duration = self.silence_start - self.speech_start
                audio_data = b"".join(self.speech_buffer)
                self.speech_buffer, self.is_speaking = [], False
                if speech_duration >= self.config.min_speech_duration_ms:
                    return {"type": "speech_end", "audio": audio_data, "duration_ms": speech_duration,
                            "start_ms": self.speech_start, "end_ms": self.silence_start, "time_ms": current_time_ms}
        return None


def create_tutorial_app(upstream_base_url: str, api_key: str = LOCAL_API_KEY, model: str = "gpt-4o-mini"):
    """The tutorial's SSE server, as written: a *synchronous* OpenAI client inside an async endpoint.

    ``for chunk in stream`` blocks while it waits for each chunk from the model, and while it
    blocks, the event loop serves nobody else: with many users, everyone's first token waits behind
    everyone else's reads. The ``await asyncio.sleep(0)`` after each token does not help: the time is
    lost *inside* the blocking read. Fixed in :mod:`labkit.server.chat` (``AsyncOpenAI``). Chapter 06
    measures the difference.
    """
    app = FastAPI(title="the tutorial's SSE server (blocking)")
    client = OpenAI(base_url=upstream_base_url, api_key=api_key)

    async def generate_sse_stream(messages: list):
        stream = client.chat.completions.create(model=model, messages=messages, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                token = chunk.choices[0].delta.content
                data = json.dumps({"token": token})
                yield f"data: {data}\n\n"
                await asyncio.sleep(0)
        yield f"data: {json.dumps({'done': True})}\n\n"

    @app.post("/api/chat/stream")
    async def stream_chat(request: Request):
        body = await request.json()
        messages = body.get("messages", [])
        return StreamingResponse(generate_sse_stream(messages), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "Connection": "keep-alive",
                                          "X-Accel-Buffering": "no"})

    _add_tutorial_progressive(app, client, model)
    _add_tutorial_rooms(app, client, model)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    return app


def _add_tutorial_progressive(app: FastAPI, client: OpenAI, model: str) -> None:
    """The tutorial's ``/ws/chat/progressive`` (``ProgressiveResponse``), as written.

    Faults: the typing indicator is switched *off* before the request is even sent, so during the
    wait for the first token (the one wait a user notices) nothing is shown; the "progress" stages are
    a fixed script (``sleep(0.1)``, then 0.2, then 0.4) unrelated to the real work; the synchronous
    client blocks the event loop, so the typing task could not have sent anything meanwhile anyway;
    the ``except`` sends ``str(e)`` to the user, and a disconnect ends in an error send that raises
    again. Fixed in :mod:`labkit.server.chat` (``/ws/chat/progressive``). Chapter 07 measures the gap.
    """

    class ProgressiveResponse:
        def __init__(self, websocket: WebSocket):
            self.websocket = websocket
            self.is_typing = False
            self.typing_task = None

        async def start_typing(self):
            self.is_typing = True

            async def send_typing():
                while self.is_typing:
                    await self.websocket.send_json({"type": "typing", "status": True})
                    await asyncio.sleep(2)

            self.typing_task = asyncio.create_task(send_typing())

        async def stop_typing(self):
            self.is_typing = False
            if self.typing_task:
                self.typing_task.cancel()
                try:
                    await self.typing_task
                except asyncio.CancelledError:
                    pass

        async def send_token(self, token: str, index: int):
            await self.websocket.send_json({"type": "token", "content": token, "index": index,
                                            "timestamp": time.time()})

        async def send_progress(self, stage: str, progress: float, message: str = ""):
            await self.websocket.send_json({"type": "progress", "stage": stage, "progress": progress,
                                            "message": message})

    @app.websocket("/ws/chat/progressive")
    async def progressive_chat(websocket: WebSocket):
        await websocket.accept()
        responder = ProgressiveResponse(websocket)
        try:
            while True:
                data = await websocket.receive_text()
                message = json.loads(data)
                await responder.start_typing()
                await responder.send_progress("thinking", 0.2, "Understanding your question...")
                await asyncio.sleep(0.1)
                await responder.send_progress("generating", 0.4, "Formulating response...")
                await responder.stop_typing()
                stream = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": message["content"]}], stream=True)
                token_index = 0
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        await responder.send_token(chunk.choices[0].delta.content, token_index)
                        token_index += 1
                await responder.send_progress("complete", 1.0, "Done!")
                await websocket.send_json({"type": "complete", "total_tokens": token_index})
        except Exception as e:
            await responder.stop_typing()
            try:
                await websocket.send_json({"type": "error", "message": str(e)})
            except Exception:
                pass       # (added: the tutorial's send raises again when the client is gone)


def _add_tutorial_rooms(app: FastAPI, client: OpenAI, model: str) -> None:
    """The tutorial's ``CollaborativeChat`` and ``/ws/room/{room_id}``, as written.

    Faults: the AI reply streams from a synchronous client inside the event loop, so while the AI
    answers in one room, the whole server is frozen: nobody can join, and no message is read, in any
    room; ``broadcast`` awaits each member in turn, so one slow member delays everyone; a message
    that arrives while ``ai_responding`` is set is never answered; room ids are not checked, and a
    disconnect that is not a clean ``WebSocketDisconnect`` leaves a dead member in the room.
    Fixed in :mod:`labkit.server.rooms`. Chapter 08 measures the freeze.
    """

    @dataclass
    class Room:
        id: str
        participants: set = field(default_factory=set)
        conversation: list = field(default_factory=list)
        ai_responding: bool = False

    class CollaborativeChat:
        def __init__(self):
            self.rooms: Dict[str, Room] = {}

        def get_or_create_room(self, room_id: str) -> Room:
            if room_id not in self.rooms:
                self.rooms[room_id] = Room(id=room_id)
            return self.rooms[room_id]

        async def join_room(self, room_id: str, websocket: WebSocket):
            room = self.get_or_create_room(room_id)
            room.participants.add(websocket)
            await websocket.send_json({"type": "room_state", "conversation": room.conversation,
                                       "participants": len(room.participants)})
            await self.broadcast(room, {"type": "participant_joined", "count": len(room.participants)},
                                 exclude=websocket)

        async def leave_room(self, room_id: str, websocket: WebSocket):
            if room_id in self.rooms:
                room = self.rooms[room_id]
                room.participants.discard(websocket)
                await self.broadcast(room, {"type": "participant_left", "count": len(room.participants)})

        async def broadcast(self, room: Room, message: dict, exclude: WebSocket = None):
            for ws in room.participants:
                if ws != exclude:
                    try:
                        await ws.send_json(message)
                    except Exception:
                        pass

        async def handle_message(self, room_id: str, user_id: str, content: str):
            room = self.rooms[room_id]
            room.conversation.append({"role": "user", "user_id": user_id, "content": content})
            await self.broadcast(room, {"type": "user_message", "user_id": user_id, "content": content})
            if not room.ai_responding:
                room.ai_responding = True
                try:
                    await self.broadcast(room, {"type": "ai_typing", "status": True})
                    messages = [{"role": m["role"], "content": m["content"]} for m in room.conversation]
                    stream = client.chat.completions.create(model=model, messages=messages, stream=True)
                    ai_response = ""
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            token = chunk.choices[0].delta.content
                            ai_response += token
                            await self.broadcast(room, {"type": "ai_token", "content": token})
                    room.conversation.append({"role": "assistant", "content": ai_response})
                    await self.broadcast(room, {"type": "ai_complete", "content": ai_response})
                finally:
                    room.ai_responding = False
                    await self.broadcast(room, {"type": "ai_typing", "status": False})

    collab = CollaborativeChat()

    @app.websocket("/ws/room/{room_id}")
    async def room_websocket(websocket: WebSocket, room_id: str):
        await websocket.accept()
        await collab.join_room(room_id, websocket)
        try:
            while True:
                data = await websocket.receive_text()
                message = json.loads(data)
                await collab.handle_message(room_id, message.get("user_id", "anonymous"), message.get("content", ""))
        except WebSocketDisconnect:
            await collab.leave_room(room_id, websocket)


async def tutorial_parallel_completions(sync_client, prompts: list[str], model: str = "gpt-4o-mini",
                                        max_concurrent: int = 5) -> list[tuple[str, float]]:
    """The tutorial's ``parallel_completions``: a *synchronous* client run in the default thread pool.

    Each request holds a thread for its whole duration, and the default pool has only
    ``min(32, cpus + 4)`` threads (6 on a 2-core machine): raise ``max_concurrent`` and nothing gets
    faster. Returns ``(text, ttft_seconds)`` per prompt. Fixed in :func:`labkit.latency.load.parallel_completions`.
    """
    import time as _time

    semaphore = asyncio.Semaphore(max_concurrent)

    def stream_with_metrics(prompt: str) -> tuple[str, float]:
        start, first, tokens = _time.time(), None, []
        stream = sync_client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                     stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if first is None:
                    first = _time.time()
                tokens.append(chunk.choices[0].delta.content)
        return "".join(tokens), (first - start) if first else 0.0

    async def run_one(prompt: str):
        async with semaphore:
            loop = asyncio.get_event_loop()
            return await loop.run_in_executor(None, lambda: stream_with_metrics(prompt))

    return await asyncio.gather(*(run_one(p) for p in prompts))
