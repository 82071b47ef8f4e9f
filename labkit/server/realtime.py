"""``GET /v1/realtime`` (WebSocket): an offline emulator of OpenAI's Realtime API.

A thin adapter around :class:`labkit.realtime.machine.RealtimeSession`: it moves frames between
the socket and the state machine, and carries out the machine's work orders, which take time:

* **replies**: the simulated model's plan (same profiles as the chat API) gives the text and its
  timing; for audio, espeak-ng speaks the text once the first token is due, and the audio goes out in
  100 ms deltas at the pace of speech, each word's transcript delta just before its audio;
* **transcription**: offline recognition in a worker process (see :mod:`labkit.audio.asr`), streamed
  while the user speaks when the machine orders it (begin, audio, end, cancel), or a
  ``...transcription.failed`` event saying why not.

Speaks the GA protocol, or the beta one when the client sends ``OpenAI-Beta: realtime=v1``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from ..audio import asr
from ..audio.pacing import SpeechPace
from ..audio.pcm import resample
from ..audio.sentences import split_sentences
from ..audio.tts import ESPEAK_RATE, synthesize_words_async
from ..ephemeral import EphemeralKeys, KeyRefused, check_realtime_key, handshake_credentials
from ..model import UnknownModelError, plan_tool_calls, resolve_model
from ..protocol.openai_chat import error_body
from ..realtime.failures import response_failure, transcription_failure
from ..realtime.machine import (CancelResponse, RealtimeSession, StartResponse, StartTranscription, TranscriptionAudio,
                                TranscriptionBegin, TranscriptionCancel, TranscriptionEnd)
from ..realtime.session import ESPEAK_VOICE_FOR, SAMPLE_RATE
from ..realtime.speechout import speech_chunks, word_times_ms
from .planning import plan_reply
from .realtime_keys import create_key_routes
from .state import ModelServerConfig, ServerStats
from .tasks import TaskSet

__all__ = ["create_realtime_router", "open_session", "SessionRefused", "SessionDriver"]

AUDIO_CHUNK_MS = 100
log = logging.getLogger("labkit.server.realtime")


def create_realtime_router(config: ModelServerConfig, stats: ServerStats, keys: EphemeralKeys | None = None) -> APIRouter:
    router = APIRouter()
    keys = keys if keys is not None else EphemeralKeys()
    create_key_routes(router, config, keys)

    @router.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        # a browser sends its key and dialect as subprotocols (it cannot set headers): see labkit.ephemeral
        credentials = handshake_credentials(ws.headers, ws.scope.get("subprotocols", []))
        try:
            session, profile = open_session(credentials.key, credentials.beta, ws.query_params.get("model"),
                                            config, keys)
        except SessionRefused as e:
            await _deny(ws, e.status, e.body)
            return
        await ws.accept(subprotocol=credentials.subprotocol)
        stats.ws_connections += 1
        lock = asyncio.Lock()

        async def send(events: list[dict]) -> None:
            async with lock:                      # a batch (e.g. a cancellation's closing events) stays together
                for event in events:
                    await ws.send_text(json.dumps(event))

        connection = SessionDriver(send, session, profile, config)
        try:
            await connection.emit(session.opened())
            while True:
                try:
                    frame = await ws.receive()
                except WebSocketDisconnect:
                    break
                if frame["type"] == "websocket.disconnect":
                    break
                await connection.feed(frame.get("text") if frame.get("text") is not None else frame.get("bytes", b""))
        finally:
            await connection.close()
            stats.ws_connections -= 1

    return router


class SessionRefused(Exception):
    """A Realtime connection refused before it opens: HTTP ``status`` with an OpenAI error ``body``."""

    def __init__(self, status: int, body: dict):
        super().__init__(body["error"]["message"])
        self.status, self.body = status, body


def open_session(key: str | None, beta: bool, model: str | None, config: ModelServerConfig,
                 keys: EphemeralKeys) -> tuple[RealtimeSession, object]:
    """The checks every Realtime transport makes before it opens (the key, the model), and the session
    they open: an ephemeral key's preset session applied. Returns (session, model profile), or raises
    :class:`SessionRefused`. Shared by the WebSocket route and WebRTC's ``/v1/realtime/calls``."""
    try:
        minted = check_realtime_key(key, config.api_key, keys)
    except KeyRefused as e:
        raise SessionRefused(e.status, error_body(e.message, code=e.code)) from None
    preset = minted.session if minted is not None else {}
    model = model or preset.get("model") or "gpt-realtime"
    try:
        profile = resolve_model(model).scaled(config.time_scale)
    except UnknownModelError:
        raise SessionRefused(404, error_body(f"The model `{model}` does not exist.", param="model",
                                             code="model_not_found")) from None
    session = RealtimeSession(model, beta=beta)
    if minted is not None:                       # the session the key was minted for applies to this connection
        session.configure(minted.session, beta=minted.beta)
    return session, profile


async def _deny(ws: WebSocket, status: int, body: dict) -> None:
    """Refuse the handshake with an HTTP status, where the server supports it (else close 1008)."""
    try:
        await ws.send_denial_response(JSONResponse(body, status_code=status))
    except RuntimeError:
        await ws.close(code=1008)


class SessionDriver:
    """Drives one :class:`RealtimeSession` for any transport: feeds it client events, carries out its
    work orders (replies, transcriptions) and hands every server event batch to ``send_events``.

    The WebSocket route sends the batch as text frames; WebRTC (:mod:`labkit.server.webrtc`) sends it
    on the ``oai-events`` data channel and plays the audio deltas on its audio track instead."""

    def __init__(self, send_events, session: RealtimeSession, profile, config: ModelServerConfig):
        self.send_events, self.session, self.profile, self.config = send_events, session, profile, config
        self.reply: asyncio.Task | None = None
        self.tasks = TaskSet()
        self.streams: dict[str, object] = {}          # item id -> its asr.Stream (None: decoded whole at commit)

    async def emit(self, events: list[dict]) -> None:
        if events:
            await self.send_events(events)

    async def feed(self, raw: str | bytes) -> None:
        """One client event (a frame's text) in."""
        transcribing = self.session.config.transcription is not None
        events, orders = self.session.receive(raw)        # never raises: a bad frame is an error event
        await self.emit(events)
        self.carry_out(orders)
        if not transcribing and self.session.config.transcription is not None:
            asr.warm_up()                     # the recogniser's process starts now, not mid-turn

    def carry_out(self, orders: list) -> None:
        for order in orders:
            if isinstance(order, StartResponse):
                self.reply = self.tasks.spawn(self._generate(order))
            elif isinstance(order, CancelResponse):
                if self.reply is not None:
                    self.reply.cancel()
            elif isinstance(order, (StartTranscription, TranscriptionEnd)):
                self.tasks.spawn(self._transcribe(order, self.streams.pop(order.item_id, None)))
            elif isinstance(order, TranscriptionBegin):
                self.streams[order.item_id] = stream = asr.begin_stream(SAMPLE_RATE)
                if stream is not None:
                    stream.feed(order.audio)
            elif isinstance(order, TranscriptionAudio):
                if self.streams.get(order.item_id) is not None:
                    self.streams[order.item_id].feed(order.audio)
            elif isinstance(order, TranscriptionCancel):
                stream = self.streams.pop(order.item_id, None)
                if stream is not None:
                    stream.cancel()

    async def _generate(self, order: StartResponse) -> None:
        """Generate one reply. Every way out finishes the response (completed, cancelled or failed), so
        the session's response slot is always released and the next ``response.create`` works."""
        session, loop = self.session, asyncio.get_running_loop()
        start = loop.time()
        try:
            max_tokens = None if order.max_output_tokens == "inf" else int(order.max_output_tokens)
            if order.tool_calls:              # the machine decided to call functions: stream their arguments
                plan = plan_tool_calls(order.tool_calls, order.messages, self.profile)
            else:
                plan = await plan_reply(order.messages, self.profile, max_tokens)
            if plan.tool_calls:
                for token, due, k in zip(plan.tokens, plan.due_s, plan.call_of_token):
                    await asyncio.sleep(max(0.0, start + due - loop.time()))
                    await self.emit(session.arguments_delta(order.response_id, k, token))
            elif order.modalities == ("text",):
                for token, due in zip(plan.tokens, plan.due_s):
                    await asyncio.sleep(max(0.0, start + due - loop.time()))
                    await self.emit(session.text_delta(order.response_id, token))
            else:
                await asyncio.sleep(max(0.0, start + plan.ttft_s - loop.time()))
                await self._speak(order, plan.text)
            await self.emit(session.finish_response(order.response_id, prompt_tokens=plan.prompt_tokens,
                                                    output_tokens=plan.completion_tokens))
        except asyncio.CancelledError:
            pass                                  # the machine already closed the response
        except Exception as e:                    # which failure the client hears: labkit.realtime.failures
            failure = response_failure(e)
            if failure.unexpected:
                log.exception("realtime response %s failed", order.response_id)
            await self.emit(session.fail_response(order.response_id, failure.message, code=failure.code,
                                                  type=failure.type))

    async def _speak(self, order: StartResponse, text: str) -> None:
        """Speak ``text`` sentence by sentence: each sentence is synthesized (on the synthesiser's pool,
        taking turns with other sessions) while the one before it plays, so the first audio waits for
        the first sentence only."""
        voice, words_per_minute = ESPEAK_VOICE_FOR[order.voice], int(175 * order.speed)
        sentences = split_sentences(text)
        pace = SpeechPace(SAMPLE_RATE, self.config.time_scale)
        upcoming = asyncio.ensure_future(synthesize_words_async(sentences[0], voice, words_per_minute, id(self))) \
            if sentences else None
        try:
            for k in range(len(sentences)):
                audio22, words = await upcoming
                upcoming = (asyncio.ensure_future(synthesize_words_async(sentences[k + 1], voice, words_per_minute,
                                                                         id(self)))
                            if k + 1 < len(sentences) else None)
                await self._play(order, audio22, words, pace)
        finally:
            if upcoming is not None:
                upcoming.cancel()

    async def _play(self, order: StartResponse, audio22, words: list[tuple[str, int]], pace: SpeechPace) -> None:
        """One sentence's audio out in AUDIO_CHUNK_MS deltas at the pace of speech, each word's transcript
        delta just before the chunk its sound begins in."""
        audio = resample(audio22, ESPEAK_RATE, SAMPLE_RATE)
        offset_ms = pace.sent_ms                           # where this sentence starts in the reply
        loop = asyncio.get_running_loop()
        pace.resume(loop.time())
        for chunk in speech_chunks(audio.size, word_times_ms(words, ESPEAK_RATE), SAMPLE_RATE, AUDIO_CHUNK_MS):
            await asyncio.sleep(pace.delay(loop.time()))
            piece = audio[chunk.start:chunk.end]
            in_reply = tuple((text, offset_ms + ms) for text, ms in chunk.words)
            pace.sent(piece.size)
            await self.emit(self.session.speech_chunk(order.response_id, piece.astype("<i2").tobytes(), in_reply))

    async def _transcribe(self, order: StartTranscription | TranscriptionEnd, stream=None) -> None:
        t0 = time.perf_counter()
        try:
            text = await asr.transcribe_async(order.audio, SAMPLE_RATE, session=id(self), stream=stream)
        except Exception as e:                   # which message: labkit.realtime.failures
            message, unexpected = transcription_failure(e)
            if unexpected:
                log.exception("transcribing %s failed", order.item_id)
            await self.emit(self.session.transcription_failed(order.item_id, message))
        else:
            await self.emit(self.session.transcription_done(order.item_id, text, time.perf_counter() - t0))
        finally:
            if stream is not None and not stream.closed:
                stream.cancel()                  # not ended (the recogniser failed before): its decoder is freed
        self.carry_out(self.session.take_orders())    # a response that waited for this transcript starts now

    async def close(self) -> None:
        for stream in self.streams.values():
            if stream is not None:
                stream.cancel()
        self.streams.clear()
        await self.tasks.cancel()
