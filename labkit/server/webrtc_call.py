"""One WebRTC call of ``POST /v1/realtime/calls`` (:mod:`labkit.server.webrtc`): its peer connection
(aiortc), the answer-audio track, and the tasks that move audio and events.

Kept apart from the routes because aiortc and PyAV take about half a second to import: the server
imports them when the first call is made, not at start-up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json

import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from ..audio.pcm import StreamResampler
from ..realtime.playout import OutputPlayout
from ..realtime.session import SAMPLE_RATE
from .realtime import SessionDriver
from .state import ModelServerConfig
from .tasks import TaskSet

__all__ = ["WebRTCCall", "OutputTrack", "FRAME_MS", "CONNECT_TIMEOUT_S"]

FRAME_MS = 20
CONNECT_TIMEOUT_S = 30.0         # a call whose peer never connects is closed after this


class OutputTrack(MediaStreamTrack):
    """The answer-audio track: one 20 ms frame per tick, in real time, from an :class:`OutputPlayout`.

    aiortc pulls frames with ``recv()`` as fast as it gets them, so the pace is set here (as aiortc's
    own ``AudioStreamTrack`` does), against the event loop's clock. ``notify`` gets each frame's notices."""

    kind = "audio"

    def __init__(self, playout: OutputPlayout, notify):
        super().__init__()
        self.playout, self.notify = playout, notify
        self._start: float | None = None
        self._sent = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._sent / SAMPLE_RATE - loop.time()))
        pcm, notices = self.playout.next_frame()
        frame = AudioFrame(format="s16", layout="mono", samples=pcm.size)
        frame.planes[0].update(pcm.astype("<i2").tobytes())
        frame.pts, frame.sample_rate = self._sent, SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += pcm.size
        if notices:
            self.notify(notices)
        return frame


class WebRTCCall:
    """One WebRTC call: the peer connection, the driver of its session, and the tasks that move audio."""

    def __init__(self, call_id: str, session, profile, config: ModelServerConfig):
        self.id, self.session = call_id, session
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = None
        self.playout = OutputPlayout(SAMPLE_RATE, FRAME_MS)
        self.driver = SessionDriver(self._send_events, session, profile, config)
        self.output = OutputTrack(self.playout, self._on_notices)
        self.tasks = TaskSet()
        self.on_closed = lambda: None
        self._closed = False

        @self.pc.on("datachannel")
        def on_datachannel(channel):
            if channel.label != "oai-events" or self.channel is not None:
                return
            self.channel = channel
            inbox: asyncio.Queue = asyncio.Queue()         # one reader: client events keep their order
            channel.on("message", inbox.put_nowait)
            self.tasks.spawn(self._read_client_events(inbox))

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self.tasks.spawn(self._pump_input(track))

        @self.pc.on("connectionstatechange")
        async def on_state():
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    async def answer(self, offer: str) -> str:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as e:                        # aiortc raises several kinds for an unusable offer
            raise ValueError(str(e) or type(e).__name__) from None
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise ValueError("the offer has no audio media section")
        self.pc.addTrack(self.output)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.tasks.spawn(self._expire_unconnected())
        return self.pc.localDescription.sdp

    async def _expire_unconnected(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self.pc.connectionState != "connected":
            await self.close()

    # ------------------------------------------------------------------ server events out
    async def _send_events(self, events: list[dict]) -> None:
        out = []
        for event in events:
            kind = event["type"]
            if kind in ("response.output_audio.delta", "response.audio.delta"):   # goes out on the track
                self.playout.push(event["response_id"], event["item_id"],
                                  np.frombuffer(base64.b64decode(event["delta"]), dtype="<i2"))
                continue
            if kind == "response.done":
                self.playout.finish(event["response"]["id"])
            out.append(event)
            if kind == "input_audio_buffer.speech_started":
                td = self.session.config.turn_detection
                if td is not None and td.interrupt_response:
                    out += self._cut()                 # barge-in: stop playback where it is
        self._send(out)

    def _send(self, events: list[dict]) -> None:
        if self.channel is None or self.channel.readyState != "open":
            return
        for event in events:
            self.channel.send(json.dumps(event))

    def _on_notices(self, notices) -> None:
        self._send([self.session.output_buffer_event(kind, response_id) for kind, response_id in notices])

    def _cut(self) -> list[dict]:
        """Stop the answer being played: ``output_audio_buffer.cleared`` and the item truncated at the
        played position (its response, if still running, is cancelled by the truncation)."""
        cut = self.playout.clear()
        if cut is None:
            return []
        events = [self.session.output_buffer_event("cleared", cut.response_id)]
        truncated, orders = self.session.receive(json.dumps({
            "type": "conversation.item.truncate", "item_id": cut.item_id, "content_index": 0,
            "audio_end_ms": cut.played_ms}))
        self.driver.carry_out(orders)
        return events + [e for e in truncated if e["type"] != "error"]

    # ------------------------------------------------------------------ client events and audio in
    async def _read_client_events(self, inbox: asyncio.Queue) -> None:
        await self.driver.emit(self.session.opened())
        while True:
            await self._on_client_event(await inbox.get())

    async def _on_client_event(self, message) -> None:
        raw = message if isinstance(message, str) else bytes(message)
        try:
            kind = json.loads(raw).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind == "output_audio_buffer.clear":       # WebRTC only: the server stops what it plays
            self._send(self._cut())
            return
        await self.driver.feed(raw)

    async def _pump_input(self, track) -> None:
        resampler: StreamResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
            if resampler is None:
                resampler = StreamResampler(frame.sample_rate, SAMPLE_RATE)
            pcm = resampler.process(mono.astype(np.int16))
            if pcm.size:
                events, orders = self.session.append_pcm(pcm.astype("<i2").tobytes())
                await self.driver.emit(events)
                self.driver.carry_out(orders)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.on_closed()
        await self.tasks.cancel(wait=False)
        await self.driver.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
