"""Server-Sent Events, both directions, with no I/O (the format of the WHATWG HTML standard, §9.2).

Encoding: an event is a block of ``field: value`` lines ended by a blank line. Data with newlines
becomes several ``data:`` lines, which the receiver joins with ``\\n``. A line starting with ``:``
is a comment: receivers ignore it, which makes it the right keep-alive.

Decoding: :class:`SSEDecoder` is fed bytes as they arrive, in chunks of any size, and returns the
events completed so far. It follows the standard's rules, including the ones hand-written parsers
usually get wrong: CR, LF and CRLF line ends (even a CRLF split across two chunks), one optional
space after the colon, a UTF-8 BOM at the start, ``id`` persisting across events, an ``id``
containing NUL being ignored, and a block with no ``data`` dispatching nothing.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["ServerSentEvent", "encode_event", "encode_json_event", "encode_comment", "SSEDecoder", "SSE_HEADERS"]

#: Response headers for a stream: no caching of partial responses, and no buffering by nginx
#: (``X-Accel-Buffering: no``), which would otherwise turn a smooth stream into one late burst.
_EOL = re.compile(r"\r\n|\r|\n")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str = ""           # the last event id in force when this event was dispatched
    retry: int | None = None


def encode_event(data: str, *, event: str | None = None, id: str | int | None = None,
                 retry: int | None = None) -> bytes:
    """One event, ready to write to the response body."""
    lines = []
    if event is not None:
        _check_single_line("event", event)
        lines.append(f"event: {event}")
    if id is not None:
        id = str(id)
        _check_single_line("id", id)
        if "\0" in id:
            raise ValueError("an SSE id may not contain NUL")
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_json_event(data_json: str, *, event: str | None = None, id: str | int | None = None) -> bytes:
    """:func:`encode_event` for data that is one line already, such as the output of ``json.dumps``
    (it escapes every line break): the same bytes, without the line splitting, for the hot path of a
    stream (one call per token). ``event`` and ``id`` must be single-line, which the callers' are
    (fixed names and integers); data with a line break would be a bug, so it is checked."""
    if "\n" in data_json or "\r" in data_json:
        raise ValueError("encode_json_event takes one line of data; use encode_event")
    if event is None:
        head = "" if id is None else f"id: {id}\n"
    else:
        head = f"event: {event}\n" if id is None else f"event: {event}\nid: {id}\n"
    return f"{head}data: {data_json}\n\n".encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment line (``: text``): ignored by every receiver; used as a keep-alive."""
    return b"".join(f": {line}\n".encode("utf-8") if line else b":\n" for line in text.split("\n")) + b"\n"


def _check_single_line(field: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE {field} may not contain a line break: {value!r}")


class SSEDecoder:
    """Incremental SSE parser: ``feed(chunk)`` returns the events that chunk completed."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._last_char_was_cr = False
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None      # the reconnection time the server asked for, if any

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._utf8.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        # A CR at the end of the last chunk already ended a line: a LF starting this one is its pair.
        # (An empty chunk, or one whose bytes are all held back by the UTF-8 decoder, changes nothing:
        # the CR is still the last character seen.)
        if self._last_char_was_cr and text.startswith("\n"):
            text = text[1:]
        if text:
            self._last_char_was_cr = text.endswith("\r")
        self._buffer += text
        events = []
        if "\r" not in self._buffer:
            # the usual case (LF only): one split instead of a regex search per line
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                event = self._process_line(line)
                if event is not None:
                    events.append(event)
            return events
        while True:
            line, found = self._next_line()
            if not found:
                break
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        return events

    def _next_line(self) -> tuple[str, bool]:
        match = _EOL.search(self._buffer)
        if match is None:
            return "", False
        line, self._buffer = self._buffer[: match.start()], self._buffer[match.end():]
        return line, True

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry = self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message",
                               id=self.last_event_id, retry=retry)
