"""Checks every request passes before anything reads it: where it comes from, what it carries, how big.

A careful local server (Jupyter's, for one) defends against the web pages its user visits, which
can send requests to ``127.0.0.1`` as easily as to their own site:

* **Host** (DNS rebinding): a page on ``evil.example`` whose name now resolves to 127.0.0.1 sends
  ``Host: evil.example``. An open (token-less) server accepts only IP addresses, names without a dot
  (``localhost``, ``app``) or under ``.localhost``, and the names in ``allowed_hosts``; a server with a token needs no such list (the page has no token).
* **Origin** (:func:`origin_is_allowed`, checked in :mod:`labkit.server.identity`, which knows who
  is asking): browsers name the page behind every WebSocket handshake and every cross-site POST. A
  state-changing request (not GET/HEAD/OPTIONS) or a WebSocket whose ``Origin`` is not this server
  itself (nor in ``allowed_origins``) is refused, unless a secret proves who sends it (a page that
  holds the token or an ephemeral key is no forgery). Programs that send no ``Origin`` are not browsers.
* **Content-Type**: a state-changing request with a body must say ``application/json``. A web page
  can only send that cross-site after a CORS preflight, which this server never approves, so a
  ``text/plain`` "simple request" can no longer flip a switch. The one exception is OpenAI's WebRTC
  signalling route (:data:`OTHER_BODY_TYPES`), whose SDP offer comes as ``application/sdp`` or
  ``multipart/form-data``; there the Origin check (and the key the route requires) stand guard.
* **Size**: a body longer than ``max_body_bytes`` gets 413 at once when ``Content-Length`` says so,
  or as soon as that many bytes have arrived (chunked): the server never holds more than the limit.
  A body must arrive within ``body_timeout_s`` (408 otherwise): a slow sender holds nothing for long.

Every refusal is an OpenAI-style error body (WebSockets: the handshake is refused with 403).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from ..auth import is_loopback
from ..protocol.openai_chat import error_body

__all__ = ["RequestGuard", "host_is_allowed", "origin_is_allowed", "body_type_is_allowed", "OTHER_BODY_TYPES",
           "SAFE_METHODS"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _split_host(value: str) -> str:
    """The name part of a ``Host`` header or URL netloc (``[::1]:80`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_is_allowed(host_header: str | None, allowed: tuple[str, ...] = ()) -> bool:
    """For an open server: is this a name only this machine (or an address) would use?"""
    if not host_header:
        return True                                  # HTTP/1.0 without Host: not a browser
    name = _split_host(host_header)
    # A rebinding page needs a public DNS name, which has a dot: single-label names ("localhost", an
    # nginx upstream called "app", a container's name) cannot be one.
    return ("." not in name or name.endswith(".localhost") or _is_ip(name) or is_loopback(name)
            or name in {h.lower() for h in allowed})


def origin_is_allowed(origin: str | None, host_header: str | None, allowed: tuple[str, ...] = ()) -> bool:
    """Same-origin (the Origin's host:port is the request's Host), listed, or no Origin at all."""
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False                                 # "null" (sandboxed pages, file://) and the like
    return host_header is not None and parts.netloc.lower() == host_header.strip().lower()


#: Routes whose protocol defines a body that is not JSON: path -> the media types it takes.
OTHER_BODY_TYPES = {"/v1/realtime/calls": ("application/sdp", "multipart/form-data")}


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = _media(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def body_type_is_allowed(path: str, content_type: str) -> bool:
    """JSON everywhere, plus what :data:`OTHER_BODY_TYPES` lists for ``path``."""
    return _is_json(content_type) or _media(content_type) in OTHER_BODY_TYPES.get(path, ())


class RequestGuard:
    def __init__(self, app, *, token_required: bool, max_body_bytes: int, body_timeout_s: float = 30.0,
                 allowed_hosts: tuple[str, ...] = ()):
        self.app, self.token_required, self.max_body_bytes = app, token_required, max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host")
        if not self.token_required and not host_is_allowed(host, self.allowed_hosts):
            return await self._refuse(scope, send, 403, f"Host {host!r} is not this server (a DNS rebinding "
                                                        f"attempt?); use 127.0.0.1 or localhost.", "invalid_host")
        state_changing = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if scope["type"] == "websocket" or not state_changing:
            return await self.app(scope, receive, send)
        length = headers.get("content-length")
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if has_body and not body_type_is_allowed(scope["path"], headers.get("content-type", "")):
            return await self._refuse(scope, send, 415, "The request body must be JSON: send it with "
                                                        "'Content-Type: application/json'.", "unsupported_media_type")
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                return await self._refuse(scope, send, 400, "Invalid Content-Length header.", "invalid_request")
            if too_big:
                return await self._too_large(scope, send)
        if not has_body:
            return await self.app(scope, receive, send)
        # Read the body here, at most max_body_bytes of it, then hand it on: a client that streams
        # more (chunked, or lying about its length) is cut off at the limit, never buffered whole.
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout_s):     # a body sent byte by byte holds nothing for long
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        return await self._too_large(scope, send)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await self._refuse(scope, send, 408, f"The request body did not arrive within "
                                                        f"{self.body_timeout_s:g} s.", "request_timeout", close=True)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, send) -> None:
        await self._refuse(scope, send, 413, f"The request body is larger than this server's limit of "
                                             f"{self.max_body_bytes} bytes.", "request_too_large",
                           close=True)

    @staticmethod
    async def _refuse(scope, send, status: int, message: str, code: str, close: bool = False) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps(error_body(message, code=code)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:                                    # the rest of an oversize body is never read
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
