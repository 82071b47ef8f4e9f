"""The source tutorial's code, kept as written, so the lab can show each bug next to its fix.

Nothing here is used by labkit itself. Each piece names its fault and the labkit piece that fixes it;
the notebooks and tests run both side by side.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from fastapi import FastAPI, Request                 # module level: FastAPI resolves annotations here
from fastapi.responses import StreamingResponse
from openai import OpenAI

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


def create_tutorial_app(upstream_base_url: str, api_key: str = "lab-local-key", model: str = "gpt-4o-mini"):
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

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    return app


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
