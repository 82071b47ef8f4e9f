"""The Realtime session as a state machine: client events in, server events (and work orders) out.

Sans-I/O in the python-websockets way: :class:`RealtimeSession` never touches a socket, never
sleeps and never reads a clock. The WebSocket adapter (:mod:`labkit.server.realtime`) passes it each
client frame and returns what it produced; when a reply must be *generated* (which takes time), the
machine emits a :class:`StartResponse` work order, and the adapter feeds the results back through
:meth:`RealtimeSession.text_delta`, :meth:`RealtimeSession.audio_delta` and
:meth:`RealtimeSession.finish_response`, which produce the matching server events.

Time in audio events is the *input stream's own clock*: milliseconds of audio appended since the
session began, counted in samples, as OpenAI defines ``audio_start_ms`` / ``audio_end_ms``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import json
import random
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..protocol import safejson
from ..model.schema_values import UnsatisfiableSchema
from ..model.tools import ToolCall, ToolSpecError, decide_tool_calls, parse_tool_choice, parse_tools
from ..vad import SpeechEnd, SpeechStart, VADConfig
from .dialect import Dialect, dialect_for
from .inputaudio import InputAudio
from .params import parse_response_params
from .session import SAMPLE_RATE, TURN_END_CORRECTION_MS, RealtimeError, SessionConfig, threshold_to_vad

__all__ = ["RealtimeSession", "StartResponse", "CancelResponse", "StartTranscription", "TranscriptionBegin",
           "TranscriptionAudio", "TranscriptionEnd", "TranscriptionCancel", "MAX_APPEND_BYTES", "MAX_UTTERANCE_MS"]

log = logging.getLogger("labkit.realtime")

MAX_APPEND_BYTES = 15 * 1024 * 1024          # OpenAI's limit for one append's base64 payload
#: With server VAD, an utterance this long is committed even if it has not ended (see ``InputAudio``).
MAX_UTTERANCE_MS = 60_000
MIN_COMMIT_MS = 100
#: Text one item may carry, and the whole conversation (what a reply's prompt is built from): far
#: beyond any context window, but bounded, so memory and tokenizing time are too.
MAX_ITEM_CHARS = 512_000
MAX_CONVERSATION_CHARS = 2_000_000

_CLIENT_EVENTS = {"session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                  "input_audio_buffer.clear", "conversation.item.create", "conversation.item.delete",
                  "conversation.item.retrieve", "conversation.item.truncate", "response.create", "response.cancel",
                  "output_audio_buffer.clear", "transcription_session.update"}


@dataclass(frozen=True)
class StartResponse:
    """Work order: generate a reply to ``messages`` (chat format) and feed it back; when ``tool_calls``
    is set, the reply is those function calls, whose arguments are fed back with
    :meth:`RealtimeSession.arguments_delta` (``item_id`` is then the first call's item)."""
    response_id: str
    item_id: str
    messages: list
    modalities: tuple[str, ...]
    voice: str
    speed: float
    max_output_tokens: int | str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class CancelResponse:
    """Work order: stop generating ``response_id`` (its events are already finished)."""
    response_id: str


@dataclass(frozen=True)
class StartTranscription:
    """Work order: recognise ``audio`` (int16 at 24 kHz) for ``item_id``; feed back the text or a failure."""
    item_id: str
    audio: np.ndarray
    options: dict


@dataclass(frozen=True)
class TranscriptionBegin:
    """Work order: start recognising ``item_id`` while it is spoken (server VAD, transcription on), from
    ``audio``: int16 at 24 kHz from where its commit will start (prefix padding before the onset) to
    where the detector knew speech began. More follows in :class:`TranscriptionAudio`."""
    item_id: str
    audio: np.ndarray


@dataclass(frozen=True)
class TranscriptionAudio:
    """Work order: the next samples of ``item_id``'s streamed utterance. A commit that holds less than
    was streamed (a weak tail dated out of the turn: the commit ends at its new end plus the silence
    wait) cancels the stream and decodes the committed audio whole, so the transcript is of that audio."""
    item_id: str
    audio: np.ndarray


@dataclass(frozen=True)
class TranscriptionEnd:
    """Work order: ``item_id`` was committed; its streamed samples are exactly ``audio`` (kept for a
    whole-utterance decode if the stream was lost). Finish it and feed back the text or a failure."""
    item_id: str
    audio: np.ndarray
    options: dict


@dataclass(frozen=True)
class TranscriptionCancel:
    """Work order: drop ``item_id``'s streamed utterance (cleared, or it will not be committed as streamed)."""
    item_id: str


@dataclass
class _Streamed:
    """An utterance being streamed to the recogniser: input-clock samples ``[first, fed)`` were sent."""
    item_id: str
    first: int
    fed: int


@dataclass
class _Response:
    id: str
    item_id: str
    modalities: tuple[str, ...]
    voice: str
    max_output_tokens: int | str
    text: str = ""
    audio_samples: int = 0
    words: list = field(default_factory=list)     # (text, audio start ms) for truncation
    part_open: bool = False
    calls: list = field(default_factory=list)     # function_call items, when the reply is function calls
    instructions: str | None = None
    tools: tuple = ()
    tool_choice: str = "auto"
    parallel: bool = True
    waiting: bool = False                         # for the input's transcript before deciding on tools


def random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class RealtimeSession:
    def __init__(self, model: str, *, beta: bool = False, vad_frame_ms: int = 20,
                 max_utterance_ms: int = MAX_UTTERANCE_MS, ids: Callable[[str], str] | None = None,
                 dialect: Dialect | None = None):
        """``ids(prefix)`` makes every id (``sess``, ``item``, ``resp``); tests inject a counter so that
        whole event streams can be compared. By default ids are random, as OpenAI's are. The
        :class:`~labkit.realtime.dialect.Dialect` (GA, or beta when ``beta``) is chosen here, once."""
        self.dialect = dialect or dialect_for(beta)
        self._new_id = ids or random_id
        self.config = SessionConfig(id=self._new_id("sess"), model=model)
        self._event_ids = itertools.count(1)
        self.items: list[dict] = []                # the conversation, GA-shaped items
        self._vad_frame_ms, self._max_utterance_ms = vad_frame_ms, max_utterance_ms
        self.input = InputAudio(SAMPLE_RATE, self._vad_config())     # the input buffer and server VAD
        self._speech_item: str | None = None       # item id announced by speech_started
        self.response: _Response | None = None
        self.transcripts: dict[str, str] = {}
        self._transcribing: set[str] = set()       # user items whose transcription is under way
        self._streamed: _Streamed | None = None    # the utterance recognised while it is spoken
        self._ready_orders: list = []

    # -------------------------------------------------------------------------------- helpers
    def _event(self, ga_type: str, **fields) -> dict:
        return {"type": self.dialect.event_type(ga_type), "event_id": f"event_{next(self._event_ids):05d}", **fields}

    def error(self, err: RealtimeError, client_event_id: str | None = None) -> dict:
        return self._event("error", error={"type": err.type, "code": err.code, "message": err.message,
                                           "param": err.param, "event_id": client_event_id})

    @property
    def samples_in(self) -> int:
        """The input clock: all samples ever appended."""
        return self.input.samples_in

    def _vad_config(self) -> VADConfig | None:
        td = self.config.turn_detection
        if td is None:
            return None
        return VADConfig(sample_rate=SAMPLE_RATE, frame_ms=self._vad_frame_ms, min_speech_ms=200,
                         min_silence_ms=td.silence_duration_ms, prefix_padding_ms=td.prefix_padding_ms,
                         max_speech_ms=self._max_utterance_ms, end_correction_ms=TURN_END_CORRECTION_MS,
                         **threshold_to_vad(td.threshold))

    def _ms(self, samples: int) -> int:
        return samples * 1000 // SAMPLE_RATE

    def _previous_item_id(self) -> str | None:
        return self.items[-1]["id"] if self.items else None

    @property
    def beta(self) -> bool:
        return self.dialect.beta

    def _render_item(self, item: dict) -> dict:
        return self.dialect.render_item(self._public(item))

    def _item_events(self, item: dict, previous: str | None, done: bool = True) -> list[dict]:
        out = [self._event("conversation.item.added", previous_item_id=previous, item=self._render_item(item))]
        if done and self.dialect.confirms_items:
            out.append(self._event("conversation.item.done", previous_item_id=previous, item=self._render_item(item)))
        return out

    # -------------------------------------------------------------------------------- entry points
    def opened(self) -> list[dict]:
        return [self._event("session.created", session=self.dialect.render_session(self.config))]

    def receive(self, raw: str | bytes) -> tuple[list[dict], list]:
        """One client frame → (server events, work orders). Errors become ``error`` events."""
        event_id = None
        try:
            try:
                event = safejson.loads(raw)
            except safejson.JSONTooDeep as e:
                raise RealtimeError("invalid_json", str(e)) from None
            except (ValueError, UnicodeDecodeError):
                raise RealtimeError("invalid_json", "The event is not valid JSON.") from None
            if not isinstance(event, dict):
                raise RealtimeError("invalid_json", "An event must be a JSON object.")
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event.get("type")
            if not isinstance(kind, str):
                raise RealtimeError("invalid_type", f"Invalid type for 'type': expected a string, but got "
                                                    f"{type(kind).__name__ if kind is not None else 'nothing'}.",
                                    "type")
            if kind not in _CLIENT_EVENTS:
                raise RealtimeError("invalid_value", f"Invalid value: '{kind[:64]}'. Supported values are: "
                                                     f"{', '.join(sorted(_CLIENT_EVENTS))}.", "type")
            handler = getattr(self, "_on_" + kind.replace(".", "_"))
            return handler(event)
        except RealtimeError as e:
            return [self.error(e, event_id)], []
        except Exception:                      # a bug: this event fails, the session goes on
            log.exception("realtime session %s: handling a client event failed", self.config.id)
            return [self.error(RealtimeError("server_error", "The server had an error while processing this "
                                                             "event.", type="server_error"), event_id)], []

    # -------------------------------------------------------------------------------- session
    def configure(self, session: dict, *, beta: bool) -> None:
        """Start from a preset session (an ephemeral key's, in the dialect it was minted in), before
        :meth:`opened`; RealtimeError if it is invalid."""
        dialect, self.dialect = self.dialect, dialect_for(beta)
        try:
            self._on_session_update({"session": session})
        finally:
            self.dialect = dialect

    def _on_session_update(self, event: dict):
        if "session" not in event:
            raise RealtimeError("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        new = self.dialect.parse_session(self.config, event["session"])
        vad_changed = new.turn_detection != self.config.turn_detection
        self.config = new
        orders = []
        if vad_changed or new.transcription is None:
            orders = self._cancel_stream()         # its utterance will not be committed as it was streamed
        if vad_changed:
            self.input.restart_vad(self._vad_config())
            self._speech_item = None
        return [self._event("session.updated", session=self.dialect.render_session(new))], orders

    def _on_transcription_session_update(self, event: dict):
        raise RealtimeError("invalid_value", "Transcription-only sessions are not supported by the lab's emulator.",
                            "type")

    # -------------------------------------------------------------------------------- input audio
    def _on_input_audio_buffer_append(self, event: dict):
        audio = event.get("audio")
        if audio is None:
            raise RealtimeError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        if not isinstance(audio, str):
            raise RealtimeError("invalid_type", "Invalid type for 'audio': expected a base64 string.", "audio")
        if len(audio) > MAX_APPEND_BYTES:
            raise RealtimeError("invalid_value", f"Audio of {len(audio)} bytes is larger than the limit of "
                                                 f"{MAX_APPEND_BYTES} bytes per append.", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("invalid_value", "Invalid 'audio': not valid base64.", "audio") from None
        if len(pcm) % 2:
            raise RealtimeError("invalid_value", "Invalid 'audio': PCM16 audio must be a whole number of 2-byte "
                                                 "samples.", "audio")
        return self.append_pcm(pcm)

    def append_pcm(self, pcm: bytes):
        """Add PCM16 24 kHz audio to the input buffer and run server VAD over it."""
        events, orders = [], []
        for vad_event in self.input.append(pcm):
            if isinstance(vad_event, SpeechStart):
                e, o = self._speech_started(vad_event)
            else:
                e, o = self._speech_stopped(vad_event)
            events += e
            orders += o
        s = self._streamed
        if s is not None and self.input.analysed_samples > s.fed:      # after VAD ran on this append
            orders.append(TranscriptionAudio(s.item_id, self.input.peek(s.fed, self.input.analysed_samples).copy()))
            s.fed = self.input.analysed_samples
        return events, orders

    def _begin_stream(self, start: SpeechStart) -> list:
        """Server VAD saw speech start: stream it to the recogniser from where its commit will start."""
        if self.config.transcription is None:
            return []
        prefix = self.config.turn_detection.prefix_padding_ms * SAMPLE_RATE // 1000
        first = max(start.start_sample - prefix, self.input.buffer_start, 0)
        self._streamed = _Streamed(self._speech_item, first, max(first, start.detected_sample))
        return [TranscriptionBegin(self._speech_item, self.input.peek(first, self._streamed.fed).copy())]

    def _cancel_stream(self) -> list:
        s, self._streamed = self._streamed, None
        return [TranscriptionCancel(s.item_id)] if s is not None else []

    def _speech_started(self, start: SpeechStart):
        td = self.config.turn_detection
        self._speech_item = self._new_id("item")
        audio_start_ms = max(0, self._ms(start.start_sample) - td.prefix_padding_ms)
        events = [self._event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms,
                              item_id=self._speech_item)]
        orders = self._cancel_stream() + self._begin_stream(start)
        if self.response is not None and td.interrupt_response:          # barge-in
            e, o = self.cancel_response("turn_detected")
            events += e
            orders += o
        return events, orders

    def _speech_stopped(self, end: SpeechEnd):
        td = self.config.turn_detection
        item_id = self._speech_item or self._new_id("item")
        self._speech_item = None
        audio_end_ms = self._ms(end.committed_until)
        events = [self._event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)]
        # commit from prefix_padding before the onset to where silence was confirmed (or the cut, or,
        # when a weak tail was dated out, to the new end plus the silence wait: the rest stays buffered)
        first = max(end.audio_start_sample, self.input.buffer_start)
        streamed, self._streamed = self._streamed, None
        e, o = self._commit(item_id, self.input.take(end.audio_start_sample, end.committed_until),
                            streamed, first, end.committed_until)
        events += e
        orders = o
        # an utterance cut at the maximum length goes on: the reply waits for its real end
        if td.create_response and self.response is None and not end.forced:
            e, o = self._start_response(None)
            events += e
            orders += o
        return events, orders

    def _on_input_audio_buffer_commit(self, event: dict):
        samples = self.input.buffered_samples
        if self._ms(samples) < MIN_COMMIT_MS:
            raise RealtimeError("input_audio_buffer_commit_empty",
                                f"Error committing input audio buffer: buffer too small. Expected at least "
                                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {self._ms(samples)}ms of audio.")
        item_id = self._speech_item or self._new_id("item")
        self._speech_item = None
        orders = self._cancel_stream()
        events, more = self._commit(item_id, self.input.take_all())
        return events, orders + more

    def _commit(self, item_id: str, audio: np.ndarray, streamed: _Streamed | None = None, first: int = 0,
                end: int = 0):
        """Add the user item; transcription (when on) finishes its stream, if ``streamed`` sent exactly the
        first samples of ``audio`` (input clock ``[first, end)``), or decodes ``audio`` whole."""
        previous = self._previous_item_id()
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        self.items.append(item)
        events = [self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)]
        events += self._item_events(item, previous)
        orders = []
        same = streamed is not None and streamed.item_id == item_id and streamed.first == first \
            and streamed.fed <= end and audio.size == end - first
        if streamed is not None and (not same or self.config.transcription is None):
            orders.append(TranscriptionCancel(streamed.item_id))
        if self.config.transcription is not None:
            if same:
                orders.append(TranscriptionAudio(item_id, audio[streamed.fed - first:].copy()))
                orders.append(TranscriptionEnd(item_id, audio.copy(), dict(self.config.transcription)))
            else:
                orders.append(StartTranscription(item_id, audio.copy(), dict(self.config.transcription)))
            self._transcribing.add(item_id)
        return events, orders

    def _on_input_audio_buffer_clear(self, event: dict):
        self.input.clear()
        return [self._event("input_audio_buffer.cleared")], self._cancel_stream()

    def _on_output_audio_buffer_clear(self, event: dict):
        raise RealtimeError("invalid_value", "output_audio_buffer.clear is only for WebRTC connections; over a "
                                             "WebSocket, send response.cancel and conversation.item.truncate.", "type")

    # -------------------------------------------------------------------------------- transcription results
    def transcription_done(self, item_id: str, text: str, seconds: float) -> list[dict]:
        self.transcripts[item_id] = text
        for item in self.items:
            if item["id"] == item_id:
                item["content"][0]["transcript"] = text
        base = dict(item_id=item_id, content_index=0)
        events = [self._event("conversation.item.input_audio_transcription.delta", **base, delta=text),
                  self._event("conversation.item.input_audio_transcription.completed", **base, transcript=text,
                              usage={"type": "duration", "seconds": round(seconds, 3)})]
        return events + self._transcript_arrived(item_id)

    def _transcript_arrived(self, item_id: str) -> list[dict]:
        self._transcribing.discard(item_id)
        r = self.response
        if r is None or not r.waiting or self._transcript_pending():
            return []
        events, orders = self._begin_output(r)
        self._ready_orders += orders
        return events

    def transcription_failed(self, item_id: str, message: str) -> list[dict]:
        events = [self._event("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                              error={"type": "transcription_error", "code": "transcription_unavailable",
                                     "message": message, "param": None})]
        return events + self._transcript_arrived(item_id)

    # -------------------------------------------------------------------------------- conversation
    def _on_conversation_item_create(self, event: dict):
        item = event.get("item")
        if not isinstance(item, dict):
            raise RealtimeError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        if item.get("type") in ("function_call", "function_call_output"):
            return self._create_function_item(event, item)
        if item.get("type", "message") != "message":
            raise RealtimeError("invalid_value", "Invalid value for 'item.type': supported values are 'message', "
                                                 "'function_call' and 'function_call_output'.", "item.type")
        role = item.get("role")
        if role not in ("user", "system", "assistant"):
            raise RealtimeError("invalid_value", "Invalid value for 'item.role': expected 'user', 'system' or "
                                                 "'assistant'.", "item.role")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise RealtimeError("missing_required_parameter", "Missing required parameter: 'item.content'.",
                                "item.content")
        clean = []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            allowed = {"user": ("input_text",), "system": ("input_text",), "assistant": ("output_text", "text")}[role]
            if kind not in allowed or not isinstance(part.get("text"), str):
                raise RealtimeError("invalid_value", f"Invalid content part for a {role} message: expected "
                                                     f"{{'type': '{allowed[0]}', 'text': ...}}.",
                                    f"item.content[{k}]")
            clean.append({"type": "output_text" if role == "assistant" else "input_text", "text": part["text"]})
        item_id, previous = self._check_new_item(event, item, sum(len(part["text"]) for part in clean), "item.content")
        new = {"id": item_id or self._new_id("item"), "object": "realtime.item", "type": "message",
               "status": "completed", "role": role, "content": clean}
        self.items.append(new)
        return self._item_events(new, previous), []

    def _check_new_item(self, event: dict, item: dict, size: int, param: str):
        """The checks every created item passes (its text within bounds, a valid id and previous_item_id);
        returns ``(item_id or None, previous_item_id)``."""
        if size > MAX_ITEM_CHARS:
            raise RealtimeError("invalid_value", f"Invalid '{param}': {size} characters of text; an item may have "
                                                 f"at most {MAX_ITEM_CHARS}.", param)
        if size + self._conversation_chars() > MAX_CONVERSATION_CHARS:
            raise RealtimeError("conversation_too_large", f"The conversation would pass {MAX_CONVERSATION_CHARS} "
                                                          f"characters of text; delete items "
                                                          f"(conversation.item.delete) to make room.", "item")
        item_id = item.get("id")
        if item_id is not None and (not isinstance(item_id, str) or not 0 < len(item_id) <= 64):
            raise RealtimeError("invalid_value", "Invalid 'item.id': expected a string of 1-64 characters.", "item.id")
        previous = event.get("previous_item_id", self._previous_item_id())
        if previous is not None and not isinstance(previous, str):
            raise RealtimeError("invalid_type", "Invalid type for 'previous_item_id': expected a string.",
                                "previous_item_id")
        return item_id, previous

    def _conversation_chars(self) -> int:
        """Characters of text in the conversation: message parts, function arguments and outputs."""
        return sum(len(part.get("text") or part.get("transcript") or "") for item in self.items
                   for part in item.get("content", ())) \
            + sum(len(item.get("arguments") or item.get("output") or "") for item in self.items)

    def _create_function_item(self, event: dict, item: dict):
        """A tool's result (``function_call_output``), or a call the client records itself (``function_call``)."""
        fields = ("call_id", "output") if item["type"] == "function_call_output" else ("call_id", "name", "arguments")
        for name in fields:
            if not isinstance(item.get(name), str):
                raise RealtimeError("missing_required_parameter", f"Missing required parameter: 'item.{name}' "
                                                                  f"(a string).", f"item.{name}")
        item_id, previous = self._check_new_item(event, item, len(item[fields[-1]]), f"item.{fields[-1]}")
        new = {"id": item_id or self._new_id("item"), "object": "realtime.item",
               "type": item["type"], "status": "completed", **{name: item[name] for name in fields}}
        self.items.append(new)
        return self._item_events(new, previous), []

    def _find(self, item_id) -> dict:
        for item in self.items:
            if item["id"] == item_id:
                return item
        raise RealtimeError("item_not_found", f"Item with item_id '{item_id}' not found.", "item_id")

    def _on_conversation_item_delete(self, event: dict):
        item = self._find(event.get("item_id"))
        self.items.remove(item)
        return [self._event("conversation.item.deleted", item_id=item["id"])], []

    def _on_conversation_item_retrieve(self, event: dict):
        return [self._event("conversation.item.retrieved", item=self._render_item(self._find(event.get("item_id"))))], []

    def _on_conversation_item_truncate(self, event: dict):
        for name in ("item_id", "content_index", "audio_end_ms"):
            if name not in event:
                raise RealtimeError("missing_required_parameter", f"Missing required parameter: '{name}'.", name)
        if not isinstance(event["content_index"], int) or isinstance(event["content_index"], bool) \
                or event["content_index"] < 0:
            raise RealtimeError("invalid_type", "Invalid type for 'content_index': expected an integer >= 0.",
                                "content_index")
        item = self._find(event["item_id"])
        end_ms = event["audio_end_ms"]
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise RealtimeError("invalid_value", "Invalid 'audio_end_ms': expected a non-negative integer.",
                                "audio_end_ms")
        events, orders = [], []
        r = self.response
        if r is not None and r.item_id == item["id"]:
            # the answer is still being generated (and played): truncate what exists so far, and stop
            # the rest, which nobody will hear (the Agents SDK's interrupt() sends only this event)
            if r.modalities != ("audio",) or r.calls:
                raise RealtimeError("invalid_value", "Only assistant audio items can be truncated.", "item_id")
            if end_ms > self._ms(r.audio_samples):
                raise RealtimeError("invalid_value", f"Invalid 'audio_end_ms': the item has "
                                                     f"{self._ms(r.audio_samples)} ms of audio so far.", "audio_end_ms")
            events, orders = self.cancel_response("client_cancelled")
        part = item["content"][0] if item.get("role") == "assistant" and item["content"] else None
        if part is None or part.get("type") != "output_audio":
            raise RealtimeError("invalid_value", "Only assistant audio items can be truncated.", "item_id")
        if end_ms > part.get("_audio_ms", 0):
            raise RealtimeError("invalid_value", f"Invalid 'audio_end_ms': the item has {part.get('_audio_ms', 0)} ms "
                                                 f"of audio.", "audio_end_ms")
        heard = [w for w, start_ms in part.get("_words", []) if start_ms < end_ms]
        part["transcript"] = "".join(heard)
        part["_audio_ms"] = end_ms
        part["_words"] = [(w, s) for w, s in part.get("_words", []) if s < end_ms]
        events.append(self._event("conversation.item.truncated", item_id=item["id"],
                                  content_index=event["content_index"], audio_end_ms=end_ms))
        return events, orders

    # -------------------------------------------------------------------------------- responses
    def _response_object(self, r: _Response, status: str, output: list, details=None, usage=None) -> dict:
        obj = {"object": "realtime.response", "id": r.id, "status": status, "status_details": details,
               "output": output, "conversation_id": "conv_" + self.config.id[5:], "max_output_tokens": r.max_output_tokens,
               "usage": usage, "metadata": None}
        obj.update(self.dialect.response_fields(r.modalities, r.voice, self.config.temperature))
        return obj

    def _on_response_create(self, event: dict):
        if self.response is not None:
            raise RealtimeError("conversation_already_has_active_response",
                                f"Conversation already has an active response in progress: {self.response.id}. Wait "
                                f"until the response is finished before creating a new one.")
        return self._start_response(event.get("response"))

    def _start_response(self, overrides: dict | None):
        cfg = self.config
        params = parse_response_params(overrides, cfg)       # every check before anything starts
        overrides = overrides or {}
        tools, choice = self._tools_for(overrides)
        r = _Response(self._new_id("resp"), self._new_id("item"), params.modalities,
                      params.voice, params.max_output_tokens)
        r.instructions, r.tools, r.tool_choice = params.instructions, tools, choice
        r.parallel = overrides.get("parallel_tool_calls", True) is not False
        self.response = r
        events = [self._event("response.created", response=self._response_object(r, "in_progress", []))]
        if tools and choice == "auto" and self._transcript_pending():
            # the simulated model reads the question's words: with tools to choose from, it waits for them
            r.waiting = True
            return events, []
        e, orders = self._begin_output(r)
        return events + e, orders

    def _transcript_pending(self) -> bool:
        last_user = next((i for i in reversed(self.items) if i.get("role") == "user"), None)
        return last_user is not None and last_user["id"] in self._transcribing

    def _begin_output(self, r: _Response):
        """Decide what the response is (function calls or a message), add its items, order the work."""
        r.waiting = False
        messages = self._messages(r.instructions)
        rng = random.Random(zlib.crc32(json.dumps(messages, sort_keys=True).encode()))
        try:
            calls = decide_tool_calls(messages, r.tools, r.tool_choice, r.parallel, rng) if r.tools else ()
        except UnsatisfiableSchema as e:          # the client's schema, not the server, is at fault: say so
            return self.fail_response(r.id, f"Invalid tool schema: {e}.", code="invalid_tool_schema",
                                      type="invalid_request_error"), []
        if calls:
            items = [{"id": r.item_id if k == 0 else self._new_id("item"), "object": "realtime.item",
                      "type": "function_call", "status": "in_progress", "name": c.name, "call_id": c.id,
                      "arguments": ""} for k, c in enumerate(calls)]
            r.calls = items
        else:
            items = [{"id": r.item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                      "role": "assistant", "content": []}]
        events = []
        for k, item in enumerate(items):
            previous = self._previous_item_id()
            events.append(self._event("response.output_item.added", response_id=r.id, output_index=k, item=item))
            events += self._item_events(item, previous, done=False)
            self.items.append(item)
        order = StartResponse(r.id, r.item_id, messages, r.modalities, r.voice, self.config.speed,
                              r.max_output_tokens, calls)
        return events, [order]

    def _tools_for(self, overrides: dict):
        """The response's tools and tool_choice (labkit.model.tools), validated."""
        try:
            tools = parse_tools(overrides.get("tools", list(self.config.tools)), "response.tools"
                                if "tools" in overrides else "session.tools")
            choice = parse_tool_choice(overrides.get("tool_choice", self.config.tool_choice), tools,
                                       "response.tool_choice" if "tool_choice" in overrides else "session.tool_choice")
        except ToolSpecError as e:
            raise RealtimeError("invalid_value", e.message, e.param) from None
        return tools, choice

    def take_orders(self) -> list:
        """Work orders that became due outside :meth:`receive` (a response that waited for its transcript)."""
        orders, self._ready_orders = self._ready_orders, []
        return orders

    def _messages(self, instructions: str | None) -> list[dict]:
        msgs = [{"role": "system", "content": instructions or self.config.instructions}]
        for item in self.items:
            if item.get("type") == "function_call":
                msgs.append({"role": "assistant", "content": None, "tool_calls": [{
                    "id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}]})
                continue
            if item.get("type") == "function_call_output":
                msgs.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
                continue
            if item.get("type") != "message" or not item["content"]:
                continue
            part = item["content"][0]
            text = part.get("text") or part.get("transcript") or ""
            if item["role"] == "user" and part["type"] == "input_audio" and not text:
                text = "(audio the lab's emulator could not transcribe)"
            msgs.append({"role": item["role"], "content": text})
        return msgs

    def _open_part(self, r: _Response) -> list[dict]:
        if r.part_open:
            return []
        r.part_open = True
        part = {"type": "audio", "transcript": ""} if r.modalities == ("audio",) else {"type": "text", "text": ""}
        return [self._event("response.content_part.added", response_id=r.id, item_id=r.item_id, output_index=0,
                            content_index=0, part=part)]

    def text_delta(self, response_id: str, delta: str) -> list[dict]:
        """Feed one piece of text: a text delta, or (audio modality) a transcript delta."""
        r = self.response
        if r is None or r.id != response_id:
            return []
        events = self._open_part(r)
        r.text += delta
        name = "response.output_text.delta" if r.modalities == ("text",) else "response.output_audio_transcript.delta"
        events.append(self._event(name, response_id=r.id, item_id=r.item_id, output_index=0, content_index=0,
                                  delta=delta))
        return events

    def audio_delta(self, response_id: str, pcm: bytes, words: list[tuple[str, int]] = ()) -> list[dict]:
        """Feed PCM16 24 kHz audio of the reply; ``words`` are (text, start ms) it begins, for truncation."""
        r = self.response
        if r is None or r.id != response_id:
            return []
        events = self._open_part(r)
        r.words += list(words)
        r.audio_samples += len(pcm) // 2
        events.append(self._event("response.output_audio.delta", response_id=r.id, item_id=r.item_id, output_index=0,
                                  content_index=0, delta=base64.b64encode(pcm).decode()))
        return events

    def speech_chunk(self, response_id: str, pcm: bytes, words: tuple[tuple[str, int], ...] = ()) -> list[dict]:
        """One chunk of a spoken reply: the transcript of the words it begins, just before their sound,
        then the audio (see :mod:`labkit.realtime.speechout`)."""
        events = []
        for piece, _ in words:
            events += self.text_delta(response_id, piece)
        return events + self.audio_delta(response_id, pcm, list(words))

    def arguments_delta(self, response_id: str, index: int, delta: str) -> list[dict]:
        """Feed a fragment of function call ``index``'s arguments."""
        r = self.response
        if r is None or r.id != response_id or not 0 <= index < len(r.calls):
            return []
        call = r.calls[index]
        call["arguments"] += delta
        return [self._event("response.function_call_arguments.delta", response_id=r.id, item_id=call["id"],
                            output_index=index, call_id=call["call_id"], delta=delta)]

    def finish_response(self, response_id: str, *, prompt_tokens: int = 0, output_tokens: int = 0) -> list[dict]:
        """The reply is complete: close its part, item and response."""
        return self._close(response_id, "completed", None, prompt_tokens, output_tokens)

    def fail_response(self, response_id: str, message: str, code: str = "response_failed",
                      type: str = "server_error") -> list[dict]:
        """Generation failed (for example, speech synthesis is unavailable): say so, never fake audio."""
        err = RealtimeError(code, message, type=type)
        details = {"type": "failed", "error": {"type": type, "code": code}}
        return [self.error(err)] + self._close(response_id, "failed", details)

    def output_buffer_event(self, kind: str, response_id: str) -> dict:
        """``output_audio_buffer.started`` / ``stopped`` / ``cleared`` (``kind``): sent by a transport
        that plays the audio itself (WebRTC, :mod:`labkit.server.webrtc`), when playback does that."""
        if kind not in ("started", "stopped", "cleared"):
            raise ValueError(kind)
        return self._event(f"output_audio_buffer.{kind}", response_id=response_id)

    def cancel_response(self, reason: str, response_id: str | None = None) -> tuple[list[dict], list]:
        r = self.response
        if r is None or (response_id is not None and response_id != r.id):
            raise RealtimeError("response_cancel_not_active", "Cancellation failed: no active response found.")
        events = self._close(r.id, "cancelled", {"type": "cancelled", "reason": reason})
        return events, [CancelResponse(r.id)]

    def _on_response_cancel(self, event: dict):
        return self.cancel_response("client_cancelled", event.get("response_id"))

    def _close(self, response_id: str, status: str, details, prompt_tokens: int = 0, output_tokens: int = 0):
        r = self.response
        if r is None or r.id != response_id:
            return []
        self.response = None
        if r.waiting:                             # ended before it produced anything
            return [self._event("response.done", response=self._response_object(r, status, [], details,
                                                                                 self._usage(prompt_tokens, 0)))]
        if r.calls:
            return self._close_calls(r, status, details, prompt_tokens, output_tokens)
        base = dict(response_id=r.id, item_id=r.item_id, output_index=0, content_index=0)
        events = self._open_part(r)
        audio = r.modalities == ("audio",)
        if audio:
            events.append(self._event("response.output_audio.done", **base))
            events.append(self._event("response.output_audio_transcript.done", **base, transcript=r.text))
            part = {"type": "audio", "transcript": r.text}
            content = {"type": "output_audio", "transcript": r.text}
        else:
            events.append(self._event("response.output_text.done", **base, text=r.text))
            part = {"type": "text", "text": r.text}
            content = {"type": "output_text", "text": r.text}
        events.append(self._event("response.content_part.done", **base, part=part))
        item = next((i for i in self.items if i["id"] == r.item_id), None)
        deleted = item is None                 # the client deleted the reply's item while it was generated
        if deleted:
            item = {"id": r.item_id, "object": "realtime.item", "type": "message", "role": "assistant", "content": []}
        item["status"] = "completed" if status == "completed" else "incomplete"
        item["content"] = [content]
        shown = self._render_item(self._public(item))
        events.append(self._event("response.output_item.done", response_id=r.id, output_index=0, item=shown))
        if self.dialect.confirms_items and not deleted:
            index = self.items.index(item)
            previous = self.items[index - 1]["id"] if index else None
            events.append(self._event("conversation.item.done", previous_item_id=previous, item=shown))
        if audio:   # kept for truncation, never sent
            content["_audio_ms"], content["_words"] = self._ms(r.audio_samples), list(r.words)
        events.append(self._event("response.done", response=self._response_object(
            r, status, [shown], details, self._usage(prompt_tokens, output_tokens))))
        return events

    @staticmethod
    def _usage(prompt_tokens: int, output_tokens: int) -> dict:
        return {"total_tokens": prompt_tokens + output_tokens, "input_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "input_token_details": {"text_tokens": prompt_tokens, "audio_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0}}

    def _close_calls(self, r: _Response, status: str, details, prompt_tokens: int, output_tokens: int) -> list[dict]:
        events, shown = [], []
        for k, call in enumerate(r.calls):
            events.append(self._event("response.function_call_arguments.done", response_id=r.id, item_id=call["id"],
                                      output_index=k, call_id=call["call_id"], name=call["name"],
                                      arguments=call["arguments"]))
            call["status"] = "completed" if status == "completed" else "incomplete"
            events.append(self._event("response.output_item.done", response_id=r.id, output_index=k, item=dict(call)))
            if self.dialect.confirms_items:
                index = self.items.index(call)
                previous = self.items[index - 1]["id"] if index else None
                events.append(self._event("conversation.item.done", previous_item_id=previous, item=dict(call)))
            shown.append(dict(call))
        events.append(self._event("response.done", response=self._response_object(
            r, status, shown, details, self._usage(prompt_tokens, output_tokens))))
        return events

    @staticmethod
    def _public(item: dict) -> dict:
        if "content" not in item:                 # function calls and their outputs
            return dict(item)
        return {**item, "content": [{k: v for k, v in c.items() if not k.startswith("_")} for c in item["content"]]}
