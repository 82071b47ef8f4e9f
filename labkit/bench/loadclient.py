"""One load-generator process for ``bench load``: N clients of one transport, ramped in, timed.

Run as ``python -m labkit.bench.loadclient --url URL --transport sse|ws --clients N --out PATH``.
Client ``i`` asks ``messages_for(i)`` with seed ``seed_base + i``; it records, per token, the
seconds since it sent its request, and writes one JSON record per client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import websockets

from ..protocol.sse import SSEDecoder


def messages_for(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Client {i % 50}: how do Server-Sent Events work?"}]


async def _sse(url: str, i: int, seed: int, model: str, max_tokens: int, path: str = "/api/chat/stream") -> list[float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"messages": messages_for(i), "seed": seed, "model": model, "max_tokens": max_tokens}).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise RuntimeError(head.splitlines()[0].decode(errors="replace"))
    arrivals, decoder, done = [], SSEDecoder(), False
    try:
        while chunk := await reader.read(65536):
            t = time.perf_counter() - t0
            for event in decoder.feed(chunk):
                if event.event == "token":
                    arrivals.append(t)
                elif event.event == "done":
                    done = True
                elif event.event == "error":
                    raise RuntimeError("{code}: {message}".format(**{"code": None, "message": "", **json.loads(event.data)}))
    finally:
        writer.close()
    if not done:
        raise RuntimeError("stream ended without 'done'")
    return arrivals


async def _ws(url: str, i: int, seed: int, model: str, max_tokens: int, path: str = "/ws/chat",
              coalesce: bool = False) -> list[float]:
    t0 = time.perf_counter()
    arrivals = []
    async with websockets.connect("ws" + url[4:] + path + ("?coalesce=1" if coalesce else ""), open_timeout=60, compression=None) as ws:
        await ws.send(json.dumps({"type": "message", "content": messages_for(i)[0]["content"], "seed": seed,
                                  "model": model, "max_tokens": max_tokens}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "token":
                arrivals.append(time.perf_counter() - t0)
            elif msg["type"] == "tokens":                    # coalesced: several tokens, one arrival
                arrivals += [time.perf_counter() - t0] * len(msg["tokens"])
            elif msg["type"] == "complete":
                return arrivals
            elif msg["type"] == "error":
                raise RuntimeError(f"{msg['code']}: {msg.get('message', '')}")


async def _client(args, i: int) -> dict:
    await asyncio.sleep(args.ramp_s * i / args.clients)
    seed = args.seed_base + i
    try:
        if args.transport == "sse":
            arrivals = await _sse(args.url, i, seed, args.model, args.max_tokens, args.path)
        else:
            arrivals = await _ws(args.url, i, seed, args.model, args.max_tokens, args.path, args.coalesce)
        return {"i": i, "seed": seed, "arrivals": arrivals, "error": None}
    except Exception as e:
        return {"i": i, "seed": seed, "arrivals": [], "error": f"{e.__class__.__name__}: {e}"[:200]}


async def _main(args) -> None:
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
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
