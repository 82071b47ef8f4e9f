"""Chapter 06's experiments, as functions: the notebook runs them small, ``bench latency`` runs them big.

Each takes the URL(s) of servers that are already running and returns plain data (dicts and lists)
measured in that run; nothing here is a constant copied from elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from openai import AsyncOpenAI

from ..clients import collect, sdk_chat
from ..clients.timing import Clock, TimedStream, TimedToken
from ..config import LOCAL_API_KEY
from ..model import PROFILES, count_message_tokens
from ..protocol.sse import SSEDecoder
from .load import run_load
from .metrics import request_metrics
from .stats import summarize

__all__ = ["streaming_vs_not", "ttft_vs_prompt_length", "optimize_prompt", "model_table", "select_model",
           "SweepServer", "concurrency_sweep", "lab_sse_request", "tutorial_sse_request", "network_conditions", "proxy_buffering",
           "transport_overhead"]

PROMPT = "Why does streaming make a chat feel faster?"
FILLER = "The lab measures latency carefully, one request at a time, with clocks that never go backwards. "


# ------------------------------------------------------------------------------------------ 1 streaming

async def streaming_vs_not(base_url: str, *, model: str = "gpt-4o", runs: int = 6) -> dict:
    """Perceived latency: TTFT when streaming against the whole wait when not, same prompt and seeds."""
    client = AsyncOpenAI(base_url=base_url, api_key=LOCAL_API_KEY)

    async def plain(seed: int) -> float:
        t0 = time.perf_counter()
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}], seed=seed)
        return time.perf_counter() - t0

    totals = await asyncio.gather(*(plain(s) for s in range(runs)))
    streams = await asyncio.gather(*(collect(sdk_chat(client, PROMPT, model=model, seed=s)) for s in range(runs)))
    await client.close()
    return {"model": model, "runs": runs, "not_streamed_total_ms": summarize(totals, 1000),
            "streamed_ttft_ms": summarize((s.ttft_s for s in streams), 1000),
            "streamed_total_ms": summarize((s.total_s for s in streams), 1000)}


# ------------------------------------------------------------------------------------------ 2 prompt length

def optimize_prompt(prompt: str) -> str:
    """The tutorial's prompt optimiser: collapse whitespace, cut beyond 4000 characters."""
    prompt = " ".join(prompt.split())
    return prompt[:4000] + "..." if len(prompt) > 4000 else prompt


async def _warm_up(client: AsyncOpenAI, model: str, requests: int) -> None:
    """A connection for each of ``requests`` concurrent requests, opened before anything is measured
    (otherwise some measured requests also pay for connecting)."""
    await asyncio.gather(*(collect(sdk_chat(client, PROMPT, model=model, seed=s, max_tokens=1))
                           for s in range(requests)))


async def ttft_vs_prompt_length(base_url: str, *, model: str = "slow-large", lengths=(0, 250, 500, 1000, 2000),
                                reps: int = 3, rounds: int = 2) -> dict:
    """TTFT against prompt tokens; a least-squares line recovers the profile's prefill cost.

    Each point (a length and a seed) is measured ``rounds`` times and its fastest run kept: a busy
    machine only ever adds time, and it adds more to the longer prompts (more to encode, send and
    count), so one busy moment tilted the line (210 ms per 1k tokens where the profile says 160,
    once in a full test run on a shared machine)."""
    client = AsyncOpenAI(base_url=base_url, api_key=LOCAL_API_KEY)
    async def point(words: int, rep: int) -> tuple[int, float]:
        prompt = (FILLER * (words // 15 + 1)).split()[:words]
        text = PROMPT + " " + " ".join(prompt)
        stream = await collect(sdk_chat(client, text, model=model, seed=rep, max_tokens=2))
        return count_message_tokens([{"role": "user", "content": text}]), stream.ttft_s

    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    grid = [(words, rep) for words in lengths for rep in range(reps)]
    await _warm_up(client, model, len(grid))
    # a round's points concurrently: the server is asynchronous, so one request's prefill does not delay another's
    runs = [await asyncio.gather(*(point(words, rep) for words, rep in grid)) for _ in range(rounds)]
    points = [min(tries, key=lambda p: p[1]) for tries in zip(*runs)]
    x, y = np.array([p[0] for p in points], float), np.array([p[1] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    # the tutorial's optimiser on a prompt padded with whitespace, as pasted text often is
    padded = "\n\n   ".join(FILLER for _ in range(40)).replace(" ", "    ")
    before = count_message_tokens([{"role": "user", "content": padded}])
    after = count_message_tokens([{"role": "user", "content": optimize_prompt(padded)}])
    timed = {}
    for name, text in (("padded", padded), ("optimized", optimize_prompt(padded))):
        runs = await asyncio.gather(*(collect(sdk_chat(client, text, model=model, seed=r, max_tokens=2))
                                      for r in range(reps)))
        timed[name] = float(np.median([r.ttft_s for r in runs]))
    await client.close()
    profile = PROFILES.get(model)
    return {"model": model, "points": [{"prompt_tokens": t, "ttft_s": s} for t, s in points],
            "fit": {"prefill_ms_per_1k_tokens": round(1e6 * slope, 1), "base_ms": round(1000 * intercept, 1)},
            "profile": None if profile is None else {"prefill_ms_per_1k_tokens": 1e6 * profile.prefill_s_per_token,
                                                     "base_ms": 1000 * profile.ttft_base_s},
            "whitespace": {"tokens_before": before, "tokens_after": after,
                           "ttft_ms_before": round(1000 * timed["padded"], 1),
                           "ttft_ms_after": round(1000 * timed["optimized"], 1)}}


# ------------------------------------------------------------------------------------------ 3 models

async def model_table(base_url: str, *, models=("gpt-4o-mini", "gpt-4o", "gpt-4"), runs: int = 5) -> list[dict]:
    """Measured TTFT and TPOT per model, the numbers a model selector should use."""
    client = AsyncOpenAI(base_url=base_url, api_key=LOCAL_API_KEY)
    await _warm_up(client, models[0], runs * len(models))
    # every model's runs at once: a busy moment of the machine then slows all of them alike (one after
    # another, a pause during one model's runs could reverse two models' order in the table)
    streams = await asyncio.gather(*(collect(sdk_chat(client, PROMPT, model=model, seed=s, max_tokens=40))
                                     for model in models for s in range(runs)))
    rows = []
    for k, model in enumerate(models):
        metrics = [request_metrics([t.t for t in s.tokens]) for s in streams[k * runs:(k + 1) * runs]]
        rows.append({"model": model, "ttft_ms_p50": summarize((m.ttft_s for m in metrics), 1000)["p50"],
                     "ttft_ms_p90": summarize((m.ttft_s for m in metrics), 1000)["p90"],
                     "tpot_ms_p50": summarize((m.tpot_s for m in metrics), 1000)["p50"]})
    await client.close()
    return rows


def select_model(table: list[dict], *, ttft_budget_ms: float, answer_tokens: int = 100,
                 total_budget_ms: float | None = None) -> str | None:
    """The most capable model (the table is ordered small to large) whose *measured* p90 TTFT, and
    estimated total for ``answer_tokens``, fit the budget; None if none does. The tutorial hard-coded
    guesses per "complexity"; measure instead, on your own traffic."""
    best = None
    for row in table:
        total = row["ttft_ms_p90"] + (answer_tokens - 1) * row["tpot_ms_p50"]
        if row["ttft_ms_p90"] <= ttft_budget_ms and (total_budget_ms is None or total <= total_budget_ms):
            best = row["model"]
    return best


# ------------------------------------------------------------------------------------------ 5 concurrency

async def _sse_request(url: str, path: str, body: dict, parse) -> TimedStream:
    """A lean SSE client (asyncio socket, HTTP/1.0, labkit's decoder): the same cost for every server."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode()
    clock = Clock()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), host.encode(), len(payload), payload))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"request failed: {head.splitlines()[0]!r}")
    result, decoder = TimedStream(), SSEDecoder()
    while chunk := await reader.read(65536):
        t = clock.elapsed()
        for event in decoder.feed(chunk):
            text = parse(event)
            if text:
                result.tokens.append(TimedToken(text, t, clock.start_wall + t))
    writer.close()
    result.total_s = result.tokens[-1].t if result.tokens else 0.0
    return result


def lab_sse_request(url: str, i: int, max_tokens: int = 20) -> asyncio.Future:
    body = {"message": PROMPT, "seed": i, "max_tokens": max_tokens}
    return _sse_request(url, "/api/chat/stream", body,
                        lambda e: json.loads(e.data)["content"] if e.event == "token" else None)


def tutorial_sse_request(url: str, i: int, max_tokens: int = 20) -> asyncio.Future:
    body = {"messages": [{"role": "user", "content": PROMPT}]}
    return _sse_request(url, "/api/chat/stream", body, lambda e: json.loads(e.data).get("token"))


@dataclass(frozen=True)
class SweepServer:
    """One app server of a concurrency sweep: its URL and the request its chat route takes (the lab's
    ``{"message"}`` body, or the tutorial's ``{"messages"}``). Said by whoever started the server, never
    guessed from its name: ``SweepServer.lab(url)``, ``SweepServer.tutorial(url)``."""
    url: str
    request: Callable[[str, int], Awaitable[TimedStream]]

    @classmethod
    def lab(cls, url: str) -> "SweepServer":
        return cls(url, lab_sse_request)

    @classmethod
    def tutorial(cls, url: str) -> "SweepServer":
        return cls(url, tutorial_sse_request)


async def concurrency_sweep(servers: dict[str, SweepServer], *, users=(1, 10, 50), requests_per_user: int = 3,
                            min_requests: int = 20, max_seconds: float = 60.0) -> list[dict]:
    """TTFT p50/p99 against concurrent users, for each server (row name -> :class:`SweepServer`), closed
    loop, users ramped in over one second."""
    rows = []
    for name, server in servers.items():
        for n in users:
            count = max(n * requests_per_user, min_requests)  # enough requests for a stable single-user baseline
            result = await run_load(lambda i, server=server: server.request(server.url, i), requests=count,
                                    concurrency=n, ramp_s=1.0 if n > 1 else 0.0, max_seconds=max_seconds,
                                    progress=False)
            s = result.summary()
            rows.append({"server": name, "users": n, "requests": s["requests"], "cancelled": s["cancelled"],
                         "errors": s["errors"], "ttft_ms_p50": s["ttft_ms"]["p50"], "ttft_ms_p99": s["ttft_ms"]["p99"],
                         "tpot_ms_p50": s["tpot_ms"]["p50"]})
    for row in rows:
        single = next(r for r in rows if r["server"] == row["server"] and r["users"] == min(users))
        row["p99_ratio_to_single_user"] = (round(row["ttft_ms_p99"] / single["ttft_ms_p99"], 2)
                                           if row["ttft_ms_p99"] and single["ttft_ms_p99"] else None)
    return rows


# ------------------------------------------------------------------------------------------ 7 network

async def network_conditions(app_port: int, *, profiles=("lan", "wifi", "4g", "3g"), reps: int = 2,
                             max_tokens: int = 12) -> list[dict]:
    """TTFT and total time per transport through :class:`labkit.netem.NetemProxy`, per network profile.

    SSE and a fresh WebSocket pay for a new connection (and the WebSocket handshake) on every
    question; a WebSocket kept open pays only the round trip of the question itself."""
    from ..clients import WSChat, sse_chat, ws_chat
    from ..netem import PROFILES as NETWORKS
    from ..netem import NetemProxy

    rows = []
    for name in profiles:
        samples: dict[str, list[TimedStream]] = {"SSE": [], "WebSocket (new)": [], "WebSocket (kept open)": []}
        async with NetemProxy(app_port, NETWORKS[name], seed=1) as proxy:
            async with WSChat(proxy.url) as chat:
                await collect(chat.ask("hello", max_tokens=1))            # opened before the clock starts
                await collect(sse_chat(proxy.url, "hello", max_tokens=1))  # and the first request's lazy costs paid
                for rep in range(reps):
                    samples["SSE"].append(await collect(sse_chat(proxy.url, PROMPT, max_tokens=max_tokens, seed=rep)))
                    samples["WebSocket (new)"].append(await collect(ws_chat(proxy.url, PROMPT, max_tokens=max_tokens,
                                                                            seed=rep)))
                    samples["WebSocket (kept open)"].append(await collect(chat.ask(PROMPT, max_tokens=max_tokens,
                                                                                   seed=rep)))
        for transport, streams in samples.items():
            rows.append({"network": name, "transport": transport,
                         "ttft_ms": round(1000 * float(np.median([s.ttft_s for s in streams])), 1),
                         "total_ms": round(1000 * float(np.median([s.total_s for s in streams])), 1)})
    return rows


# ------------------------------------------------------------------------------------------ 6 proxy buffering

async def proxy_buffering(app_port: int, *, max_tokens: int = 40) -> dict:
    """Token arrival times through a private nginx, per route (see :mod:`labkit.nginx`), and directly.

    ``reads`` counts the reads that delivered tokens: a buffered stream arrives in one burst at the
    end, an unbuffered one token by token. The upstream must frame its HTTP/1.0 response by closing
    the connection (``labkit.serve(http="h11")``): nginx 1.22 forwards a *chunked* upstream response
    chunk by chunk even with buffering on, which hides the effect."""
    from ..clients import sse_chat
    from ..nginx import ROUTES, NginxProxy

    out = {}
    with NginxProxy(app_port) as proxy:
        targets = {"direct": f"http://127.0.0.1:{app_port}", **{r: proxy.url(r) for r in ROUTES}}
        for name, url in targets.items():
            stream = await collect(sse_chat(url, PROMPT, max_tokens=max_tokens, seed=1))
            arrivals = [t.t for t in stream.tokens]
            reads = len(set(round(t, 6) for t in arrivals))
            out[name] = {"arrivals_s": arrivals, "tokens": len(arrivals), "reads": reads,
                         "ttft_ms": round(1000 * arrivals[0], 1), "total_ms": round(1000 * arrivals[-1], 1)}
    return out


# ------------------------------------------------------------------------------------------ 4 transports

async def transport_overhead(app_url: str, model_base_url: str, raw_url: str, *, runs: int = 3,
                             max_tokens: int = 20) -> list[dict]:
    """Time to first token and to the last token for the same replies (same seeds, same token schedule)
    over HTTP, SSE, WebSocket, the OpenAI SDK straight to the model server, and a raw TCP floor."""
    from ..clients import http_chat, raw_tcp_chat, sse_chat, ws_chat

    client = AsyncOpenAI(base_url=model_base_url, api_key=LOCAL_API_KEY)
    make = {
        "HTTP (whole reply)": lambda s: collect(http_chat(app_url, PROMPT, seed=s, max_tokens=max_tokens)),
        "SSE": lambda s: collect(sse_chat(app_url, PROMPT, seed=s, max_tokens=max_tokens)),
        "WebSocket": lambda s: collect(ws_chat(app_url, PROMPT, seed=s, max_tokens=max_tokens)),
        "SDK to the model directly": lambda s: collect(sdk_chat(client, PROMPT, seed=s, max_tokens=max_tokens)),
        "raw TCP (the floor)": lambda s: raw_tcp_chat(raw_url, PROMPT, seed=s, max_tokens=max_tokens),
    }
    rows = []
    for name, request in make.items():                 # each transport's runs at once (the servers are async)
        streams = await asyncio.gather(*(request(seed) for seed in range(runs)))
        rows.append({"transport": name, "ttft_ms_p50": summarize((s.ttft_s for s in streams), 1000)["p50"],
                     "total_ms_p50": summarize((s.total_s for s in streams), 1000)["p50"]})
    await client.close()
    return rows
