"""A Realtime API client for learners: what the source tutorial's ``RealtimeClient`` set out to do,
correct for current libraries.

* It connects with ``additional_headers=`` (``websockets`` >= 14 rejects the tutorial's ``extra_headers``).
* A background task receives *every* event into a queue and a timeline as soon as it arrives, so
  nothing is lost while your code is busy (the tutorial read events only when asked).
* Typed helpers send the client events; ``next_event`` / ``wait_for`` read them back.
* :class:`AudioPlayer` plays audio deltas through ``sounddevice`` when there is a speaker, or only
  captures them (CI), and always knows how much has been *heard*, so a barge-in can truncate the
  assistant's item at exactly that point.

Local by default (``RealtimeClient.local(server)``); ``RealtimeClient.openai()`` uses the real
service with ``OPENAI_API_KEY`` (never printed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time

import numpy as np
import websockets

from ..audio.devices import audio_status, import_sounddevice
from ..config import LOCAL_API_KEY

__all__ = ["RealtimeClient", "AudioPlayer", "RATE"]

RATE = 24_000


class RealtimeClient:
    def __init__(self, url: str, headers: dict[str, str], *, beta: bool = False):
        self.url, self._headers, self.beta = url, headers, beta
        self.ws = None
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.timeline: list[tuple[float, str, dict]] = []      # (seconds since connect, "in"/"out", event)
        self._reader: asyncio.Task | None = None
        self._t0 = 0.0

    # ---------------------------------------------------------------------------- construction
    @classmethod
    def local(cls, server, model: str = "gpt-realtime", *, beta: bool = False) -> "RealtimeClient":
        headers = {"Authorization": f"Bearer {LOCAL_API_KEY}"}
        if beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        return cls(f"{server.ws_url}/v1/realtime?model={model}", headers, beta=beta)

    @classmethod
    def openai(cls, model: str = "gpt-realtime", *, beta: bool = False) -> "RealtimeClient":
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise RuntimeError("OPENAI_API_KEY is not set; use RealtimeClient.local(server) for the lab's emulator")
        base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").replace("https://", "wss://", 1)
        headers = {"Authorization": f"Bearer {key}"}
        if beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        return cls(f"{base}/realtime?model={model}", headers, beta=beta)

    def __repr__(self) -> str:           # never shows the key
        return f"<RealtimeClient {self.url} {'beta' if self.beta else 'GA'}>"

    # ---------------------------------------------------------------------------- connection
    async def connect(self) -> dict:
        """Open the WebSocket and return ``session.created``."""
        self.ws = await websockets.connect(self.url, additional_headers=self._headers, max_size=None)
        self._t0 = time.perf_counter()
        self._reader = asyncio.ensure_future(self._read())
        return await self.wait_for("session.created")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                event = json.loads(raw)
                self.timeline.append((self.elapsed(), "in", event))
                self.queue.put_nowait(event)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.queue.put_nowait({"type": "_closed"})

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader

    async def __aenter__(self) -> "RealtimeClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---------------------------------------------------------------------------- sending
    async def send(self, event: dict) -> None:
        self.timeline.append((self.elapsed(), "out", event))
        await self.ws.send(json.dumps(event))

    async def update_session(self, **session) -> dict:
        """``session.update`` (GA shape unless ``beta``); returns ``session.updated`` or raises on ``error``."""
        if not self.beta:
            session.setdefault("type", "realtime")
        await self.send({"type": "session.update", "session": session})
        event = await self.wait_for("session.updated", "error")
        if event["type"] == "error":
            raise RuntimeError(f"session.update refused: {event['error']['message']}")
        return event

    async def send_text(self, text: str, *, respond: bool = True, **response) -> None:
        await self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        if respond:
            await self.send({"type": "response.create", **({"response": response} if response else {})})

    async def send_audio(self, pcm: np.ndarray | bytes) -> None:
        """Append PCM16 mono 24 kHz audio to the input buffer."""
        data = pcm if isinstance(pcm, (bytes, bytearray)) else np.asarray(pcm, dtype="<i2").tobytes()
        await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})

    async def stream_input(self, source) -> int:
        """Send every chunk of an :class:`~labkit.audio.AudioSource` (a microphone from ``open_input``, or a
        file at real-time pace) as it arrives; returns the number of samples sent. The source must be 24 kHz."""
        if source.sample_rate != RATE:
            raise ValueError(f"the Realtime API takes {RATE} Hz audio; open the source with sample_rate={RATE}")
        sent = 0
        async for chunk in source:
            await self.send_audio(chunk)
            sent += len(chunk)
        return sent

    async def commit(self) -> None:
        await self.send({"type": "input_audio_buffer.commit"})

    async def cancel(self, response_id: str | None = None) -> None:
        await self.send({"type": "response.cancel", **({"response_id": response_id} if response_id else {})})

    async def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        await self.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": content_index,
                         "audio_end_ms": int(audio_end_ms)})

    # ---------------------------------------------------------------------------- receiving
    async def next_event(self, timeout: float = 30.0) -> dict:
        event = await asyncio.wait_for(self.queue.get(), timeout)
        if event["type"] == "_closed":
            raise ConnectionError("the Realtime connection closed")
        return event

    async def wait_for(self, *types: str, timeout: float = 30.0) -> dict:
        """The next event of one of ``types`` (the ones before it stay in ``timeline``)."""
        deadline = time.perf_counter() + timeout
        while True:
            event = await self.next_event(max(0.01, deadline - time.perf_counter()))
            if event["type"] in types:
                return event

    async def events(self, until: str = "response.done", timeout: float = 30.0):
        """Yield events up to and including the first of type ``until``."""
        while True:
            event = await self.next_event(timeout)
            yield event
            if event["type"] == until:
                return


class AudioPlayer:
    """Plays (or, without a speaker, only captures) the assistant's audio and tracks what was heard.

    ``feed()`` the audio deltas; ``heard_ms()`` is how much has played, by the clock, since the first
    delta (never more than was received); ``stop()`` ends playback, as on a barge-in, and returns that.
    """

    def __init__(self, rate: int = RATE, *, use_speaker: bool | None = None):
        self.rate = rate
        self.use_speaker = audio_status().has_output if use_speaker is None else use_speaker
        self.chunks: list[np.ndarray] = []
        self.received = 0
        self._started: float | None = None
        self._stopped_at: float | None = None
        self._stream = None

    def feed(self, delta_b64: str) -> None:
        pcm = np.frombuffer(base64.b64decode(delta_b64), dtype="<i2")
        if self._started is None:
            self._started = time.perf_counter()
            if self.use_speaker:
                sd = import_sounddevice()
                self._stream = sd.OutputStream(samplerate=self.rate, channels=1, dtype="int16")
                self._stream.start()
        if self._stopped_at is None:
            self.chunks.append(pcm)
            self.received += pcm.size
            if self._stream is not None:
                self._stream.write(pcm.reshape(-1, 1))

    def heard_ms(self) -> int:
        if self._started is None:
            return 0
        now = self._stopped_at if self._stopped_at is not None else time.perf_counter()
        return int(min(1000 * (now - self._started), 1000 * self.received / self.rate))

    def stop(self) -> int:
        if self._stopped_at is None:
            self._stopped_at = time.perf_counter()
            if self._stream is not None:
                self._stream.abort()
                self._stream.close()
        return self.heard_ms()

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
