"""The peer every streaming benchmark measures the lab against: a relay written the usual way.

What most tutorials and production apps write to put a model's stream behind their own route: one
``AsyncOpenAI`` client, ``await client.chat.completions.create(stream=True)``, ``async for chunk in
stream`` over the SDK's typed chunks (pydantic models), and one SSE event per chunk, sent either

* by FastAPI's ``StreamingResponse`` over an async generator of ``str`` (``POST /peer/streaming``), or
* by ``sse-starlette``'s ``EventSourceResponse`` over an async generator of dicts
  (``POST /peer/sse-starlette``, its default 15 s ping).

It runs in its own process, in the same topology as the lab's app server (model server -> relay ->
client, each its own process, uvicorn with its defaults), and takes the lab's request body
(``message`` or ``messages``, ``model``, ``seed``, ``max_tokens``). Its events are the lab's
(``event: token`` with ``{"seq", "content", "t"}``, then ``event: done``), so the benchmarks' clients
read both the same way: ``seq`` and the send time ``t`` are the benchmark's instruments, the only
thing added to the usual code. ``python -m labkit.bench.peer --upstream-base-url URL --port 0``
prints its URL.
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from sse_starlette import EventSourceResponse

__all__ = ["create_peer_app", "PEER_ROUTES"]

#: Benchmark row name -> the peer's route.
PEER_ROUTES = {"peer-streaming": "/peer/streaming", "peer-sse-starlette": "/peer/sse-starlette"}


def _request(body: dict) -> dict:
    messages = body.get("messages") or [{"role": "user", "content": body.get("message", "")}]
    params = {k: body[k] for k in ("seed", "max_tokens", "temperature") if body.get(k) is not None}
    return {"model": body.get("model") or "gpt-4o-mini", "messages": messages, **params}


def create_peer_app(upstream_base_url: str, api_key: str = "lab-local-key") -> FastAPI:
    app = FastAPI(title="usual relay (benchmark peer)")
    client = AsyncOpenAI(base_url=upstream_base_url, api_key=api_key)

    async def tokens(body: dict, end: dict):
        """(seq, content) of each chunk with content, from the SDK's typed chunks; ``end`` gets the
        finish reason."""
        stream = await client.chat.completions.create(stream=True, **_request(body))
        seq = 0
        async for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.delta.content:
                yield seq, choice.delta.content
                seq += 1
            if choice.finish_reason:
                end["finish_reason"] = choice.finish_reason

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/peer/streaming")
    async def streaming(request: Request) -> StreamingResponse:
        body = await request.json()

        async def events():
            end = {"finish_reason": None}
            async for seq, content in tokens(body, end):
                data = json.dumps({"seq": seq, "content": content, "t": time.time()})
                yield f"event: token\nid: {seq}\ndata: {data}\n\n"
            yield f"event: done\ndata: {json.dumps(end)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/peer/sse-starlette")
    async def sse_starlette(request: Request) -> EventSourceResponse:
        body = await request.json()

        async def events():
            end = {"finish_reason": None}
            async for seq, content in tokens(body, end):
                yield {"event": "token", "id": str(seq),
                       "data": json.dumps({"seq": seq, "content": content, "t": time.time()})}
            yield {"event": "done", "data": json.dumps(end)}

        return EventSourceResponse(events())

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-base-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import resource

    from ..server.runner import bind_socket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sock = bind_socket(args.host, args.port)
    print(f"peer relay listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(create_peer_app(args.upstream_base_url), log_level="warning", timeout_graceful_shutdown=1)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
