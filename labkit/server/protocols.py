"""uvicorn's HTTP protocols with a header timeout, the garbage collector's settings of a server
process (:func:`tune_gc`), and the uvicorn settings that keep one client
from locking out the rest.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and refuses requests beyond
``limit_concurrency`` with 503, but a socket that connects and never finishes its request headers
is kept forever: a few hundred of them use up the process's file descriptors (the "slowloris"
attack). Here each connection must complete its first request's headers within
``header_timeout_s`` or it is closed. (A WebSocket upgrade hands the socket to another protocol,
which the timer leaves alone.)
"""

from __future__ import annotations

import asyncio

__all__ = ["http_protocol", "uvicorn_options", "tune_gc", "quiet_websocket_access_log", "HEADER_TIMEOUT_S"]

HEADER_TIMEOUT_S = 10.0


def _with_header_timeout(base: type, timeout_s: float) -> type:
    class HeaderTimeoutProtocol(base):
        header_timeout_s = timeout_s

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            # only a connection still ours (not upgraded) that never got a request's headers in
            if self.cycle is None and self.transport.get_protocol() is self and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


def http_protocol(kind: str = "auto", header_timeout_s: float = HEADER_TIMEOUT_S) -> type:
    """uvicorn's ``auto`` / ``httptools`` / ``h11`` protocol class, with the header timeout."""
    if kind == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    elif kind == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base
    return _with_header_timeout(base, header_timeout_s)


def uvicorn_options(config, http: str = "auto") -> dict:
    """The keyword arguments of ``uvicorn.Config`` that bound what clients can hold (from a ServerConfig)."""
    return {"http": http_protocol(http, config.header_timeout_s), "timeout_keep_alive": config.timeout_keep_alive_s,
            "limit_concurrency": config.limit_concurrency,
            "timeout_graceful_shutdown": config.graceful_shutdown_s,
            "access_log": getattr(config, "access_log", True),
            "ws_max_size": 16 * 1024 * 1024 + 4096,       # > the Realtime append limit (15 MB of base64)
            # No permessage-deflate (RFC 7692 lets a server decline it; clients then send and get the
            # same messages uncompressed): zlib on every frame was a sixth of a /ws/chat stream's CPU per
            # token (a token frame is ~100 bytes; base64 PCM hardly compresses) plus a compressor's and
            # a decompressor's memory per connection.
            "ws_per_message_deflate": False}


class _NoWebSocketAccessLines:
    """Drops the lines logged for every WebSocket connection: uvicorn's ``"WebSocket /path" [accepted]``
    (or its status) and the websockets library's ``connection open``. They are access-log lines, which
    ``access_log=False`` leaves on (both go to uvicorn's error logger, at INFO)."""

    @staticmethod
    def filter(record) -> bool:
        msg = record.msg
        return not (isinstance(msg, str) and (msg.startswith('%s - "WebSocket %s"') or msg == "connection open"))


def quiet_websocket_access_log() -> None:
    """No log line per WebSocket connection (for a server run without an access log: ``--no-access-log``).
    With 1,000 WebSocket clients connecting in 10 s, writing those lines was ~3% of the app's CPU."""
    import logging

    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _NoWebSocketAccessLines) for f in logger.filters):
        logger.addFilter(_NoWebSocketAccessLines())


def tune_gc() -> None:
    """Tune the garbage collector for a server that holds thousands of streams (``bench load``).

    * every object alive now (the modules, classes and functions of FastAPI, pydantic, the SDK, ...:
      hundreds of thousands, alive as long as the process) is moved out of the collector's sight:
      a full collection no longer walks them;
    * collections run less often (young generation at 20,000 new objects, not 700; a full one after
      100 middle ones, not 10). With 2,000 streams a full collection walked every stream's objects
      and stopped every stream for ~0.1-0.4 s, a dozen times a minute. Measured under load with
      1,000 SSE + 1,000 WebSocket streams: the collector's CPU fell from 3.4 s to 1.2 s of the
      app server's ~19 s, and its full collections from 11 to 1.

    Reference cycles are still collected, later; nothing the server keeps is frozen after start-up."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
