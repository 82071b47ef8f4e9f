"""What a third-party chat client receives, validated on its way in: an ``httpx2`` transport that
checks every Chat Completions body (each SSE chunk, or the whole completion) strictly against the
SDK's models, while the client reads it unchanged. Give ``checked_http_client()`` to any client
built on the ``openai`` SDK (``AsyncOpenAI(http_client=...)``, ``ChatOpenAI(http_async_client=...)``)."""

from __future__ import annotations

import httpx2
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from labkit.protocol.sse import SSEDecoder


class ValidatingTransport(httpx2.AsyncBaseTransport):
    def __init__(self):
        self.inner = httpx2.AsyncHTTPTransport()
        self.chunks = 0            # streamed chunks validated
        self.completions = 0       # whole completions validated

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/chat/completions") or response.status_code != 200:
            return response
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return httpx2.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                                   stream=_CheckedStream(response.stream, self))
        body = b"".join([part async for part in response.stream])
        await response.stream.aclose()
        ChatCompletion.model_validate_json(body, strict=True)
        self.completions += 1
        return httpx2.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                               stream=httpx2.ByteStream(body))

    async def aclose(self):
        await self.inner.aclose()


class _CheckedStream(httpx2.AsyncByteStream):
    def __init__(self, inner, owner: ValidatingTransport):
        self.inner, self.owner = inner, owner

    async def __aiter__(self):
        decoder = SSEDecoder()
        async for part in self.inner:
            for event in decoder.feed(part):
                if event.data != "[DONE]":
                    ChatCompletionChunk.model_validate_json(event.data, strict=True)
                    self.owner.chunks += 1
            yield part

    async def aclose(self):
        await self.inner.aclose()


def checked_http_client() -> tuple[httpx2.AsyncClient, ValidatingTransport]:
    transport = ValidatingTransport()
    return httpx2.AsyncClient(transport=transport, timeout=60), transport
