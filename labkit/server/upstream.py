"""Where the app server gets its tokens: an ``AsyncOpenAI`` client, local or real.

The app server reaches the model only through the OpenAI API, as a production app does. Offline
that API is this same server's ``/v1`` (the simulated model); with ``OPENAI_API_KEY`` it is
OpenAI's service. Swapping is a base URL and a key, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import openai
from openai import AsyncOpenAI

from ..protocol.openai_chat import APIError
from .state import ServerConfig

__all__ = ["Upstream", "UpstreamToken", "LOCAL_API_KEY"]

#: Any non-empty key satisfies the SDK; the local model server accepts any key unless configured.
LOCAL_API_KEY = "lab-local-key"


@dataclass(frozen=True)
class UpstreamToken:
    content: str
    received_wall: float        # time.time() when the app server got it from the model


class Upstream:
    def __init__(self, config: ServerConfig):
        self.config = config
        self._client: AsyncOpenAI | None = None

    @property
    def client(self) -> AsyncOpenAI:
        if self._client is None:
            if not self.config.upstream_base_url:
                raise RuntimeError("the app server has no upstream model URL yet (is the server started?)")
            # The SDK's default pool allows 1,000 connections; one stream holds one, so a busy app
            # server would queue streams behind it. The limit is the server's to choose.
            limits = httpx.Limits(max_connections=self.config.upstream_max_connections, max_keepalive_connections=200)
            self._client = AsyncOpenAI(base_url=self.config.upstream_base_url,
                                       api_key=self.config.upstream_api_key or LOCAL_API_KEY,
                                       http_client=openai.DefaultAsyncHttpxClient(limits=limits))
        return self._client

    async def open_stream(self, messages: list[dict], *, model: str | None = None, max_tokens: int | None = None,
                          temperature: float | None = None, seed: int | None = None) -> "UpstreamStream":
        """Start a streamed completion; upstream HTTP errors raise :class:`APIError` before any token."""
        params = {k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature), ("seed", seed))
                  if v is not None}
        try:
            stream = await self.client.chat.completions.create(
                model=model or self.config.default_model, messages=messages, stream=True, **params)
        except openai.APIStatusError as e:
            raise _as_api_error(e) from None
        except openai.APIConnectionError as e:
            raise APIError(502, f"The model service could not be reached: {e.__class__.__name__}.",
                           type="server_error", code="upstream_unreachable") from None
        return UpstreamStream(stream)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


class UpstreamStream:
    """Tokens of one upstream completion. Closing it (or leaving ``async with``) cancels the upstream work."""

    def __init__(self, stream):
        self._stream = stream
        self.finish_reason: str | None = None

    async def __aenter__(self) -> "UpstreamStream":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._stream.close()

    async def tokens(self) -> AsyncIterator[UpstreamToken]:
        try:
            async for chunk in self._stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    yield UpstreamToken(choice.delta.content, time.time())
                if choice.finish_reason:
                    self.finish_reason = choice.finish_reason
        except openai.APIError as e:          # an error frame in the middle of the stream
            raise APIError(502, e.message or "The model failed mid-stream.", type="server_error",
                           code="upstream_error") from None


def _as_api_error(e: openai.APIStatusError) -> APIError:
    body = e.body if isinstance(e.body, dict) else {}
    return APIError(e.status_code, body.get("message") or e.message, type=body.get("type") or "invalid_request_error",
                    param=body.get("param"), code=body.get("code"))
