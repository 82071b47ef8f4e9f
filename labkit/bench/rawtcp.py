"""The floor for transport benchmarks: the simulated model's tokens over a bare asyncio TCP stream.

No HTTP, no framing beyond one JSON object per line, no upstream hop: the least work any transport
could do to deliver the same token schedule. ``python -m labkit.bench.rawtcp --port 0`` prints its URL.

Protocol: the client sends one line ``{"prompt": ..., "seed": ..., "model": ..., "max_tokens": ...}``;
the server answers ``{"seq", "content", "t"}`` lines on schedule, then ``{"done": true}``, and closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from ..model import plan_completion, resolve_model


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, time_scale: float) -> None:
    try:
        request = json.loads(await reader.readline())
        arrived = asyncio.get_running_loop().time()
        profile = resolve_model(request.get("model", "gpt-4o-mini")).scaled(time_scale)
        plan = plan_completion([{"role": "user", "content": request["prompt"]}], profile,
                               seed=request.get("seed"), max_tokens=request.get("max_tokens"))
        for seq, (token, due) in enumerate(zip(plan.tokens, plan.due_s)):
            await asyncio.sleep(max(0.0, arrived + due - asyncio.get_running_loop().time()))
            writer.write(json.dumps({"seq": seq, "content": token, "t": time.time()}).encode() + b"\n")
            await writer.drain()
        writer.write(b'{"done": true}\n')
        await writer.drain()
    except (ConnectionError, ValueError, KeyError):
        pass
    finally:
        writer.close()


async def main(host: str, port: int, time_scale: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, time_scale), host, port, backlog=1024)
    print(f"raw TCP token server on tcp://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port, args.time_scale))
    except KeyboardInterrupt:
        pass
