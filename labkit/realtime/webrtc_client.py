"""A WebRTC client for the Realtime API (aiortc), for notebooks and tests: what a browser does, in Python.

It makes the offer a browser makes (one audio track, the microphone; one data channel,
``oai-events``), sends it to ``POST /v1/realtime/calls`` and applies the answer. Then:

* :meth:`WebRTCRealtimeClient.say` plays PCM (24 kHz int16) into the microphone track, in real time,
  silence otherwise (a microphone never stops sending);
* :meth:`send` / :meth:`wait_for` carry the JSON events on the data channel, all of which are kept
  in ``events`` with their arrival time;
* every frame of the answer track is kept in ``received`` as (arrival time, RTP-clock position in
  ms, samples at 24 kHz), so a test can measure what arrived when (stalls, late audio, loss).

``signal`` swaps how the offer is sent: by default a raw ``application/sdp`` POST with ``httpx``;
a test can pass one using the official SDK's ``client.realtime.calls.create``. ``rewrite_offer`` /
``rewrite_answer`` let an experiment route the connection through a UDP relay (:mod:`labkit.netem`).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections import deque
from typing import Awaitable, Callable

import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from ..audio.pcm import StreamResampler

__all__ = ["WebRTCRealtimeClient", "MicrophoneTrack", "RATE", "http_signal"]

RATE = 24_000
FRAME = RATE // 50                      # 20 ms

Signal = Callable[[str], Awaitable[tuple[str, str]]]     # offer SDP -> (answer SDP, call id)


class MicrophoneTrack(MediaStreamTrack):
    """A fake microphone: queued PCM at real-time pace, then silence, 20 ms per frame."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._pending = np.zeros(0, np.int16)
        self._start: float | None = None
        self._started_at: float | None = None     # perf_counter() of the first frame
        self._sent = 0
        self._queued = 0                           # samples queued so far, ever
        self.drained = asyncio.Event()
        self.drained.set()

    def say(self, pcm: np.ndarray) -> int:
        """Queue ``pcm``; returns the stream sample where it will begin (on the input stream's clock,
        if the microphone has been sending since the call began)."""
        pcm = np.asarray(pcm, dtype=np.int16)
        begin = max(self._queued, self._sent)
        self._queued = begin + pcm.size
        self._queue.append(pcm)
        self.drained.clear()
        return begin

    def time_of_sample(self, sample: int) -> float | None:
        """perf_counter() time at which stream ``sample`` was (or will be) sent."""
        return None if self._started_at is None else self._started_at + sample / RATE

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start, self._started_at = loop.time(), time.perf_counter()
        else:
            await asyncio.sleep(max(0.0, self._start + self._sent / RATE - loop.time()))
        while self._pending.size < FRAME and self._queue:
            self._pending = np.concatenate([self._pending, self._queue.popleft()])
        out = np.zeros(FRAME, np.int16)
        take = min(FRAME, self._pending.size)
        out[:take], self._pending = self._pending[:take], self._pending[take:]
        if not self._pending.size and not self._queue:
            self.drained.set()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(out.astype("<i2").tobytes())
        frame.pts, frame.sample_rate, frame.time_base = self._sent, RATE, fractions.Fraction(1, RATE)
        self._sent += FRAME
        return frame


def http_signal(base_url: str, api_key: str | None, model: str = "gpt-realtime") -> Signal:
    """Send the offer as OpenAI's browser clients do: raw ``application/sdp``, ``Authorization: Bearer``."""
    async def signal(offer: str) -> tuple[str, str]:
        headers = {"Content-Type": "application/sdp"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            r = await http.post("/v1/realtime/calls", params={"model": model}, content=offer, headers=headers)
        if r.status_code != 201:
            raise RuntimeError(f"/v1/realtime/calls answered {r.status_code}: {r.text}")
        return r.text, r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    return signal


class WebRTCRealtimeClient:
    def __init__(self, base_url: str, api_key: str | None = None, *, model: str = "gpt-realtime",
                 signal: Signal | None = None, rewrite_answer: Callable[[str], str] | None = None,
                 rewrite_offer: Callable[[str], str] | None = None):
        self.base_url, self._api_key = base_url.rstrip("/"), api_key
        self.signal = signal or http_signal(self.base_url, api_key, model)
        self.rewrite_answer, self.rewrite_offer = rewrite_answer, rewrite_offer
        self.pc: RTCPeerConnection | None = None
        self.channel = None
        self.microphone = MicrophoneTrack()
        self.call_id: str | None = None
        self.events: list[tuple[float, dict]] = []          # (perf_counter seconds, server event)
        self.received: list[tuple[float, int, np.ndarray]] = []   # (arrival s, RTP position ms, 24 kHz samples)
        self._changed = asyncio.Event()
        self._opened = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ connecting
    async def connect(self, timeout: float = 20.0) -> "WebRTCRealtimeClient":
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(self.microphone)
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("open", self._opened.set)
        self.channel.on("message", self._on_message)

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                task = asyncio.ensure_future(self._pump_answer(track))
                self._tasks.add(task)

        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        answer, self.call_id = await self.signal(self.rewrite_offer(offer) if self.rewrite_offer else offer)
        if self.rewrite_answer is not None:
            answer = self.rewrite_answer(answer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(self._opened.wait(), timeout)
        await self.wait_for("session.created", timeout)
        return self

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self, hangup: bool = True) -> None:
        if hangup and self.call_id is not None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            try:
                async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
                    await http.post(f"/v1/realtime/calls/{self.call_id}/hangup", headers=headers)
            except httpx.HTTPError:
                pass                                  # the server is gone: nothing left to hang up
        for task in self._tasks:
            task.cancel()
        self.microphone.stop()
        if self.pc is not None:
            await self.pc.close()

    # ------------------------------------------------------------------ events
    def _on_message(self, message) -> None:
        self.events.append((time.perf_counter(), json.loads(message)))
        self._changed.set()

    def send(self, event: dict) -> None:
        self.channel.send(json.dumps(event))

    def update_session(self, **session) -> None:
        self.send({"type": "session.update", "session": {"type": "realtime", **session}})

    def of_type(self, kind: str) -> list[dict]:
        return [e for _, e in self.events if e["type"] == kind]

    async def wait_for(self, kind: str, timeout: float = 30.0, count: int = 1,
                       where: Callable[[dict], bool] = lambda e: True) -> dict:
        """The ``count``-th server event of type ``kind`` (matching ``where``), waiting for it."""
        async def found():
            while True:
                hits = [e for e in self.of_type(kind) if where(e)]
                if len(hits) >= count:
                    return hits[count - 1]
                self._changed.clear()
                await self._changed.wait()
        try:
            return await asyncio.wait_for(found(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no {kind!r} (x{count}) within {timeout} s; got "
                               f"{[e['type'] for _, e in self.events]}") from None

    # ------------------------------------------------------------------ audio
    def say(self, pcm: np.ndarray) -> int:
        """Speak ``pcm`` (int16, 24 kHz) into the microphone, after anything still queued; returns the
        input-stream sample where it begins."""
        return self.microphone.say(pcm)

    async def _pump_answer(self, track) -> None:
        resampler = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            at = time.perf_counter()
            samples = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            mono = samples.reshape(-1, channels).mean(axis=1).astype(np.int16) if channels > 1 else samples
            if resampler is None:
                resampler = StreamResampler(frame.sample_rate, RATE)
            position_ms = int(frame.pts * 1000 * frame.time_base) if frame.pts is not None else -1
            self.received.append((at, position_ms, resampler.process(mono)))
            self._changed.set()

    def answer_audio(self) -> np.ndarray:
        """Everything the answer track has delivered so far (24 kHz int16), silence included."""
        return np.concatenate([s for _, _, s in self.received]) if self.received else np.zeros(0, np.int16)
