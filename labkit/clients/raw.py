"""The floor of every transport comparison: a reply read as one JSON line per token over bare TCP.

It talks to :mod:`labkit.bench.rawtcp`'s server (``tcp://host:port``), which plans the same tokens as
the model server does, so what the other transports add can be measured against it. It reads
through a :class:`~.arrival.StampedSocket`, as the benchmarks' other lean clients do, so each token
has its arrival at the socket (the kernel's stamp) beside its arrival at the application.
"""

from __future__ import annotations

import json
import time

from .arrival import open_stamped
from .timing import TimedStream, TimedToken

__all__ = ["raw_tcp_chat"]


async def raw_tcp_chat(url: str, prompt: str, *, seed: int, max_tokens: int, model: str = "gpt-4o-mini") -> TimedStream:
    """One reply from the raw TCP server at ``url`` (``tcp://host:port``), each token with its arrival times."""
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    result = TimedStream(transport="raw", start_wall=time.time())
    async with await open_stamped(host, int(port)) as sock:
        await sock.send(json.dumps({"prompt": prompt, "seed": seed, "model": model, "max_tokens": max_tokens}).encode()
                        + b"\n")
        result.request_wall = time.time()
        buffer, done = b"", False
        while not done and (read := await sock.read()).data:
            buffer += read.data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if msg.get("done"):
                    done = True
                    break
                result.tokens.append(TimedToken(msg["content"], read.app_wall - result.start_wall, read.app_wall,
                                                msg["seq"], msg["t"], read.kernel_wall))
    result.total_s = result.tokens[-1].t if result.tokens else 0.0
    return result
