"""Benchmark: 1,000 SSE and 1,000 WebSocket clients streaming at once from one app-server process.

Setup, each in its own process: the model server (the simulated model, as a remote API would be),
**one app-server process** (``/api/chat/stream`` and ``/ws/chat``, streaming from the model through
``AsyncOpenAI``), and two load-generator processes (:mod:`labkit.bench.loadclient`), one per
transport, with lean clients (an asyncio socket for SSE, ``websockets`` for WebSocket). Clients
connect over a ramp of a few seconds and then all stream together; each reply lasts longer than
the ramp, so at the peak every client is mid-stream at once (``peak_streams`` in the JSON).

What is measured:

* **errors**: requests that failed in any way (target: 0).
* **extra inter-token delay**: the simulated model is deterministic under a seed, so for each
  request the exact schedule it was generated on is known (``plan_completion``, the same code the
  model runs). For every token, extra delay = (its arrival gap to the previous token) − (the gap
  in the schedule). The p99 is what a user sees as stutter (target: under 50 ms). Lateness against
  the whole schedule (which includes TTFT overhead) is reported too.
  The same, counted only once every client has connected (``..._after_ramp_ms``), separates the
  cost of 200 new streams a second from the cost of carrying 2,000.
* **memory per connection**: the app server's resident memory at the peak minus before the load,
  divided by the number of connections (target: under 100 KB).

All four processes share the machine's cores, so the client's own CPU time counts against the
server. That is pessimistic for the server, and it is reported, not hidden: ``cpu_count`` is in the JSON.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from ..latency import summarize
from ..model import plan_completion
from ..model.profiles import resolve_model
from ..server.process import ServerProcess
from .loadclient import messages_for

#: A model whose tokens come 500 ms apart (the "balanced" profile slowed 20x): 2,000 streams then
#: make ~4,000 tokens a second through the app server. Clients arrive over 10 s (200 a second) and
#: each reply lasts ~20 s, so all 2,000 stream at once at the peak.
MODEL, TIME_SCALE, MAX_TOKENS, RAMP_S = "gpt-4o", 20.0, 30, 10.0
FULL_CLIENTS, QUICK_CLIENTS = 1_000, 50
QUICK = {"time_scale": 4.0, "max_tokens": 10, "ramp_s": 1.0}     # a smoke test: seconds, not a minute
TARGET_EXTRA_P99_MS, TARGET_BYTES_PER_CONNECTION = 50.0, 100 * 1024


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class _Sampler(threading.Thread):
    """Samples the app server's memory and open streams while the load runs."""

    def __init__(self, pid: int, url: str):
        super().__init__(daemon=True)
        self.pid, self.url = pid, url
        self.peak_rss, self.peak_streams, self.peak_ws = 0, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, _rss_bytes(self.pid))
            try:
                stats = httpx.get(self.url + "/lab/stats", timeout=2).json()
                self.peak_streams = max(self.peak_streams, stats["app_streams_active"])
                self.peak_ws = max(self.peak_ws, stats["ws_connections"])
            except httpx.HTTPError:
                pass


def _extra_delays(results: list[dict], profile, max_tokens: int, ramp_s: float,
                  steady_gaps: list[float] | None = None) -> tuple[list[float], list[float]]:
    """Per token: extra gap vs the schedule, and lateness vs the schedule. Gaps of tokens that arrived
    after every client had connected (the ramp's end + 1 s) also go to ``steady_gaps``."""
    gaps, lateness = [], []
    clients = len(results)
    for r in results:
        if r["error"] or not r["arrivals"]:
            continue
        plan = plan_completion(messages_for(r["i"]), profile, seed=r["seed"], max_tokens=max_tokens)
        arrivals = r["arrivals"]
        if len(arrivals) != len(plan.due_s):
            raise RuntimeError(f"request {r['i']}: {len(arrivals)} tokens arrived, the schedule has {len(plan.due_s)}")
        for k in range(len(arrivals)):
            lateness.append(arrivals[k] - plan.due_s[k])
            if k:
                gap = (arrivals[k] - arrivals[k - 1]) - (plan.due_s[k] - plan.due_s[k - 1])
                gaps.append(gap)
                sent_at = ramp_s * r["i"] / clients              # when the client sent its request
                if steady_gaps is not None and sent_at + arrivals[k] > ramp_s + 1.0:
                    steady_gaps.append(gap)
    return gaps, lateness


def run(quick: bool = False) -> dict:
    clients = QUICK_CLIENTS if quick else FULL_CLIENTS
    time_scale, max_tokens, ramp_s = ((QUICK["time_scale"], QUICK["max_tokens"], QUICK["ramp_s"]) if quick
                                      else (TIME_SCALE, MAX_TOKENS, RAMP_S))
    profile = resolve_model(MODEL).scaled(time_scale)
    with tempfile.TemporaryDirectory() as tmp, \
            ServerProcess(["serve", "--port", "0", "--time-scale", str(time_scale)]) as model, \
            ServerProcess(["serve", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as app:
        for _ in range(3):                                     # warm up code paths and the upstream pool
            httpx.post(app.url + "/api/chat", json={"message": "hi", "max_tokens": 2, "model": "instant"}, timeout=30)
        idle_rss = _rss_bytes(app.proc.pid)
        sampler = _Sampler(app.proc.pid, app.url)
        sampler.start()
        print(f"load: {clients} SSE + {clients} WebSocket clients against {app.url} "
              f"(ramp {ramp_s:g} s, {max_tokens} tokens each, ~{profile.itl_s * 1000:.0f} ms apart)", file=sys.stderr)
        procs, outs = [], {}
        started = time.perf_counter()
        for transport in ("sse", "ws"):
            outs[transport] = Path(tmp) / f"{transport}.json"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "labkit.bench.loadclient", "--url", app.url, "--transport", transport,
                 "--clients", str(clients), "--ramp-s", str(ramp_s), "--model", MODEL, "--max-tokens", str(max_tokens),
                 "--seed-base", "0" if transport == "sse" else "100000", "--out", str(outs[transport])]))
        for p in procs:
            if p.wait(timeout=600) != 0:
                raise RuntimeError("a load-generator process failed; see its output above")
        wall = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        final_stats = httpx.get(app.url + "/lab/stats", timeout=5).json()
        rows, all_gaps, steady = {}, [], []
        for transport, path in outs.items():
            results = json.loads(path.read_text())
            gaps, lateness = _extra_delays(results, profile, max_tokens, ramp_s, steady)
            all_gaps += gaps
            errors = [r["error"] for r in results if r["error"]]
            rows[transport] = {
                "clients": len(results), "errors": len(errors), "error_examples": sorted(set(errors))[:5],
                "tokens": sum(len(r["arrivals"]) for r in results),
                "extra_inter_token_delay_ms": summarize(gaps, 1000),
                "lateness_vs_schedule_ms": summarize(lateness, 1000),
            }
    connections = 2 * clients
    per_connection = max(0, sampler.peak_rss - idle_rss) / connections
    extra_p99 = summarize(all_gaps, 1000)["p99"] if all_gaps else None
    errors = sum(r["errors"] for r in rows.values())
    return {
        "benchmark": "load",
        "description": f"{clients} SSE + {clients} WebSocket clients streaming at once from one app-server process",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "setup": {"model": MODEL, "time_scale": time_scale, "itl_ms": profile.itl_s * 1000,
                  "max_tokens": max_tokens, "ramp_s": ramp_s, "quick": quick},
        "wall_s": round(wall, 2),
        "peak_streams": sampler.peak_streams, "peak_ws_connections": sampler.peak_ws,
        "app_server_rss_mb": {"idle": round(idle_rss / 2**20, 1), "peak": round(sampler.peak_rss / 2**20, 1)},
        "app_server_stats_after": final_stats,
        "transports": rows,
        "extra_inter_token_delay_after_ramp_ms": summarize(steady, 1000) if steady else None,
        "targets": {
            "errors == 0": {"value": errors, "met": errors == 0},
            f"p99 extra inter-token delay < {TARGET_EXTRA_P99_MS:g} ms": {
                "value": extra_p99, "met": extra_p99 is not None and extra_p99 < TARGET_EXTRA_P99_MS},
            "memory per connection < 100 KB": {"value": f"{per_connection / 1024:.1f} KB",
                                                "met": per_connection < TARGET_BYTES_PER_CONNECTION},
        },
    }
