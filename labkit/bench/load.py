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
  the whole schedule (which includes TTFT overhead) is reported too. Both are reported with arrivals
  at the client application (the target's) and at the client's socket (``..._socket_ms``: the
  kernel's receive stamp, without the load generator's own wait for a core).
  The same, counted only once every client has connected (``..._after_ramp_ms``), separates the
  cost of 200 new streams a second from the cost of carrying 2,000.
* **memory per connection**: the app server's resident memory at the peak minus before the load,
  divided by the number of connections (target: under 100 KB).

All four processes share the machine's cores, so the client's own CPU time counts against the
server. That is pessimistic for the server, and it is reported, not hidden: ``cpu_count`` is in the JSON.

Beside it, in the same run (issue #18):

* **2 workers**: the same 1,000 + 1,000 clients against ``labkit serve --workers 2`` (rooms and
  resumable streams shared through a private Redis), reported beside 1 worker;
* **the peers** (:mod:`labkit.bench.peer`): 1,000 SSE clients against the lab's app server alone, and
  the same against each usual relay (FastAPI ``StreamingResponse``, ``sse-starlette``), one after
  another on the same model server. Target: the lab's p99 extra delay at most half each peer's.

Each phase reports the relay's CPU seconds per 1,000 tokens (``/proc``, all its processes).
``--quick`` (a smoke test: 50 clients, 1 worker) runs the load generators in threads of this process.
"""

from __future__ import annotations

import json
import os
import platform
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
from ..services import spawn, stop_process
from .cpuprofile import tree_cpu_s
from .loadclient import messages_for
from .peer import PEER_ROUTES

#: A model whose tokens come 500 ms apart (the "balanced" profile slowed 20x): 2,000 streams then
#: make ~4,000 tokens a second through the app server. Clients arrive over 10 s (200 a second) and
#: each reply lasts ~20 s, so all 2,000 stream at once at the peak.
MODEL, TIME_SCALE, MAX_TOKENS, RAMP_S = "gpt-4o", 20.0, 30, 10.0
FULL_CLIENTS, QUICK_CLIENTS = 1_000, 50
QUICK = {"time_scale": 4.0, "max_tokens": 10, "ramp_s": 1.0}     # a smoke test: seconds, not a minute
TARGET_EXTRA_P99_MS, TARGET_BYTES_PER_CONNECTION = 50.0, 100 * 1024
PEER_TARGET_SHARE = 0.5


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server started with ``--workers N`` is a parent and N workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    return out


def _tree_rss(pid: int) -> int:
    return sum(_rss_bytes(p) for p in process_tree(pid))


def _tree_cpu(pid: int) -> float:
    return sum(tree_cpu_s(pid))


class _Sampler(threading.Thread):
    """Samples the app server's memory and open streams while the load runs (with several workers,
    ``/lab/stats`` answers for whichever worker takes the request: its peaks are one worker's)."""

    def __init__(self, pid: int, url: str):
        super().__init__(daemon=True)
        self.pid, self.url = pid, url
        self.peak_rss, self.peak_streams, self.peak_ws = 0, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, _tree_rss(self.pid))
            try:
                stats = httpx.get(self.url + "/lab/stats", timeout=2).json()
                self.peak_streams = max(self.peak_streams, stats["app_streams_active"])
                self.peak_ws = max(self.peak_ws, stats["ws_connections"])
            except (httpx.HTTPError, KeyError, ValueError):     # a peer relay has no /lab/stats
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


def _generate(argvs: list[list[str]], in_process: bool) -> None:
    """Run one load generator per argument list: each in its own process (a real run), or each in a
    thread of this one (``--quick``, a smoke test: no interpreter start-up per generator)."""
    if in_process:
        from . import loadclient
        threads = [threading.Thread(target=loadclient.main, args=(argv,)) for argv in argvs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        return
    procs = [spawn([sys.executable, "-m", "labkit.bench.loadclient", *argv]) for argv in argvs]
    try:
        for p in procs:
            if p.wait(timeout=600) != 0:
                raise RuntimeError("a load-generator process failed; see its output above")
    finally:                                  # one failed or hung: the others do not go on loading the server
        for p in procs:
            stop_process(p)


def _phase(app_url: str, app_pid: int, streams: list[tuple[str, str, str]], profile, clients: int,
           max_tokens: int, ramp_s: float, tmp: str, in_process: bool = False) -> dict:
    """One load: ``clients`` clients per (row name, transport, path) in ``streams``, all at once,
    against the relay at ``app_url``; its memory, CPU and per-row delays."""
    for _ in range(3):                                     # warm up code paths and the upstream pool
        httpx.post(app_url + "/api/chat", json={"message": "hi", "max_tokens": 2, "model": "instant"}, timeout=30)
    idle_rss = _tree_rss(app_pid)
    sampler = _Sampler(app_pid, app_url)
    sampler.start()
    print(f"load: {' + '.join(f'{clients} {name}' for name, _, _ in streams)} clients against {app_url} "
          f"(ramp {ramp_s:g} s, {max_tokens} tokens each, ~{profile.itl_s * 1000:.0f} ms apart)", file=sys.stderr)
    outs, argvs = {}, []
    cpu0 = _tree_cpu(app_pid)
    started = time.perf_counter()
    for k, (name, transport, path) in enumerate(streams):
        outs[name] = Path(tmp) / f"{name}.json"
        argvs.append(["--url", app_url, "--transport", transport, "--path", path, "--clients", str(clients),
                      "--ramp-s", str(ramp_s), "--model", MODEL, "--max-tokens", str(max_tokens),
                      "--seed-base", str(100_000 * k), "--out", str(outs[name]),
                      *(["--coalesce"] if transport == "ws" else [])])     # the lab's /ws/chat, coalesced
    _generate(argvs, in_process)
    wall = time.perf_counter() - started
    cpu = _tree_cpu(app_pid) - cpu0
    sampler.stop.set()
    sampler.join()
    final = httpx.get(app_url + "/lab/stats", timeout=5)
    final_stats = final.json() if final.status_code == 200 else {}        # a peer relay has no /lab/stats
    rows, all_gaps, steady, all_socket_gaps = {}, [], [], []
    for name, path in outs.items():
        results = json.loads(path.read_text())
        gaps, lateness = _extra_delays(results, profile, max_tokens, ramp_s, steady)
        all_gaps += gaps
        stamped = [{**r, "arrivals": r["socket_arrivals"]} for r in results if r.get("socket_arrivals")]
        socket_gaps, socket_lateness = _extra_delays(stamped, profile, max_tokens, ramp_s)
        all_socket_gaps += socket_gaps
        errors = [r["error"] for r in results if r["error"]]
        rows[name] = {
            "clients": len(results), "errors": len(errors), "error_examples": sorted(set(errors))[:5],
            "tokens": sum(len(r["arrivals"]) for r in results),
            "extra_inter_token_delay_ms": summarize(gaps, 1000),
            "lateness_vs_schedule_ms": summarize(lateness, 1000),
            # the same, arrivals at the client's socket (the kernel's receive stamp), for clients that have it
            "extra_inter_token_delay_socket_ms": summarize(socket_gaps, 1000),
            "lateness_vs_schedule_socket_ms": summarize(socket_lateness, 1000),
        }
    tokens = sum(r["tokens"] for r in rows.values())
    connections = clients * len(streams)
    return {
        "wall_s": round(wall, 2),
        "peak_streams": sampler.peak_streams, "peak_ws_connections": sampler.peak_ws,
        "app_server_rss_mb": {"idle": round(idle_rss / 2**20, 1), "peak": round(sampler.peak_rss / 2**20, 1)},
        "bytes_per_connection": max(0, sampler.peak_rss - idle_rss) / connections,
        "relay_cpu_s_per_1k_tokens": round(1000 * cpu / tokens, 4) if tokens else None,
        "app_server_stats_after": final_stats,
        "transports": rows,
        "extra_p99_ms": summarize(all_gaps, 1000)["p99"] if all_gaps else None,
        "extra_p99_socket_ms": summarize(all_socket_gaps, 1000)["p99"] if all_socket_gaps else None,
        "extra_inter_token_delay_after_ramp_ms": summarize(steady, 1000) if steady else None,
        "errors": sum(r["errors"] for r in rows.values()),
    }


LAB_STREAMS = [("sse", "sse", "/api/chat/stream"), ("ws", "ws", "/ws/chat")]


def _lab(model_url: str, workers: int, redis_url: str | None, tmp: str, sse_alone: dict | None = None,
         **load) -> dict:
    """SSE + WebSocket clients against the lab at ``workers``; then, given ``sse_alone``, SSE clients
    alone against the same (1-worker) server, stored there under ``lab-sse``."""
    args = ["serve", "--port", "0", "--no-access-log", "--upstream-base-url", model_url + "/v1"]
    if workers > 1:
        args += ["--workers", str(workers), "--redis-url", redis_url]
    with ServerProcess(args, timeout_s=120) as app:
        both = _phase(app.url, app.proc.pid, LAB_STREAMS, tmp=tmp, **load)
        if sse_alone is not None:
            sse_alone["lab-sse"] = _phase(app.url, app.proc.pid, [LAB_STREAMS[0]], tmp=tmp, **load)
        return both


def _peers(model_url: str, tmp: str, out: dict, **load) -> dict:
    """The same SSE clients against each peer, one after another (``out`` holds the lab's alone)."""
    with ServerProcess(["--upstream-base-url", model_url + "/v1", "--port", "0"], module="labkit.bench.peer") as peer:
        for name, path in PEER_ROUTES.items():
            out[name] = _phase(peer.url, peer.proc.pid, [(name, "sse", path)], tmp=tmp, **load)
    return out


def _redis():
    from ..services import RedisServer, ServiceUnavailable
    try:
        return RedisServer().start()
    except ServiceUnavailable as e:
        print(f"load: no Redis ({e}); the 2-worker phase is skipped", file=sys.stderr)
        return None


def run(quick: bool = False, workers: tuple[int, ...] | None = None, peers: bool = True) -> dict:
    """The full run: 1 and 2 workers, then the peers; ``quick``: 1 worker and the peers, 50 clients each."""
    workers = workers or ((1,) if quick else (1, 2))
    clients = QUICK_CLIENTS if quick else FULL_CLIENTS
    time_scale, max_tokens, ramp_s = ((QUICK["time_scale"], QUICK["max_tokens"], QUICK["ramp_s"]) if quick
                                      else (TIME_SCALE, MAX_TOKENS, RAMP_S))
    profile = resolve_model(MODEL).scaled(time_scale)
    load = {"profile": profile, "clients": clients, "max_tokens": max_tokens, "ramp_s": ramp_s, "in_process": quick}
    redis = _redis() if any(w > 1 for w in workers) else None
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                ServerProcess(["serve", "--port", "0", "--no-access-log", "--time-scale", str(time_scale)]) as model:
            peer_phases: dict = {}
            by_workers = {w: _lab(model.url, w, redis.url if redis else None, tmp,
                                  peer_phases if peers and w == 1 else None, **load)
                          for w in workers if w == 1 or redis is not None}
            if peers:
                _peers(model.url, tmp, peer_phases, **load)
    finally:
        if redis is not None:
            redis.stop()
    one = by_workers[1]
    per_connection = one["bytes_per_connection"]
    extra_p99, errors = one["extra_p99_ms"], one["errors"]
    peer_rows = {}
    lab_alone = peer_phases.get("lab-sse")
    for name in PEER_ROUTES:
        if name in peer_phases:
            mine, theirs = lab_alone["extra_p99_ms"], peer_phases[name]["extra_p99_ms"]
            peer_rows[name] = {"lab_p99_ms": mine, "peer_p99_ms": theirs,
                               "ratio": round(mine / theirs, 3) if mine is not None and theirs else None,
                               "met": mine is not None and bool(theirs) and mine <= PEER_TARGET_SHARE * theirs,
                               "at_the_socket": {"lab_p99_ms": lab_alone["extra_p99_socket_ms"],
                                                 "peer_p99_ms": peer_phases[name]["extra_p99_socket_ms"]},
                               "lab_cpu_s_per_1k_tokens": lab_alone["relay_cpu_s_per_1k_tokens"],
                               "peer_cpu_s_per_1k_tokens": peer_phases[name]["relay_cpu_s_per_1k_tokens"]}
    targets = {
        "errors == 0": {"value": errors, "met": errors == 0},
        f"p99 extra inter-token delay < {TARGET_EXTRA_P99_MS:g} ms": {
            "value": extra_p99, "met": extra_p99 is not None and extra_p99 < TARGET_EXTRA_P99_MS},
        "memory per connection < 100 KB": {"value": f"{per_connection / 1024:.1f} KB",
                                            "met": per_connection < TARGET_BYTES_PER_CONNECTION},
    }
    for name, row in peer_rows.items():
        targets[f"lab SSE p99 extra delay <= {PEER_TARGET_SHARE:g} x {name}'s at {clients} clients"] = {
            "value": row["ratio"], "met": row["met"]}
    return {
        "benchmark": "load",
        "description": f"{clients} SSE + {clients} WebSocket clients streaming at once from one app-server process",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "setup": {"model": MODEL, "time_scale": time_scale, "itl_ms": profile.itl_s * 1000,
                  "max_tokens": max_tokens, "ramp_s": ramp_s, "quick": quick, "workers": list(by_workers),
                  "servers": "the lab's model and app servers run with --no-access-log, as the peers log nothing per "
                             "request; the app's upstream is the SDK on aiohttp (serve's default)"},
        "wall_s": one["wall_s"],
        "peak_streams": one["peak_streams"], "peak_ws_connections": one["peak_ws_connections"],
        "app_server_rss_mb": one["app_server_rss_mb"],
        "app_server_stats_after": one["app_server_stats_after"],
        "transports": one["transports"],
        "extra_inter_token_delay_after_ramp_ms": one["extra_inter_token_delay_after_ramp_ms"],
        "extra_p99_at_the_socket_ms": {
            "value": one["extra_p99_socket_ms"],
            "note": "information: the same p99 with arrivals at the client's socket (the kernel's receive stamp); "
                    "the target judges arrivals at the client application, as a user's code sees them"},
        "relay_cpu_s_per_1k_tokens": one["relay_cpu_s_per_1k_tokens"],
        "workers": {str(w): {k: v for k, v in phase.items() if k != "app_server_stats_after"}
                    for w, phase in by_workers.items()},
        "peers": {"phases": {name: {k: v for k, v in phase.items() if k != "app_server_stats_after"}
                             for name, phase in peer_phases.items()},
                  "ratios": peer_rows},
        "targets": targets,
    }
