"""The app server reads its model's stream with the lab's SSE decoder: an upstream that spreads a chunk's
JSON over several ``data:`` lines, ends lines with CRLF and writes them in pieces that cut between CR
and LF still gives every token, through the real app routes (/api/chat, SSE and WebSocket)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit.clients import collect, http_chat, sse_chat, ws_chat

WORDS = ["Multi", "-line", " data", " works", "."]


def _events() -> list[bytes]:
    out = []
    for i, word in enumerate(WORDS):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "delta": {"content": word},
                              "finish_reason": "stop" if i == len(WORDS) - 1 else None}]}
        text = json.dumps(chunk, indent=1)                     # one JSON value over many data: lines
        out.append("".join(f"data: {line}\r\n" for line in text.split("\n")).encode() + b"\r\n")
    return out + [b"data: [DONE]\r\n\r\n"]


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):                                          # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in _events():
            cut = event.index(b"\r\n") + 1                      # between the first CR and its LF
            for piece in (event[:cut], event[cut:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.001)                               # separate reads, not one buffer
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


async def test_multi_line_data_from_the_upstream_reaches_every_transport(make_server, upstream):
    app = make_server(upstream_base_url=upstream)
    for chat in (http_chat, sse_chat, ws_chat):
        stream = await collect(chat(app.url, "hello"))
        assert [t.text for t in stream.tokens] == WORDS, chat.__name__
        assert stream.finish_reason == "stop", chat.__name__
