"""The benchmarks' lean clients: the lab's SSE and WebSocket chat read off a stamped socket.

What a benchmark wants to see is the server's transport, not the client's HTTP library: with a
hundred streams in one process on two shared cores, a full client's own CPU time queues every
token by milliseconds. These clients do the least a client can: one :class:`~.arrival.StampedSocket`,
HTTP/1.0 and labkit's SSE decoder for SSE, and the ``websockets`` library's sans-I/O
``ClientProtocol`` (bytes in, events out, bytes to send) for WebSocket. Every token carries both
arrival times: at the client's socket (the kernel's stamp, ``socket_wall``) and at the application
(``wall``). They are for measuring; the lab's public clients are :mod:`labkit.clients.app`'s.
"""

from __future__ import annotations

import json
import time

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from ..protocol.sse import SSEDecoder
from .app import ChatError, ws_url
from .arrival import Read, StampedSocket, open_stamped
from .timing import TimedStream, TimedToken

__all__ = ["sse_stream", "ws_stream"]


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[-1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def _token(data: dict, read: Read, stream: TimedStream) -> TimedToken:
    return TimedToken(data["content"], read.app_wall - stream.start_wall, read.app_wall, data.get("seq"),
                      data.get("t"), read.kernel_wall)


async def _head(sock: StampedSocket) -> tuple[bytes, Read]:
    """The HTTP response head, and what came after it in the same read (the body's first bytes)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        read = await sock.read()
        if not read.data:
            raise ConnectionError("the server closed before its response head")
        buffer += read.data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return head, read._replace(data=rest)


async def sse_stream(url: str, body: dict, path: str = "/api/chat/stream", transport: str = "sse") -> TimedStream:
    """``POST path`` with the JSON ``body`` to the server at ``url`` (``http://host:port``), its SSE
    ``token`` events read until ``done``. It speaks HTTP/1.0; a server that frames the stream in
    chunks all the same (uvicorn does for ``StreamingResponse``) leaves chunk-size lines between the
    events, which the SSE decoder skips as lines without a field it knows. An ``error`` event, or
    an end without ``done``, raises :class:`~.app.ChatError`."""
    host, port = _host_port(url)
    payload = json.dumps(body).encode()
    stream = TimedStream(transport=transport, start_wall=time.time())
    async with await open_stamped(host, port) as sock:
        await sock.send(b"POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(payload), payload))
        stream.request_wall = time.time()
        head, read = await _head(sock)
        if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            raise ChatError(None, f"SSE request failed: {head.splitlines()[0].decode(errors='replace')}")
        decoder, done = SSEDecoder(), False
        while not done:
            for event in decoder.feed(read.data):
                data = json.loads(event.data)
                if event.event == "token":
                    stream.tokens.append(_token(data, read, stream))
                elif event.event == "done":
                    stream.finish_reason, done = data.get("finish_reason"), True
                elif event.event == "error":
                    raise ChatError(data.get("code"), data.get("message", ""))
            if not done and not (read := await sock.read()).data:
                break
    if not done:
        raise ChatError(None, "stream ended without 'done'")
    stream.total_s = stream.tokens[-1].t if stream.tokens else 0.0
    return stream


class _WSConnection:
    """A ``ClientProtocol`` fed from a :class:`StampedSocket`: each text message with the read it came in."""

    def __init__(self, sock: StampedSocket, protocol: ClientProtocol):
        self.sock, self.protocol = sock, protocol
        self.pending: list[tuple[str, Read]] = []
        self.fragments: list[bytes] = []

    async def flush(self) -> None:
        """Send what the protocol has queued (the handshake, messages, pongs, a close)."""
        data = b"".join(self.protocol.data_to_send())         # b"" is its end-of-stream mark: nothing to send
        if data:
            await self.sock.send(data)

    async def feed(self) -> Read:
        """One read into the protocol; returns it (its events are then in ``events_received``)."""
        read = await self.sock.read()
        if read.data:
            self.protocol.receive_data(read.data)
        else:
            self.protocol.receive_eof()
        await self.flush()
        return read

    async def handshake(self) -> None:
        self.protocol.send_request(self.protocol.connect())
        await self.flush()
        while True:
            read = await self.feed()
            for event in self.protocol.events_received():
                if isinstance(event, Response):
                    if self.protocol.handshake_exc is not None:
                        raise self.protocol.handshake_exc
                else:
                    self._frame(event, read)
            if self.protocol.state is not State.CONNECTING:
                return
            if not read.data:
                raise ConnectionError("the server closed during the WebSocket handshake")

    def _frame(self, frame: Frame, read: Read) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.CONT):
            self.fragments.append(frame.data)
            if frame.fin:
                self.pending.append((b"".join(self.fragments).decode(), read))
                self.fragments = []
        elif frame.opcode is Opcode.CLOSE:
            self.pending.append(("", read))                 # the server closed: the caller sees it

    async def next_message(self) -> tuple[str, Read]:
        """The next text message and the read it came in; ``("", read)`` once the connection closes."""
        while not self.pending:
            read = await self.feed()
            for event in self.protocol.events_received():
                self._frame(event, read)
            if not read.data and not self.pending:
                return "", read
        return self.pending.pop(0)

    async def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        await self.flush()

    async def close(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            await self.flush()


async def ws_stream(url: str, message: dict, path: str = "/ws/chat", coalesce: bool = False,
                    transport: str = "ws") -> TimedStream:
    """One ``/ws/chat`` question (``message``: the ``{"type": "message", ...}`` frame) over a fresh
    connection to the server at ``url`` (``http://host:port``); its reply's tokens, one by one also
    when several came in one ``tokens`` frame (``coalesce``). An ``error`` frame raises
    :class:`~.app.ChatError`. No compression is offered (the lab's server deflates nothing)."""
    uri = parse_uri(ws_url(url) + path + ("?coalesce=1" if coalesce else ""))
    stream = TimedStream(transport=transport, start_wall=time.time())
    async with await open_stamped(uri.host, uri.port) as sock:
        ws = _WSConnection(sock, ClientProtocol(uri))
        await ws.handshake()
        await ws.send_text(json.dumps(message))
        stream.request_wall = time.time()
        stream_id = None
        while True:
            text, read = await ws.next_message()
            if not text:
                raise ChatError(None, "the connection closed before the reply was complete")
            msg = json.loads(text)
            kind = msg.get("type")
            if kind == "ack":
                stream_id = msg["stream_id"]
            elif kind == "token" and msg.get("stream_id") == stream_id:
                stream.tokens.append(_token(msg, read, stream))
            elif kind == "tokens" and msg.get("stream_id") == stream_id:       # several, coalesced
                stream.tokens += [_token(item, read, stream) for item in msg["tokens"]]
            elif kind == "complete" and msg.get("stream_id") == stream_id:
                stream.finish_reason = msg["finish_reason"]
                break
            elif kind == "error":
                raise ChatError(msg.get("code"), msg.get("message", ""))
        await ws.close()
    stream.total_s = stream.tokens[-1].t if stream.tokens else 0.0
    return stream
