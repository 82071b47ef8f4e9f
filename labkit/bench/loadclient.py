"""One load-generator process for ``bench load``: N clients of one transport, ramped in, timed.

Run as ``python -m labkit.bench.loadclient --url URL --transport sse|ws --clients N --out PATH``.
Client ``i`` asks ``messages_for(i)`` with seed ``seed_base + i``; it records, per token, the
seconds since it started its request, at the application (``arrivals``) and at the socket
(``socket_arrivals``: the kernel's receive stamp, :mod:`labkit.clients.arrival`; ``None`` where the
kernel gives none), and writes one JSON record per client. Its clients are
:mod:`labkit.clients.lean`'s (SSE over a bare socket, WebSocket on the sans-I/O ``websockets`` protocol).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource

from ..clients.arrival import keep_kernel_stamps
from ..clients.lean import sse_stream, ws_stream
from ..clients.timing import TimedStream
from .gcpause import collector_paused


def messages_for(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Client {i % 50}: how do Server-Sent Events work?"}]


async def _sse(url: str, i: int, seed: int, model: str, max_tokens: int, path: str = "/api/chat/stream") -> TimedStream:
    return await sse_stream(url, {"messages": messages_for(i), "seed": seed, "model": model, "max_tokens": max_tokens},
                            path)


async def _ws(url: str, i: int, seed: int, model: str, max_tokens: int, path: str = "/ws/chat",
              coalesce: bool = False) -> TimedStream:
    message = {"type": "message", "content": messages_for(i)[0]["content"], "seed": seed, "model": model,
               "max_tokens": max_tokens}
    return await ws_stream(url, message, path, coalesce)


async def _client(args, i: int) -> dict:
    await asyncio.sleep(args.ramp_s * i / args.clients)
    seed = args.seed_base + i
    try:
        if args.transport == "sse":
            stream = await _sse(args.url, i, seed, args.model, args.max_tokens, args.path)
        else:
            stream = await _ws(args.url, i, seed, args.model, args.max_tokens, args.path, args.coalesce)
        return {"i": i, "seed": seed, "arrivals": [t.t for t in stream.tokens], "error": None,
                "socket_arrivals": (None if any(t.socket_wall is None for t in stream.tokens)
                                    else [t.socket_wall - stream.start_wall for t in stream.tokens])}
    except Exception as e:
        return {"i": i, "seed": seed, "arrivals": [], "socket_arrivals": None,
                "error": f"{e.__class__.__name__}: {e}"[:200]}


async def _main(args) -> None:
    with collector_paused():                  # this generator's own pauses are not the server's
        results = await asyncio.gather(*(_client(args, i) for i in range(args.clients)))
    with open(args.out, "w") as f:
        json.dump(results, f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--transport", choices=["sse", "ws"], required=True)
    parser.add_argument("--path", default=None, help="the route (default: /api/chat/stream or /ws/chat)")
    parser.add_argument("--coalesce", action="store_true",
                        help="ws: ask for several waiting tokens in one frame (/ws/chat?coalesce=1)")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--ramp-s", type=float, default=4.0)
    parser.add_argument("--model", default="gpt-4o")
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--seed-base", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.coalesce and args.transport != "ws":
        parser.error("--coalesce is for --transport ws")
    args.path = args.path or ("/api/chat/stream" if args.transport == "sse" else "/ws/chat")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # one socket per client
    holder = keep_kernel_stamps()         # the kernel stamps every read, a connection's first ones too
    try:
        asyncio.run(_main(args))
    finally:
        if holder is not None:
            holder.close()


if __name__ == "__main__":
    main()
