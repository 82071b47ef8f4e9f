"""Benchmark: what each transport adds to token delivery, at 1, 10 and 100 concurrent clients.

Setup (each in its own process, so no two share a GIL): the model server (``/v1``), the app
server whose HTTP, SSE and WebSocket routes stream from it through ``AsyncOpenAI``, and a raw
asyncio TCP server that plans the same tokens itself — the floor no transport can beat. The load
generator runs here. Client ``i`` always sends the same prompt with seed ``i``, so every transport
delivers the same tokens on the same schedule.

The load generator's clients are as lean as the floor's (an asyncio socket for raw and SSE, the
``websockets`` library for WebSocket), so that what is measured is the server's transport, not the
client's HTTP library: with 100 streams on 2 shared cores, a pure-Python HTTP client's own CPU
time adds milliseconds of queueing. The row ``sse-httpx`` shows that cost: the same SSE stream
read through labkit's ``sse_chat`` (httpx).

Per token, *delivery delay* = arrival time at the client − the time the server sent it (both
``time.time()`` on one machine). For HTTP the server "sends" a token when it has it, but the
client gets it only with the whole reply: that wait is HTTP's delivery delay. TTFT is measured
from the client sending the request to the first token with content.

Target (issue #2): at 100 clients, the p99 delivery delay of SSE and of WebSocket is within
``2 x raw p99 + 1 ms``. The JSON reports each ratio and whether the target is met.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time

import httpx

from ..clients import collect, http_chat, sse_chat, ws_chat
from ..clients.raw import raw_tcp_chat
from ..clients.timing import Clock, TimedStream, TimedToken
from ..latency import summarize
from ..protocol.sse import SSEDecoder
from ..server.process import ServerProcess

PROMPT = "How do Server-Sent Events work?"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 48
QUICK_MAX_TOKENS = 12
TRANSPORTS = ("raw", "http", "sse", "ws", "sse-httpx")


async def _raw_request(url: str, seed: int, max_tokens: int) -> TimedStream:
    """The floor: one JSON line per token over a bare TCP connection."""
    return await raw_tcp_chat(url, PROMPT, seed=seed, max_tokens=max_tokens, model=MODEL)


async def _socket_sse_request(url: str, seed: int, max_tokens: int) -> TimedStream:
    """SSE read by a client as lean as the floor's: an asyncio socket and labkit's SSE decoder.

    It speaks HTTP/1.0, so the server sends the event stream as-is (no chunked framing) and
    closes it at the end."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"message": PROMPT, "seed": seed, "model": MODEL, "max_tokens": max_tokens}).encode()
    clock = Clock()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/chat/stream HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"SSE request failed: {head.splitlines()[0]!r}")
    result, decoder = TimedStream(transport="sse"), SSEDecoder()
    while chunk := await reader.read(65536):
        t = clock.elapsed()
        for event in decoder.feed(chunk):
            data = json.loads(event.data)
            if event.event == "token":
                result.tokens.append(TimedToken(data["content"], t, clock.start_wall + t, data["seq"], data["t"]))
            elif event.event == "done":
                result.finish_reason = data["finish_reason"]
    writer.close()
    result.total_s = result.tokens[-1].t if result.tokens else 0.0
    return result


async def _one(transport: str, urls: dict, seed: int, max_tokens: int, http: httpx.AsyncClient) -> TimedStream:
    options = {"seed": seed, "max_tokens": max_tokens, "model": MODEL}
    if transport == "raw":
        return await _raw_request(urls["raw"], seed, max_tokens)
    if transport == "sse":
        return await _socket_sse_request(urls["app"], seed, max_tokens)
    if transport == "ws":
        return await collect(ws_chat(urls["app"], PROMPT, **options), "ws")
    if transport == "http":
        return await collect(http_chat(urls["app"], PROMPT, client=http, **options), "http")
    if transport == "sse-httpx":
        return await collect(sse_chat(urls["app"], PROMPT, client=http, **options), "sse-httpx")
    raise ValueError(transport)


async def _level(transport: str, clients: int, urls: dict, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        t0 = time.perf_counter()
        streams = await asyncio.gather(*(_one(transport, urls, seed, max_tokens, http) for seed in range(clients)))
        wall = time.perf_counter() - t0
    delays = [tok.delivery_delay for s in streams for tok in s.tokens]
    return {
        "transport": transport, "clients": clients, "requests": len(streams),
        "tokens": sum(s.n_tokens for s in streams), "wall_s": round(wall, 3),
        "delivery_delay_ms": summarize(delays, 1000),
        "ttft_ms": summarize((s.ttft_s for s in streams), 1000),
    }


async def _run_all(levels: list[int], urls: dict, max_tokens: int) -> list[dict]:
    rows = []
    for clients in levels:
        for transport in TRANSPORTS:
            await _level(transport, min(clients, 5), urls, max_tokens)   # warm up connections and code paths
            row = await _level(transport, clients, urls, max_tokens)
            d = row["delivery_delay_ms"]
            print(f"  {transport:>9} x{clients:<3}  delivery p50 {d['p50']:8.2f} ms  p99 {d['p99']:8.2f} ms  "
                  f"TTFT p50 {row['ttft_ms']['p50']:7.1f} ms", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def _ratios(rows: list[dict]) -> list[dict]:
    """Each transport's p99 delivery delay against the raw floor's at the same concurrency."""
    out = []
    for row in rows:
        if row["transport"] == "raw":
            continue
        raw = next(r for r in rows if r["transport"] == "raw" and r["clients"] == row["clients"])
        p99, floor = row["delivery_delay_ms"]["p99"], raw["delivery_delay_ms"]["p99"]
        out.append({"transport": row["transport"], "clients": row["clients"], "p99_ms": p99, "raw_p99_ms": floor,
                    "ratio_to_raw": round(p99 / floor, 2) if floor else None,
                    "bound_ms": round(2 * floor + 1.0, 3), "within_bound": p99 <= 2 * floor + 1.0})
    return out


def run(quick: bool = False) -> dict:
    levels = [1, 10] if quick else [1, 10, 100]
    max_tokens = QUICK_MAX_TOKENS if quick else MAX_TOKENS
    print(f"transports benchmark: {len(levels) * len(TRANSPORTS)} runs at {levels} clients", file=sys.stderr)
    with ServerProcess(["serve", "--port", "0"]) as model, \
            ServerProcess(["serve", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as app, \
            ServerProcess(["--port", "0"], module="labkit.bench.rawtcp", health_path=None) as raw:
        rows = asyncio.run(_run_all(levels, {"app": app.url, "raw": raw.url}, max_tokens))
    ratios = _ratios(rows)
    at_top = [r for r in ratios if r["clients"] == max(levels) and r["transport"] in ("sse", "ws")]
    return {
        "benchmark": "transports",
        "description": __doc__.strip().splitlines()[0],
        "setup": {"model": MODEL, "max_tokens": max_tokens, "prompt": PROMPT, "levels": levels,
                  "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                  "processes": "model server, app server, raw TCP server and load generator each in their own"},
        "results": rows,
        "ratios": ratios,
        "target": {"rule": "SSE and WebSocket p99 delivery delay <= 2 x raw p99 + 1 ms at the top level",
                   "clients": max(levels), "met": all(r["within_bound"] for r in at_top)},
    }
