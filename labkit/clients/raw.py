"""The floor of every transport comparison: a reply read as one JSON line per token over bare TCP.

It talks to :mod:`labkit.bench.rawtcp`'s server (``tcp://host:port``), which plans the same tokens as
the model server does, so what the other transports add can be measured against it.
"""

from __future__ import annotations

import asyncio
import json

from .timing import Clock, TimedStream, TimedToken

__all__ = ["raw_tcp_chat"]


async def raw_tcp_chat(url: str, prompt: str, *, seed: int, max_tokens: int, model: str = "gpt-4o-mini") -> TimedStream:
    """One reply from the raw TCP server at ``url`` (``tcp://host:port``), each token with its arrival time."""
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    clock = Clock()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(json.dumps({"prompt": prompt, "seed": seed, "model": model, "max_tokens": max_tokens}).encode() + b"\n")
    await writer.drain()
    result = TimedStream(transport="raw")
    try:
        while line := await reader.readline():
            t = clock.elapsed()
            msg = json.loads(line)
            if msg.get("done"):
                break
            result.tokens.append(TimedToken(msg["content"], t, clock.start_wall + t, msg["seq"], msg["t"]))
    finally:
        writer.close()
    result.total_s = result.tokens[-1].t if result.tokens else 0.0
    return result
