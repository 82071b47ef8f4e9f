"""Load generation: many requests, at a fixed concurrency or at a Poisson arrival rate, measured.

``run_load(request, requests=N, concurrency=C)`` keeps C requests in flight until N have been
sent; ``rate_per_s=R`` instead starts them at random (exponential) intervals averaging R per second,
which is how independent users arrive, so queues build up as they would in production. Both stop
at ``max_seconds`` whatever happens (outstanding requests are cancelled and counted), show a
progress bar, and return a :class:`LoadResult` that saves as JSON.

``request(i)`` is any coroutine returning a :class:`~labkit.clients.timing.TimedStream`: a labkit
client for HTTP, SSE or WebSocket, or ``sdk_chat``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..clients.timing import TimedStream
from .metrics import RequestMetrics, goodput, request_metrics
from .stats import summarize

__all__ = ["LoadResult", "run_load", "parallel_completions"]


@dataclass
class LoadResult:
    metrics: list[RequestMetrics] = field(default_factory=list)
    start_offsets_s: list[float] = field(default_factory=list)   # when each finished request was sent
    errors: list[str] = field(default_factory=list)
    cancelled: int = 0
    wall_s: float = 0.0
    setup: dict = field(default_factory=dict)

    def summary(self, ttft_slo_s: float = 1.0, tpot_slo_s: float = 0.05) -> dict:
        m = self.metrics
        return {
            "requests": len(m), "errors": len(self.errors), "cancelled": self.cancelled, "wall_s": round(self.wall_s, 3),
            "ttft_ms": summarize((r.ttft_s for r in m), 1000),
            "tpot_ms": summarize((r.tpot_s for r in m), 1000),
            "itl_ms": summarize((g for r in m for g in r.itl_s), 1000),
            "e2e_ms": summarize((r.e2e_s for r in m), 1000),
            "decode_tokens_per_s": summarize(r.decode_tokens_per_s for r in m),
            "output_tokens_per_s": round(sum(r.n_tokens for r in m) / self.wall_s, 1) if self.wall_s else None,
            "goodput": {"ttft_slo_ms": 1000 * ttft_slo_s, "tpot_slo_ms": 1000 * tpot_slo_s,
                        "share": round(goodput(m, ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s), 4)},
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"setup": self.setup, "summary": self.summary(),
                                    "requests": [r.as_dict() for r in self.metrics],
                                    "start_offsets_s": self.start_offsets_s, "errors": self.errors}, indent=1))
        return path


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="req", leave=False)


async def run_load(request: Callable[[int], Awaitable[TimedStream]], *, requests: int, concurrency: int | None = None,
                   rate_per_s: float | None = None, ramp_s: float = 0.0, max_seconds: float = 120.0, seed: int = 0,
                   progress: bool = True) -> LoadResult:
    """Run ``requests`` requests; see the module docstring. With ``concurrency``, ``ramp_s`` lets the
    users join one by one over that many seconds instead of all at the same instant."""
    if (concurrency is None) == (rate_per_s is None):
        raise ValueError("give exactly one of concurrency= (closed loop) or rate_per_s= (open loop, Poisson)")
    if requests < 1 or (concurrency is not None and concurrency < 1) or (rate_per_s is not None and rate_per_s <= 0):
        raise ValueError("requests, concurrency and rate_per_s must be positive")
    result = LoadResult(setup={"requests": requests, "concurrency": concurrency, "rate_per_s": rate_per_s,
                               "ramp_s": ramp_s, "max_seconds": max_seconds, "seed": seed})
    bar = _progress(requests, progress)
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        sent = time.perf_counter() - t0
        try:
            stream = await request(i)
        except asyncio.CancelledError:
            raise
        except Exception as e:             # a failed request is a result too: count it, keep going
            result.errors.append(f"{type(e).__name__}: {e}")
        else:
            result.metrics.append(request_metrics([t.t for t in stream.tokens], texts=[t.text for t in stream.tokens]))
            result.start_offsets_s.append(sent)
        finally:
            if bar is not None:
                bar.update(1)

    tasks: list[asyncio.Task] = []
    if concurrency is not None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)

        async def user(k: int) -> None:                 # a closed loop: one request after another
            await asyncio.sleep(ramp_s * k / concurrency)
            while not queue.empty():
                await one(queue.get_nowait())

        tasks = [asyncio.ensure_future(user(k)) for k in range(concurrency)]
    else:
        rng = random.Random(seed)

        async def launcher() -> None:
            due = 0.0
            for i in range(requests):
                due += rng.expovariate(rate_per_s)
                await asyncio.sleep(max(0.0, t0 + due - time.perf_counter()))
                tasks.append(asyncio.ensure_future(one(i)))

        tasks.append(asyncio.ensure_future(launcher()))

    deadline = t0 + max_seconds
    while True:
        pending = [t for t in tasks if not t.done()]
        if not pending:
            break
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            for t in pending:
                t.cancel()
            result.cancelled = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
            break
        await asyncio.wait(pending, timeout=remaining)
    result.wall_s = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return result


async def parallel_completions(client, prompts: Sequence[str], *, model: str = "gpt-4o-mini", max_concurrent: int = 8,
                               **params) -> list[TimedStream]:
    """Many streamed completions at once, done right: ``AsyncOpenAI`` and a semaphore, no threads.

    The tutorial ran a *synchronous* client in the default thread pool (``run_in_executor(None, ...)``):
    each request holds a thread for its whole duration, the pool has ``min(32, cpus + 4)`` threads, and
    every chunk is handed between threads. Here each request is a coroutine: waiting costs nothing.
    """
    from ..clients import collect, sdk_chat

    gate = asyncio.Semaphore(max_concurrent)

    async def one(prompt: str) -> TimedStream:
        async with gate:
            return await collect(sdk_chat(client, prompt, model=model, **params), "sdk")

    return list(await asyncio.gather(*(one(p) for p in prompts)))
