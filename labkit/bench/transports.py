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

Per token, *delivery delay* = arrival time at the client − the token's server timestamp ``t`` (both
``time.time()`` on one machine). Where ``t`` is stamped differs, and is kept as it is (``definitions``
in the JSON): the raw floor stamps just before its write; the lab's app server stamps when its
producer has parsed the token from the upstream, *before* it is written, so the lab's delay
includes whatever lies between its read and its write (since session 6 the producer writes each
read's tokens to every reader's socket in the same step, ``StreamHub.open_push``; before, a reader
task was woken to write them); the peers stamp just before their write, after their (late)
upstream read, so theirs does not. For HTTP the token is stamped when the server has it, but
the client gets it only with the whole reply: that wait is HTTP's delivery delay. TTFT is measured
from the client sending the request to the first token with content.

The peers (:mod:`labkit.bench.peer`, issue #18): the same SSE relayed the usual way, by FastAPI's
``StreamingResponse`` and by ``sse-starlette``'s ``EventSourceResponse`` over the SDK's typed chunks,
each in its own process between the same model server and the same lean client, run in the same
run as the lab's relay (rows ``peer-streaming`` and ``peer-sse-starlette``).

CPU: each server process's CPU seconds (``/proc``) are read before and after every run, so each row
says what 1,000 delivered tokens cost the relay process and the model process. Then each relay is
run once more with cProfile on at the top level (``--quick``: the lab's SSE only; the relays run
under :mod:`labkit.bench.cpuprofile`, which costs nothing until then), and its CPU is split by layer.

Besides delivery delay (from the relay's send to the client), each row has the *extra inter-token
delay* against the model's exact schedule (as ``bench load`` measures it): a relay that reads its
upstream late shows there, not in its delivery delay.

Targets: at 100 clients, the p99 delivery delay of SSE and of WebSocket is within ``2 x raw p99 +
1 ms`` (issue #2); the lab's SSE p99 is at most half each peer's (issue #18; at 1,000 clients that
is ``bench load``'s). The JSON reports each ratio and whether each target is met.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import tempfile
import time

import httpx

from ..clients import collect, http_chat, sse_chat, ws_chat
from ..clients.raw import raw_tcp_chat
from ..clients.timing import Clock, TimedStream, TimedToken
from ..latency import summarize
from ..model import plan_completion, resolve_model
from ..protocol.sse import SSEDecoder
from ..server.process import ServerProcess
from .cpuprofile import ProfiledWindow, layer_seconds, process_cpu_s
from .peer import PEER_ROUTES

PROMPT = "How do Server-Sent Events work?"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 48
QUICK_MAX_TOKENS = 12
#: ``sse-upstream-httpx``: the lab's SSE from a second app server whose SDK client runs on httpx
#: (``serve --upstream-http httpx``) instead of aiohttp: what the upstream transport costs.
TRANSPORTS = ("raw", "http", "sse", "ws", "sse-httpx", "sse-upstream-httpx", *PEER_ROUTES)
#: The lab's relay routes and the peers: the rows whose relay process is profiled.
RELAYS = ("sse", "ws", "sse-upstream-httpx", *PEER_ROUTES)
#: Where each relay stamps a token's ``t`` (delivery delay = arrival at the client - ``t``).
DEFINITIONS = {
    "delivery_delay": "client arrival time - the token's server timestamp t (time.time(), one machine)",
    "t of raw": "just before the raw TCP server writes the token",
    "t of the lab (sse, ws, sse-upstream-httpx, http)": "when the app server's producer has parsed the token from "
    "its upstream, before it is written: whatever lies between the lab's read and its write is inside the delay "
    "(the producer writes each read's tokens to its readers' sockets in the same step, StreamHub.open_push)",
    "t of the peers": "just before the peer writes the event, after its own (possibly late) upstream read: its "
    "queue before that is not inside its delivery delay, only inside its extra inter-token delay",
    "extra_inter_token_delay": "per token after the first: its arrival gap minus the gap in the model's exact "
    "schedule (a queue anywhere between the model and the client)",
    "cpu_s_per_1k_tokens": "user + system CPU seconds of the relay process (/proc) during the run, per 1,000 "
    "tokens delivered; the lab's servers run with --no-access-log, as the peers log nothing per request",
}
#: The lab's servers run without uvicorn's access log, as the peers do (they log at "warning" only).
QUIET = ("--no-access-log",)
#: The lab's p99 must be at most this share of each peer's (issue #18).
PEER_TARGET_SHARE = 0.5


async def _raw_request(url: str, seed: int, max_tokens: int) -> TimedStream:
    """The floor: one JSON line per token over a bare TCP connection."""
    return await raw_tcp_chat(url, PROMPT, seed=seed, max_tokens=max_tokens, model=MODEL)


async def _socket_sse_request(url: str, seed: int, max_tokens: int, path: str = "/api/chat/stream",
                              transport: str = "sse") -> TimedStream:
    """SSE read by a client as lean as the floor's: an asyncio socket and labkit's SSE decoder.

    It speaks HTTP/1.0, so the server sends the event stream as-is (no chunked framing) and
    closes it at the end."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"message": PROMPT, "seed": seed, "model": MODEL, "max_tokens": max_tokens}).encode()
    clock = Clock()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"SSE request failed: {head.splitlines()[0]!r}")
    result, decoder = TimedStream(transport=transport), SSEDecoder()
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
    if transport == "sse-upstream-httpx":
        return await _socket_sse_request(urls["app-httpx"], seed, max_tokens, transport=transport)
    if transport in PEER_ROUTES:
        return await _socket_sse_request(urls["peer"], seed, max_tokens, PEER_ROUTES[transport], transport)
    if transport == "ws":
        return await collect(ws_chat(urls["app"], PROMPT, coalesce=True, **options), "ws")
    if transport == "http":
        return await collect(http_chat(urls["app"], PROMPT, client=http, **options), "http")
    if transport == "sse-httpx":
        return await collect(sse_chat(urls["app"], PROMPT, client=http, **options), "sse-httpx")
    raise ValueError(transport)


def _extra_gaps(streams: list[TimedStream], max_tokens: int) -> list[float]:
    """Per token after the first: its arrival gap minus the gap in the model's exact schedule (client
    ``i`` has seed ``i``). Unlike delivery delay, which starts when the relay *sends*, this sees a
    queue anywhere between the model and the client (a relay that reads its upstream late, too)."""
    profile, messages = resolve_model(MODEL), [{"role": "user", "content": PROMPT}]
    gaps = []
    for seed, stream in enumerate(streams):
        due = plan_completion(messages, profile, seed=seed, max_tokens=max_tokens).due_s
        times = [t.t for t in stream.tokens]
        if len(times) != len(due):
            continue
        gaps += [(times[k] - times[k - 1]) - (due[k] - due[k - 1]) for k in range(1, len(times))]
    return gaps


def relay_of(transport: str) -> str:
    """Which server process relays ``transport`` (its CPU is the row's relay CPU)."""
    if transport in ("raw", "sse-upstream-httpx"):
        return {"raw": "raw", "sse-upstream-httpx": "app-httpx"}[transport]
    return "peer" if transport in PEER_ROUTES else "app"


async def _level(transport: str, clients: int, urls: dict, max_tokens: int, pids: dict | None = None) -> dict:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    pids = pids or {}
    relay = relay_of(transport)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        cpu0 = {name: process_cpu_s(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        streams = await asyncio.gather(*(_one(transport, urls, seed, max_tokens, http) for seed in range(clients)))
        wall = time.perf_counter() - t0
        cpu = {name: process_cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
    delays = [tok.delivery_delay for s in streams for tok in s.tokens]
    tokens = sum(s.n_tokens for s in streams)
    extra = _extra_gaps(streams, max_tokens)
    row = {
        "transport": transport, "clients": clients, "requests": len(streams),
        "tokens": tokens, "wall_s": round(wall, 3),
        "delivery_delay_ms": summarize(delays, 1000),
        "ttft_ms": summarize((s.ttft_s for s in streams), 1000),
        "extra_inter_token_delay_ms": summarize(extra, 1000) if extra else None,
    }
    if relay in cpu and tokens:
        row["cpu_s_per_1k_tokens"] = {"relay": round(1000 * cpu[relay] / tokens, 4),
                                      "model": round(1000 * cpu["model"] / tokens, 4) if "model" in cpu else None}
    return row


async def _run_all(levels: list[int], urls: dict, max_tokens: int, pids: dict | None = None) -> list[dict]:
    rows = []
    for clients in levels:
        for transport in TRANSPORTS:
            await _level(transport, min(clients, 5), urls, max_tokens)   # warm up connections and code paths
            row = await _level(transport, clients, urls, max_tokens, pids)
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


def peer_ratios(rows: list[dict], lab: str = "sse", share: float = PEER_TARGET_SHARE) -> list[dict]:
    """The lab's p99 delivery delay against each peer's at the same concurrency (target: <= ``share``)."""
    out = []
    for row in rows:
        if row["transport"] not in PEER_ROUTES:
            continue
        mine = next(r for r in rows if r["transport"] == lab and r["clients"] == row["clients"])
        p99, peer = mine["delivery_delay_ms"]["p99"], row["delivery_delay_ms"]["p99"]
        entry = {"lab": lab, "peer": row["transport"], "clients": row["clients"], "lab_p99_ms": p99,
                 "peer_p99_ms": peer, "ratio": round(p99 / peer, 3) if peer else None,
                 "met": bool(peer) and p99 <= share * peer}
        if mine.get("extra_inter_token_delay_ms") and row.get("extra_inter_token_delay_ms"):
            e_mine, e_peer = mine["extra_inter_token_delay_ms"]["p99"], row["extra_inter_token_delay_ms"]["p99"]
            entry["extra_delay"] = {"lab_p99_ms": e_mine, "peer_p99_ms": e_peer,
                                    "ratio": round(e_mine / e_peer, 3) if e_peer > 0 else None,
                                    "met": e_peer > 0 and e_mine <= share * e_peer}
        out.append(entry)
    return out


def _profile_relays(transports, clients: int, urls: dict, servers: dict, max_tokens: int) -> dict:
    """Each relay once more with cProfile on (its server runs under :mod:`labkit.bench.cpuprofile`,
    inert until then): CPU per layer per 1,000 tokens."""
    out = {}
    for transport in transports:
        server, path = servers[relay_of(transport)]
        with ProfiledWindow(server.proc.pid, path) as window:
            row = asyncio.run(_level(transport, clients, urls, max_tokens, {"relay": server.proc.pid}))
        layers = layer_seconds(window.stats())
        total = sum(layers.values()) or 1.0
        tokens = row["tokens"] or 1
        out[transport] = {
            "clients": clients, "tokens": row["tokens"],
            "profiled_cpu_s_per_1k_tokens": round(1000 * total / tokens, 4),
            "layers": {name: {"cpu_s_per_1k_tokens": round(1000 * s / tokens, 4), "share": round(s / total, 3)}
                       for name, s in layers.items() if s / total >= 0.005},
        }
        print(f"  profile {transport:>18}: {out[transport]['profiled_cpu_s_per_1k_tokens']:.3f} CPU s per 1k tokens "
              f"(under cProfile); top: {next(iter(layers))}", file=sys.stderr, flush=True)
    return out


def _profilable(args: list[str], path: str) -> ServerProcess:
    """A server process under :mod:`labkit.bench.cpuprofile`: unprofiled until a window opens."""
    return ServerProcess(["--out", path, *args], module="labkit.bench.cpuprofile", timeout_s=120)


def run(quick: bool = False, profile: bool | None = None) -> dict:
    levels = [1, 10] if quick else [1, 10, 100]
    max_tokens = QUICK_MAX_TOKENS if quick else MAX_TOKENS
    profile = True if profile is None else profile
    print(f"transports benchmark: {len(levels) * len(TRANSPORTS)} runs at {levels} clients", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp, \
            ServerProcess(["serve", "--port", "0", *QUIET]) as model, \
            _profilable(["-m", "labkit", "serve", "--port", "0", *QUIET, "--upstream-base-url", model.url + "/v1"],
                        f"{tmp}/app.prof") as app, \
            _profilable(["-m", "labkit", "serve", "--port", "0", *QUIET, "--upstream-base-url", model.url + "/v1",
                         "--upstream-http", "httpx"], f"{tmp}/app-httpx.prof") as app_httpx, \
            _profilable(["-m", "labkit.bench.peer", "--upstream-base-url", model.url + "/v1", "--port", "0"],
                        f"{tmp}/peer.prof") as peer, \
            ServerProcess(["--port", "0"], module="labkit.bench.rawtcp", health_path=None) as raw:
        pids = {"model": model.proc.pid, "app": app.proc.pid, "app-httpx": app_httpx.proc.pid, "peer": peer.proc.pid,
                "raw": raw.proc.pid}
        urls = {"app": app.url, "app-httpx": app_httpx.url, "raw": raw.url, "peer": peer.url}
        rows = asyncio.run(_run_all(levels, urls, max_tokens, pids))
        # quick: the lab's SSE relay alone (the profiler's own path, checked in a smoke test)
        servers = {"app": (app, f"{tmp}/app.prof"), "app-httpx": (app_httpx, f"{tmp}/app-httpx.prof"),
                   "peer": (peer, f"{tmp}/peer.prof")}
        profiles = (_profile_relays(RELAYS[:1] if quick else RELAYS, max(levels), urls, servers, max_tokens)
                    if profile else None)
    ratios = _ratios(rows)
    peers = peer_ratios(rows)
    at_top = [r for r in ratios if r["clients"] == max(levels) and r["transport"] in ("sse", "ws")]
    peers_at_top = [r for r in peers if r["clients"] == max(levels)]
    return {
        "benchmark": "transports",
        "description": __doc__.strip().splitlines()[0],
        "setup": {"model": MODEL, "max_tokens": max_tokens, "prompt": PROMPT, "levels": levels,
                  "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                  "processes": "model server, app server, raw TCP server and load generator each in their own"},
        "definitions": DEFINITIONS,
        "results": rows,
        "ratios": ratios,
        "peer_ratios": peers,
        "cpu_s_per_1k_tokens": {r["transport"]: r["cpu_s_per_1k_tokens"] for r in rows
                                if r["clients"] == max(levels) and "cpu_s_per_1k_tokens" in r},
        "profile": profiles,
        "target": {"rule": "SSE and WebSocket p99 delivery delay <= 2 x raw p99 + 1 ms at the top level",
                   "clients": max(levels), "met": all(r["within_bound"] for r in at_top)},
        "targets": {
            f"SSE and WebSocket p99 delivery delay <= 2 x raw p99 + 1 ms at {max(levels)} clients": {
                "value": {r["transport"]: r["ratio_to_raw"] for r in at_top}, "clients": max(levels),
                "met": all(r["within_bound"] for r in at_top)},
            f"lab SSE p99 delivery delay <= {PEER_TARGET_SHARE:g} x each peer's at {max(levels)} clients": {
                "value": {r["peer"]: r["ratio"] for r in peers_at_top}, "clients": max(levels),
                "met": all(r["met"] for r in peers_at_top)},
            f"lab SSE p99 extra inter-token delay <= {PEER_TARGET_SHARE:g} x each peer's at {max(levels)} clients": {
                "value": {r["peer"]: r.get("extra_delay", {}).get("ratio") for r in peers_at_top},
                "clients": max(levels),
                "met": all(r.get("extra_delay", {}).get("met", False) for r in peers_at_top)},
        },
    }
