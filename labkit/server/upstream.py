"""Where the app server gets its tokens: ``AsyncOpenAI``, local or real.

The app server reaches the model only through the OpenAI API, as a production app does. Offline
that API is this same server's ``/v1`` (the simulated model); with ``OPENAI_API_KEY`` it is
OpenAI's service. Swapping is a base URL and a key, nothing else.

Two things here are about serving many streams at once (``bench load`` measured both):

* the SDK's HTTP transport is aiohttp (``DefaultAioHttpClient``, openai[aiohttp]): per streamed chunk
  it costs about half of httpx's (httpcore, h11 and anyio in pure Python); ``upstream_http="httpx"``
  keeps the SDK's default, for comparison (``bench transports`` row ``sse-upstream-httpx``);
* the stream is opened with the SDK's ``client.post`` (not ``chat.completions.create``, whose parameter
  transform was a fifth of what a new stream cost: the same request bytes, tested) and comes back
  unread (``cast_to=httpx2.Response, stream=True``); its bytes go through the lab's own
  :class:`~labkit.protocol.sse.SSEDecoder` (every line ending, multi-line ``data``), and each event's
  data is parsed with ``json.loads``: the SDK's typed chunks cost ~0.3 ms each to build (pydantic), which at thousands of
  tokens a second is most of a core. The SDK still does the request, the key, retries and HTTP errors;
* on httpx, streams are spread over several clients (``SHARD_SIZE`` streams each): httpx's connection
  pool scans all its connections on every request and release, which grows with the square of the
  number of open streams (aiohttp's pool does not: one client). The clients share one SSL context.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import openai
from openai import AsyncOpenAI

from ..config import DEFAULT_MODEL, LOCAL_API_KEY
from ..protocol.openai_chat import APIError
from ..protocol.sse import SSEDecoder
from .state import LiveSettings, UpstreamConfig

__all__ = ["Upstream", "UpstreamToken", "LOCAL_API_KEY"]

#: Concurrent streams per client (and its connection pool).
SHARD_SIZE = 100


@dataclass(frozen=True)
class UpstreamToken:
    content: str
    received_wall: float        # time.time() when the app server got it from the model


class Upstream:
    """``AsyncOpenAI`` clients to the model, sharded; the model asked for by default is ``live.model``
    (the instructor may switch it while the server runs)."""

    def __init__(self, config: UpstreamConfig, live: LiveSettings | None = None):
        self.config = config
        self.live = live or LiveSettings(DEFAULT_MODEL)
        self._shards: list[AsyncOpenAI] = []
        self._load: list[int] = []          # open streams per shard
        # httpx's pool scans all its connections (see above): shards of SHARD_SIZE; aiohttp's does not
        self._shard_size = SHARD_SIZE if config.upstream_http == "httpx" else config.upstream_max_connections
        self._ssl: ssl.SSLContext | None = None     # one for every shard: each costs ~25 ms of CPU to load

    def _add_shard(self) -> int:
        if not self.config.upstream_base_url:
            raise RuntimeError("the app server has no upstream model URL yet (is the server started?)")
        if self._ssl is None:
            self._ssl = httpx2.create_ssl_context()
        self._shards.append(AsyncOpenAI(base_url=self.config.upstream_base_url,
                                        api_key=self.config.upstream_api_key or LOCAL_API_KEY,
                                        http_client=http_client(self.config.upstream_http, self._shard_size,
                                                                self._ssl)))
        self._load.append(0)
        return len(self._shards) - 1

    def _pick(self) -> int:
        """The least loaded shard, or a new one when all are full (up to upstream_max_connections)."""
        if not self._shards:
            return self._add_shard()
        i = min(range(len(self._shards)), key=self._load.__getitem__)
        if self._load[i] >= self._shard_size and \
                len(self._shards) * self._shard_size < self.config.upstream_max_connections:
            i = self._add_shard()
        return i

    async def open_stream(self, messages: list[dict], *, model: str | None = None, max_tokens: int | None = None,
                          temperature: float | None = None, seed: int | None = None) -> "UpstreamStream":
        """Start a streamed completion; upstream HTTP errors raise :class:`APIError` before any token."""
        # the keys in the order chat.completions.create sends them (the same bytes: tested)
        body = {"model": model or self.live.model, "stream": True, "messages": messages}
        for key, value in (("max_tokens", max_tokens), ("seed", seed), ("temperature", temperature)):
            if value is not None:
                body[key] = value
        shard = self._pick()
        self._load[shard] += 1
        try:
            # The SDK's own client.post (its API for any endpoint), not chat.completions.create: create
            # runs every parameter and message through its TypedDict transform (typing.get_origin,
            # get_args, hashes of annotations), which changes nothing in a chat request and was a fifth
            # of what opening a stream cost the loop; at 200 new streams a second that is the ramp's
            # stutter. The body is the same JSON (tested); the SDK still builds the request, adds the
            # key, retries, and raises its status errors. ``cast_to=httpx2.Response`` with
            # ``stream=True``: the response comes back unread, its bytes are read here.
            # (The app routes validated the messages already: labkit.protocol.app_chat.)
            response = await self._shards[shard].post("/chat/completions", cast_to=httpx2.Response, body=body,
                                                      stream=True)
        except openai.APIStatusError as e:
            self._load[shard] -= 1
            raise _as_api_error(e) from None
        except openai.APIConnectionError as e:
            self._load[shard] -= 1
            cause = f" ({e.__cause__.__class__.__name__})" if e.__cause__ is not None else ""
            raise APIError(502, f"The model service could not be reached: {e.__class__.__name__}{cause}.",
                           type="server_error", code="upstream_unreachable") from None
        except BaseException:
            self._load[shard] -= 1
            raise
        return UpstreamStream(response, lambda: self._release(shard))

    def _release(self, shard: int) -> None:
        self._load[shard] -= 1

    async def aclose(self) -> None:
        for client in self._shards:
            await client.close()


class UpstreamStream:
    """Tokens of one upstream completion. Closing it (or leaving ``async with``) cancels the upstream work."""

    def __init__(self, response: httpx2.Response, release):
        self._response, self._release = response, release
        self._closed = False
        self.finish_reason: str | None = None

    async def __aenter__(self) -> "UpstreamStream":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()
            await self._response.aclose()

    async def tokens(self) -> AsyncIterator[UpstreamToken]:
        """The content of each chunk, decoded from the raw event stream (OpenAI's stream format)."""
        async for contents in self.batches():
            now = time.time()
            for content in contents:
                yield UpstreamToken(content, now)

    async def batches(self) -> AsyncIterator[list[str]]:
        """The contents of the chunks that came in one read of the response (one or more; never empty):
        the hot path of the relay, with no object per token, so that the tokens that arrived together
        are recorded together and their readers woken once. A read that ends in an error frame (or a
        broken chunk) still gives the tokens before it, then raises."""
        decoder = SSEDecoder()
        loads = json.loads
        try:
            async for raw in self._response.aiter_bytes():
                contents: list[str] = []
                failure: APIError | None = None
                for event in decoder.feed(raw):
                    if event.data == "[DONE]":
                        if contents:
                            yield contents
                        return
                    try:
                        self._chunk_contents(loads(event.data), contents)
                    except ValueError as e:
                        failure = _broke_off(e)
                    except APIError as e:
                        failure = e
                    if failure is not None:
                        break
                if contents:
                    yield contents
                if failure is not None:
                    raise failure
        except (httpx2.HTTPError, ValueError) as e:
            raise _broke_off(e) from None

    def _chunk_contents(self, chunk: dict, out: list[str]) -> None:
        if chunk.get("error"):                     # an error frame in the middle of the stream
            err = chunk["error"]
            raise APIError(502, err.get("message") or "The model failed mid-stream.", type="server_error",
                           code="upstream_error")
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                out.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]


def _broke_off(e: Exception) -> APIError:
    return APIError(502, f"The model's stream broke off: {e.__class__.__name__}.", type="server_error",
                    code="upstream_error")


def http_client(kind: str = "aiohttp", streams: int = SHARD_SIZE, verify: ssl.SSLContext | bool = True
                ) -> httpx2.AsyncClient:
    """The SDK's own client for ``AsyncOpenAI(http_client=...)``, on aiohttp or on httpx, for ``streams``
    streams at once (a connection each)."""
    limits = httpx2.Limits(max_connections=streams * 4, max_keepalive_connections=streams)
    if kind == "aiohttp":
        return openai.DefaultAioHttpClient(limits=limits, verify=verify)
    if kind == "httpx":
        return openai.DefaultAsyncHttpxClient(limits=limits, verify=verify)
    raise ValueError(f"upstream_http is 'aiohttp' or 'httpx', not {kind!r}")


def _as_api_error(e: openai.APIStatusError) -> APIError:
    body = e.body if isinstance(e.body, dict) else {}
    return APIError(e.status_code, body.get("message") or e.message, type=body.get("type") or "invalid_request_error",
                    param=body.get("param"), code=body.get("code"))
