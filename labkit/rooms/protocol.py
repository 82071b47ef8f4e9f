"""The room protocol, with no I/O. ``/ws/room/{room_id}?name=ann[&after=<event id>]``.

Client → server (JSON text frames)::

    {"type": "message", "content": "What is SSE?"}
    {"type": "ping"}

Server → client. Every event that went through the room's broker has an ``id``; the ids are
ordered, the same on every server process, and a member who reconnects with ``?after=<last id>``
receives exactly the events after it (instead of ``room_state``)::

    {"type": "room_state", "room": "lab", "members": 3, "history": [<user_message / ai_complete>, ...],
     "last_id": "1732540000000-3"}
    {"type": "joined",  "id": ..., "user": "ann", "members": 3}
    {"type": "left",    "id": ..., "user": "ann", "members": 2}
    {"type": "user_message", "id": ..., "user": "ann", "content": "..."}
    {"type": "ai_typing", "id": ..., "active": true, "reply_to": <id of the user_message>}
    {"type": "ai_token", "id": ..., "reply_to": ..., "seq": 0, "content": "Server"}
    {"type": "ai_complete", "id": ..., "reply_to": ..., "content": "<full text>"}
    {"type": "error", "code": "...", "message": "..."}

One AI reply at a time per room: messages that arrive while it answers wait their turn, in order.
"""

from __future__ import annotations


from ..protocol import safejson
from ..protocol.errors import CodedError
import re

__all__ = ["ROOM_ID", "valid_room_id", "RoomProtocolError", "parse_room_message", "event_key", "MAX_CONTENT_CHARS"]

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CONTENT_CHARS = 8_000


def valid_room_id(room_id: str) -> bool:
    return bool(ROOM_ID.match(room_id))


class RoomProtocolError(CodedError, ValueError):
    """A room frame the server cannot take; sent back as an ``error`` frame with ``code``."""


def parse_room_message(raw: str | bytes, max_chars: int = MAX_CONTENT_CHARS) -> dict:
    try:
        data = safejson.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RoomProtocolError("invalid_json", "The message is not valid JSON.") from None
    if not isinstance(data, dict) or data.get("type") not in ("message", "ping"):
        raise RoomProtocolError("unknown_type", "Send {\"type\": \"message\", \"content\": \"...\"} or a ping.")
    if data["type"] == "ping":
        return {"type": "ping"}
    content = data.get("content")
    if not isinstance(content, str) or not content.strip():
        raise RoomProtocolError("invalid_content", "'content' must be a non-empty string.")
    if len(content) > max_chars:
        raise RoomProtocolError("content_too_long", f"'content' has {len(content)} characters; the limit is {max_chars}.")
    return {"type": "message", "content": content}


def event_key(event_id: str) -> tuple[int, int]:
    """Order of broker ids (``<ms>-<n>``, as Redis Streams writes them)."""
    ms, _, n = event_id.partition("-")
    return int(ms), int(n or 0)
