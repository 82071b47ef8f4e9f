"""The lab's own chat API (what the app server offers browsers), with no I/O.

HTTP and SSE: ``POST /api/chat`` and ``POST /api/chat/stream`` take a JSON body::

    {"message": "What is SSE?"}                       # or "messages": [{"role": "user", "content": ...}, ...]
    # optional: "model", "max_tokens", "temperature", "seed", "timings" (HTTP: per-token times in the reply)

The SSE stream sends ``event: token`` (``{"seq", "content", "t"}``), then ``event: done``
(``{"content", "tokens", "finish_reason"}``), or ``event: error`` (``{"code", "message"}``).

WebSocket ``/ws/chat``. Client → server (JSON text frames)::

    {"type": "message", "content": "What is SSE?"}          # ask; the conversation is kept per connection
    # optional in a message, as over HTTP: "model", "max_tokens", "temperature", "seed"
    {"type": "ping"}                                          # answered with {"type": "pong"}
    {"type": "resume", "stream_id": "st_…", "last_seq": 41}   # after a reconnect: send the tokens after 41
    {"type": "cancel"}                                        # stop the reply that is streaming

Server → client::

    {"type": "ack", "stream_id": "st_…"}                      # the message was accepted
    {"type": "token", "stream_id": "st_…", "seq": 0, "content": "Server", "t": 1732540000.123}
    {"type": "complete", "stream_id": "st_…", "content": "<full text>", "tokens": 73, "finish_reason": "stop"}
    {"type": "error", "code": "invalid_json", "message": "...", "stream_id": null}
    # over /ws/chat/progressive, also (the tutorial's progressive protocol):
    {"type": "typing", "active": true}
    {"type": "progress", "stage": "waiting_for_first_token", "fraction": 0.1}

``seq`` numbers the tokens of one stream from 0, so a client can tell a lost or repeated token,
and resume after the last one it has. ``t`` is the server's wall-clock time when the token was
produced (for measuring delivery delay). Errors never close the connection: the client can
correct itself and go on. A limit (``too_many_streams``, ``rate_limit_exceeded``) adds
``retry_after_s`` to its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import safejson
from .errors import CodedError

__all__ = ["MAX_CONTENT_CHARS", "ProtocolError", "ClientMessage", "parse_client_message",
           "ChatBody", "parse_chat_body", "ack", "token", "complete", "error", "pong", "typing", "progress"]

MAX_CONTENT_CHARS = 8_000
CLIENT_TYPES = ("message", "ping", "resume", "cancel")


class ProtocolError(CodedError, ValueError):
    """A chat message the server cannot take; sent back as an ``error`` frame with ``code``."""


@dataclass(frozen=True)
class ClientMessage:
    type: str
    content: str = ""
    options: dict = field(default_factory=dict)     # model, max_tokens, temperature, seed (when given)
    stream_id: str = ""                             # resume
    last_seq: int = -1                              # resume


def parse_client_message(raw: str | bytes, max_chars: int = MAX_CONTENT_CHARS) -> ClientMessage:
    """Validate one client frame; raise :class:`ProtocolError` with a code a client can act on."""
    try:
        data = safejson.loads(raw)
    except safejson.JSONTooDeep as e:
        raise ProtocolError("invalid_json", str(e)) from None
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("invalid_json", "The message is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "A message must be a JSON object with a 'type'.")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"Unknown message type {kind!r}; expected one of {list(CLIENT_TYPES)}.")
    if kind in ("ping", "cancel"):
        return ClientMessage(kind)
    if kind == "resume":
        stream_id, last_seq = data.get("stream_id"), data.get("last_seq", -1)
        if not isinstance(stream_id, str) or not stream_id or len(stream_id) > 64:
            raise ProtocolError("invalid_stream_id", "'resume' needs the 'stream_id' from the reply's 'ack'.")
        if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < -1:
            raise ProtocolError("invalid_last_seq", "'last_seq' must be the seq of the last token you have, or -1.")
        return ClientMessage("resume", stream_id=stream_id, last_seq=last_seq)
    return ClientMessage("message", _content(data.get("content"), max_chars), _options(data))


@dataclass(frozen=True)
class ChatBody:
    messages: list[dict]
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    timings: bool = False


def parse_chat_body(raw: bytes, max_chars: int = MAX_CONTENT_CHARS) -> ChatBody:
    """Validate a ``POST /api/chat[/stream]`` body; raise :class:`ProtocolError` on any fault."""
    try:
        data = safejson.loads(raw)
    except safejson.JSONTooDeep as e:
        raise ProtocolError("invalid_json", str(e)) from None
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_body", "The request body must be a JSON object.")
    if ("message" in data) == ("messages" in data):
        raise ProtocolError("invalid_body", "Send exactly one of 'message' (a string) or 'messages' (a list).")
    if "message" in data:
        messages = [{"role": "user", "content": _content(data["message"], max_chars)}]
    else:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise ProtocolError("invalid_body", "'messages' must be a non-empty list.")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in {"system", "user", "assistant", "developer"}:
                raise ProtocolError("invalid_body", "Each message needs a 'role' (system, user, assistant).")
            _content(m.get("content"), max_chars)
    return ChatBody(messages=messages, timings=bool(data.get("timings", False)), **_options(data, "invalid_body"))


_OPTIONS = (("model", (str,)), ("max_tokens", (int,)), ("temperature", (int, float)), ("seed", (int,)))


def _options(data: dict, code: str = "invalid_option") -> dict:
    """The optional generation settings of a request; the upstream API checks their ranges."""
    options = {}
    for name, kinds in _OPTIONS:
        value = data.get(name)
        if value is not None:
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise ProtocolError(code, f"'{name}' has the wrong type.")
            options[name] = value
    return options


def _content(content, max_chars: int) -> str:
    if not isinstance(content, str):
        raise ProtocolError("invalid_content", "'content' must be a string.")
    if not content.strip():
        raise ProtocolError("empty_content", "'content' is empty.")
    if len(content) > max_chars:
        raise ProtocolError("content_too_long", f"'content' has {len(content)} characters; the limit is {max_chars}.")
    return content


def ack(stream_id: str) -> dict:
    return {"type": "ack", "stream_id": stream_id}


def token(stream_id: str, seq: int, content: str, t: float) -> dict:
    return {"type": "token", "stream_id": stream_id, "seq": seq, "content": content, "t": t}


def tokens(stream_id: str, items: list[tuple[int, str, float]]) -> dict:
    """Several tokens in one frame (``/ws/chat?coalesce=1``, when the writer fell behind): each is
    exactly what its own ``token`` message would have said, in order."""
    return {"type": "tokens", "stream_id": stream_id,
            "tokens": [{"seq": seq, "content": content, "t": t} for seq, content, t in items]}


def complete(stream_id: str, content: str, tokens: int, finish_reason: str) -> dict:
    return {"type": "complete", "stream_id": stream_id, "content": content, "tokens": tokens,
            "finish_reason": finish_reason}


def error(code: str, message: str, stream_id: str | None = None, retry_after_s: float | None = None) -> dict:
    msg = {"type": "error", "code": code, "message": message, "stream_id": stream_id}
    if retry_after_s is not None:
        msg["retry_after_s"] = retry_after_s
    return msg


def typing(active: bool) -> dict:
    return {"type": "typing", "active": active}


def progress(stage: str, fraction: float) -> dict:
    return {"type": "progress", "stage": stage, "fraction": round(min(1.0, max(0.0, fraction)), 3)}


def pong() -> dict:
    return {"type": "pong"}
