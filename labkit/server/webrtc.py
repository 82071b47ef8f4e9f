"""``POST /v1/realtime/calls`` (WebRTC): OpenAI's browser path to the Realtime API, emulated offline.

Signalling is one HTTP request: the client's SDP offer in (a raw ``application/sdp`` body with
``?model=``, or ``multipart/form-data`` with parts ``sdp`` and an optional ``session`` JSON, as the
official SDK's ``client.realtime.calls.create`` sends it), ``201`` with the SDP answer out and
``Location: /v1/realtime/calls/{call_id}``. ``POST /v1/realtime/calls/{call_id}/hangup`` ends it.
Authentication is the WebSocket's (:func:`labkit.server.realtime.open_session`): API key or ephemeral key.

The peer (aiortc) then carries:

* the ``oai-events`` data channel: the WebSocket protocol's JSON client and server events, driven by
  the same :class:`~labkit.server.realtime.SessionDriver` and :class:`RealtimeSession` machine, except
  that answer audio is not sent as ``response.output_audio.delta`` events (as on OpenAI's WebRTC);
* microphone audio in, Opus, decoded by aiortc (48 kHz), resampled to 24 kHz with soxr, appended to
  the machine's input buffer, where server VAD runs;
* answer audio out, an Opus track paced in real time by :class:`OutputTrack`, whose bookkeeping
  (:class:`labkit.realtime.playout.OutputPlayout`) produces ``output_audio_buffer.started/stopped``;
  a barge-in or the client's ``output_audio_buffer.clear`` stops playback, sends
  ``output_audio_buffer.cleared`` and truncates the answer where playback really was.

ICE: no STUN/TURN servers (everything is on one machine or one LAN): host candidates only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import logging
import secrets

import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..audio.pcm import StreamResampler
from ..ephemeral import EphemeralKeys, KeyRefused, check_realtime_key, handshake_credentials
from ..protocol.openai_chat import error_body
from ..realtime.playout import OutputPlayout
from ..realtime.session import SAMPLE_RATE, RealtimeError
from .realtime import SessionDriver, SessionRefused, open_session
from .state import ModelServerConfig

__all__ = ["create_webrtc_router", "WebRTCCalls", "OutputTrack", "FRAME_MS", "CONNECT_TIMEOUT_S"]

FRAME_MS = 20
CONNECT_TIMEOUT_S = 30.0         # a call whose peer never connects is closed after this
log = logging.getLogger(__name__)


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, param=param, code=code), status_code=status)


class WebRTCCalls(dict):
    """The open calls by id; :meth:`aclose` hangs them all up (the server's shutdown)."""

    async def aclose(self) -> None:
        for call in list(self.values()):
            await call.close()
        self.clear()


def create_webrtc_router(config: ModelServerConfig, keys: EphemeralKeys, calls: WebRTCCalls | None = None) -> APIRouter:
    router = APIRouter()
    calls = calls if calls is not None else WebRTCCalls()

    @router.post("/v1/realtime/calls")
    async def create_call(request: Request):
        credentials = handshake_credentials(request.headers, [])
        offer, preset, problem = await _read_offer(request)
        if problem is not None:
            return problem
        model = request.query_params.get("model") or (preset or {}).get("model")
        try:
            session, profile = open_session(credentials.key, credentials.beta, model, config, keys)
            if preset is not None:
                session.configure(preset, beta=credentials.beta)
        except SessionRefused as e:
            return JSONResponse(e.body, status_code=e.status)
        except RealtimeError as e:
            return _error(400, e.message, param=e.param, code=e.code)
        call = _Call("rtc_" + secrets.token_hex(12), session, profile, config)
        try:
            answer = await call.answer(offer)
        except ValueError as e:                       # aiortc could not use the offer
            await call.close()
            return _error(400, f"Invalid SDP offer: {e}", param="sdp", code="invalid_offer")
        calls[call.id] = call
        call.on_closed = lambda: calls.pop(call.id, None)
        return Response(answer, status_code=201, media_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.id}"})

    @router.post("/v1/realtime/calls/{call_id}/hangup")
    async def hangup(call_id: str, request: Request):
        try:
            check_realtime_key(handshake_credentials(request.headers, []).key, config.api_key, keys)
        except KeyRefused as e:
            return _error(e.status, e.message, code=e.code)
        call = calls.pop(call_id, None)
        if call is None:
            return _error(404, f"Call '{call_id}' not found.", param="call_id", code="call_not_found")
        await call.close()
        return Response(status_code=200)

    return router


async def _read_offer(request: Request) -> tuple[str, dict | None, JSONResponse | None]:
    """(offer SDP, session JSON or None, None) — or an OpenAI error response as the third item."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    preset = None
    if kind == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as e:                        # a malformed multipart body
            return "", None, _error(400, f"Could not parse the multipart body: {e}")
        sdp = form.get("sdp")
        raw_session = form.get("session")
        sdp = (await sdp.read()).decode("utf-8", "replace") if hasattr(sdp, "read") else sdp
        if raw_session is not None:
            raw_session = (await raw_session.read()) if hasattr(raw_session, "read") else raw_session
            try:
                preset = json.loads(raw_session)
            except ValueError:
                return "", None, _error(400, "The 'session' part is not valid JSON.", param="session")
            if not isinstance(preset, dict):
                return "", None, _error(400, "Invalid type for 'session': expected an object.", param="session")
    elif kind == "application/sdp":
        sdp = (await request.body()).decode("utf-8", "replace")
    else:
        return "", None, _error(400, "Send the SDP offer as 'application/sdp', or as the 'sdp' part of a "
                                     "'multipart/form-data' body.", param="sdp")
    if not sdp or not sdp.strip():
        return "", None, _error(400, "Missing required parameter: 'sdp'.", param="sdp",
                                code="missing_required_parameter")
    if not sdp.lstrip().startswith("v=0") or "\nm=audio " not in sdp.replace("\r\n", "\n"):
        return "", None, _error(400, "Invalid SDP offer: expected a session description (v=0) with an audio "
                                     "media section (m=audio).", param="sdp", code="invalid_offer")
    return sdp, preset, None


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


class _Call:
    """One WebRTC call: the peer connection, the driver of its session, and the tasks that move audio."""

    def __init__(self, call_id: str, session, profile, config: ModelServerConfig):
        self.id, self.session = call_id, session
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = None
        self.playout = OutputPlayout(SAMPLE_RATE, FRAME_MS)
        self.driver = SessionDriver(self._send_events, session, profile, config)
        self.output = OutputTrack(self.playout, self._on_notices)
        self.tasks: set[asyncio.Task] = set()
        self.on_closed = lambda: None
        self._closed = False

        @self.pc.on("datachannel")
        def on_datachannel(channel):
            if channel.label != "oai-events" or self.channel is not None:
                return
            self.channel = channel
            inbox: asyncio.Queue = asyncio.Queue()         # one reader: client events keep their order
            channel.on("message", inbox.put_nowait)
            self._spawn(self._read_client_events(inbox))

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self._spawn(self._pump_input(track))

        @self.pc.on("connectionstatechange")
        async def on_state():
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def answer(self, offer: str) -> str:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as e:                        # aiortc raises several kinds for an unusable offer
            raise ValueError(str(e) or type(e).__name__) from None
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise ValueError("the offer has no audio media section")
        self.pc.addTrack(self.output)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._spawn(self._expire_unconnected())
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
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        await self.driver.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
