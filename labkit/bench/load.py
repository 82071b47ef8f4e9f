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

Each phase reports the relay's CPU seconds per 1,000 tokens (``/proc``, all its processes), and
``cpu_per_process``: the CPU of every process of the run (the model server, the app server, each load
generator) per 1,000 tokens, over the whole phase and split into the ramp (until every client has
connected, + 1 s) and the steady part after it. The machine's cores are shared by all of them, so
each one's CPU counts. ``new_stream_cpu_ms``: what opening one stream costs the app server and the
model server (short streams of one token, one after another, ``NEW_STREAMS`` of them).

``python -m labkit.bench.load --clients 300 --ramp-s 3 --no-peers --workers 1 --json PATH`` runs a
smaller load (a minute; for profiling and side-by-side comparisons); ``--profile DIR`` also writes
a cProfile of the app server and of the model server over the load, and their split by layer.
``--quick`` (a smoke test: 50 clients, 1 worker) runs the load generators in threads of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from ..services import spawn, stop_process
from .cpuprofile import CpuTimeline, ProfiledWindow, layer_seconds, tree_cpu_s
from .loadclient import messages_for
from .peer import PEER_ROUTES

#: A model whose tokens come 500 ms apart (the "balanced" profile slowed 20x): 2,000 streams then
#: make ~4,000 tokens a second through the app server. Clients arrive over 10 s (200 a second) and
#: each reply lasts ~20 s, so all 2,000 stream at once at the peak.
MODEL, TIME_SCALE, MAX_TOKENS, RAMP_S = "gpt-4o", 20.0, 30, 10.0
FULL_CLIENTS, QUICK_CLIENTS = 1_000, 50
#: a smoke test, seconds not a minute: replies of ~3.8 s over a 1 s ramp, so every client is still
#: streaming when the last connects even if a busy machine stretches the ramp by seconds (at 4.0, 1.9 s
#: replies, a peak of 38 streams of 50 once, with two test suites sharing two cores)
QUICK = {"time_scale": 8.0, "max_tokens": 10, "ramp_s": 1.0}
TARGET_EXTRA_P99_MS, TARGET_BYTES_PER_CONNECTION = 50.0, 100 * 1024
PEER_TARGET_SHARE = 0.5
NEW_STREAMS, QUICK_NEW_STREAMS = 300, 30


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


#: A load generator that says when its clients' clock starts (``time.monotonic()``, the system's clock:
#: comparable with this process's) once its imports are done, so that the run can be split in phases.
_GENERATOR = ("import sys, time; from labkit.bench import loadclient; print(time.monotonic(), flush=True); "
              "loadclient.main(sys.argv[1:])")


def _generate(argvs: list[list[str]], in_process: bool, timeline: CpuTimeline | None = None,
              names: list[str] | None = None) -> list[float]:
    """Run one load generator per argument list: each in its own process (a real run), or each in a
    thread of this one (``--quick``, a smoke test: no interpreter start-up per generator). Returns
    when each one's clients started (``time.monotonic()``); ``timeline`` follows each generator's CPU
    (``load generator NAME``; in-process, this whole process)."""
    names = names or [str(k) for k in range(len(argvs))]
    if in_process:
        from . import loadclient
        threads = [threading.Thread(target=loadclient.main, args=(argv,)) for argv in argvs]
        if timeline is not None:
            timeline.add("load generators (threads of the benchmark's process)", os.getpid())
        origins = []
        for t in threads:
            origins.append(time.monotonic())
            t.start()
        for t in threads:
            t.join(timeout=600)
        return origins
    procs = [spawn([sys.executable, "-c", _GENERATOR, *argv], stdout=subprocess.PIPE, text=True) for argv in argvs]
    try:
        origins = []
        for name, p in zip(names, procs):
            line = p.stdout.readline()
            if timeline is not None:
                timeline.add(f"load generator {name}", p.pid)
            try:
                origins.append(float(line))
            except ValueError:
                raise RuntimeError(f"a load generator did not start: {line!r}") from None
        deadline = time.monotonic() + 600
        for name, p in zip(names, procs):
            code, cpu_s = _wait_with_cpu(p, deadline)
            if timeline is not None:
                timeline.ended(f"load generator {name}", cpu_s)
            if code != 0:
                raise RuntimeError("a load-generator process failed; see its output above")
        return origins
    finally:                                  # one failed or hung: the others do not go on loading the server
        for p in procs:
            stop_process(p)


def _wait_with_cpu(proc: subprocess.Popen, deadline: float) -> tuple[int, float]:
    """Wait for ``proc`` to exit (``os.wait4``, which also says what CPU it used in all); its exit code
    and CPU seconds."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)      # reaped here: Popen must not wait again
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, 600)
        time.sleep(0.05)


def _cpu_per_process(timeline: CpuTimeline, start: float, split: float, tokens_ramp: int, tokens_steady: int,
                     streams: int) -> dict:
    """Each process's CPU seconds in the ramp (``start`` to ``split``) and after it, per 1,000 tokens, and
    the ramp's per stream opened in it (``streams``; an upper bound of a new stream's cost: the ramp
    also carries the tokens of the streams already open)."""
    def per_1k(cpu: float, tokens: int) -> float | None:
        return round(1000 * cpu / tokens, 4) if tokens else None

    cpu_s, per_token = {}, {}
    totals = {"ramp": 0.0, "steady": 0.0}
    for name in timeline.names():
        ramp = timeline.at(name, split) - timeline.at(name, start)
        steady = timeline.last(name) - timeline.at(name, split)
        totals["ramp"] += ramp
        totals["steady"] += steady
        cpu_s[name] = {"ramp": round(ramp, 3), "steady": round(steady, 3), "whole": round(ramp + steady, 3)}
    cpu_s["all processes"] = {k: round(v, 3) for k, v in totals.items()}
    cpu_s["all processes"]["whole"] = round(totals["ramp"] + totals["steady"], 3)
    for name, row in cpu_s.items():
        per_token[name] = {"whole": per_1k(row["whole"], tokens_ramp + tokens_steady),
                           "ramp": per_1k(row["ramp"], tokens_ramp), "steady": per_1k(row["steady"], tokens_steady)}
    return {"tokens": {"ramp": tokens_ramp, "steady": tokens_steady}, "streams_opened_in_ramp": streams,
            "cpu_s": cpu_s, "cpu_s_per_1k_tokens": per_token,
            "ramp_cpu_ms_per_stream_opened": {name: round(1000 * row["ramp"] / streams, 3) if streams else None
                                              for name, row in cpu_s.items()},
            "note": "ramp: until every client of every generator has connected + 1 s; a load generator's ramp "
                    "excludes its interpreter's start-up (its clients' clock starts after its imports)"}


def _tokens_by_phase(results: list[dict], origin: float, ramp_s: float, split: float) -> tuple[int, int]:
    """Tokens that arrived before ``split`` (a ``time.monotonic()`` moment) and after it; a client's
    arrivals count from when it sent its request (``origin`` + its place in the ramp)."""
    before = after = 0
    clients = len(results)
    for r in results:
        sent = origin + ramp_s * r["i"] / clients
        for t in r["arrivals"]:
            if sent + t <= split:
                before += 1
            else:
                after += 1
    return before, after


async def _short_streams(app_url: str, n: int) -> None:
    async with httpx.AsyncClient(base_url=app_url, timeout=60) as client:
        for _ in range(n):
            async with client.stream("POST", "/api/chat/stream", json={"message": "hi", "max_tokens": 1,
                                                                        "model": "instant"}) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"a short stream got {r.status_code}")
                async for _ in r.aiter_bytes():
                    pass


def new_stream_cost(app_url: str, app_pid: int, model_pid: int | None, n: int = NEW_STREAMS) -> dict:
    """Milliseconds of CPU one new stream costs the app server (and the model server): ``n`` streams of
    one token on the instant model, one after another (the figure includes that one token)."""
    asyncio.run(_short_streams(app_url, 10))                  # warm
    app0 = _tree_cpu(app_pid)
    model0 = _tree_cpu(model_pid) if model_pid else 0.0
    asyncio.run(_short_streams(app_url, n))
    app = _tree_cpu(app_pid) - app0
    model = (_tree_cpu(model_pid) - model0) if model_pid else None
    return {"streams": n, "app_server": round(1000 * app / n, 3),
            "model_server": round(1000 * model / n, 3) if model is not None else None}


def _phase(app_url: str, app_pid: int, streams: list[tuple[str, str, str]], profile, clients: int,
           max_tokens: int, ramp_s: float, tmp: str, in_process: bool = False, model_pid: int | None = None
           ) -> dict:
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
    timeline = CpuTimeline()
    timeline.add("app server", app_pid)
    if model_pid is not None:
        timeline.add("model server", model_pid)
    cpu0 = _tree_cpu(app_pid)
    started, started_mono = time.perf_counter(), time.monotonic()
    for k, (name, transport, path) in enumerate(streams):
        outs[name] = Path(tmp) / f"{name}.json"
        argvs.append(["--url", app_url, "--transport", transport, "--path", path, "--clients", str(clients),
                      "--ramp-s", str(ramp_s), "--model", MODEL, "--max-tokens", str(max_tokens),
                      "--seed-base", str(100_000 * k), "--out", str(outs[name]),
                      *(["--coalesce"] if transport == "ws" else [])])     # the lab's /ws/chat, coalesced
    with timeline:
        origins = _generate(argvs, in_process, timeline, list(outs))
        wall = time.perf_counter() - started
        cpu = _tree_cpu(app_pid) - cpu0
    split = max(origins) + ramp_s + 1.0                    # every client of every generator has connected
    sampler.stop.set()
    sampler.join()
    final = httpx.get(app_url + "/lab/stats", timeout=5)
    final_stats = final.json() if final.status_code == 200 else {}        # a peer relay has no /lab/stats
    rows, all_gaps, steady, all_socket_gaps = {}, [], [], []
    tokens_ramp = tokens_steady = 0
    for origin, (name, path) in zip(origins, outs.items()):
        results = json.loads(path.read_text())
        before, after = _tokens_by_phase(results, origin, ramp_s, split)
        tokens_ramp, tokens_steady = tokens_ramp + before, tokens_steady + after
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
        "cpu_per_process": _cpu_per_process(timeline, started_mono, split, tokens_ramp, tokens_steady, connections),
        "app_server_stats_after": final_stats,
        "transports": rows,
        "extra_p99_ms": summarize(all_gaps, 1000)["p99"] if all_gaps else None,
        "extra_p99_socket_ms": summarize(all_socket_gaps, 1000)["p99"] if all_socket_gaps else None,
        "extra_inter_token_delay_after_ramp_ms": summarize(steady, 1000) if steady else None,
        "errors": sum(r["errors"] for r in rows.values()),
    }


LAB_STREAMS = [("sse", "sse", "/api/chat/stream"), ("ws", "ws", "/ws/chat")]


def _lab(model_url: str, workers: int, redis_url: str | None, tmp: str, sse_alone: dict | None = None,
         new_streams: int = 0, profile_dir: str | None = None, model_window: ProfiledWindow | None = None,
         **load) -> dict:
    """SSE + WebSocket clients against the lab at ``workers``; then, given ``sse_alone``, SSE clients
    alone against the same (1-worker) server, stored there under ``lab-sse``; with ``new_streams``,
    first what a new stream costs (:func:`new_stream_cost`). ``profile_dir``: the app server runs
    under cProfile (:mod:`.cpuprofile`), profiled over the load (``app.prof``), as is the model server
    with ``model_window``."""
    args = ["serve", "--port", "0", "--no-access-log", "--upstream-base-url", model_url + "/v1"]
    if workers > 1:
        args += ["--workers", str(workers), "--redis-url", redis_url]
    module = "labkit"
    if profile_dir is not None:
        app_prof = str(Path(profile_dir) / "app.prof")
        args, module = ["--out", app_prof, "-m", "labkit", *args], "labkit.bench.cpuprofile"
    with ServerProcess(args, module=module, timeout_s=120) as app:
        cost = new_stream_cost(app.url, app.proc.pid, load.get("model_pid"), new_streams) if new_streams else None
        with contextlib.ExitStack() as windows:
            if profile_dir is not None:
                windows.enter_context(ProfiledWindow(app.proc.pid, app_prof, timeout_s=120))
            if model_window is not None:
                windows.enter_context(model_window)
            both = _phase(app.url, app.proc.pid, LAB_STREAMS, tmp=tmp, **load)
        if profile_dir is not None:
            both["app_server_layers_cpu_s"] = _layers(app_prof)
        if cost is not None:
            both["new_stream_cpu_ms"] = cost
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


def _layers(prof_path: str) -> dict[str, float]:
    import pstats
    return {layer: round(s, 3) for layer, s in layer_seconds(pstats.Stats(prof_path)).items() if s >= 0.005}


def run(quick: bool = False, workers: tuple[int, ...] | None = None, peers: bool = True,
        clients: int | None = None, ramp_s: float | None = None, profile_dir: str | None = None) -> dict:
    """The full run: 1 and 2 workers, then the peers; ``quick``: 1 worker and the peers, 50 clients each.
    ``clients`` (per transport) and ``ramp_s`` make a smaller (or bigger) run of the full one's model;
    ``profile_dir``: cProfile the app and model servers over the 1-worker load (see :func:`_lab`)."""
    workers = workers or ((1,) if quick else (1, 2))
    clients = clients or (QUICK_CLIENTS if quick else FULL_CLIENTS)
    time_scale, max_tokens, default_ramp_s = ((QUICK["time_scale"], QUICK["max_tokens"], QUICK["ramp_s"]) if quick
                                              else (TIME_SCALE, MAX_TOKENS, RAMP_S))
    ramp_s = ramp_s if ramp_s is not None else default_ramp_s
    profile = resolve_model(MODEL).scaled(time_scale)
    load = {"profile": profile, "clients": clients, "max_tokens": max_tokens, "ramp_s": ramp_s, "in_process": quick}
    redis = _redis() if any(w > 1 for w in workers) else None
    model_args, model_module = ["serve", "--port", "0", "--no-access-log", "--time-scale", str(time_scale)], "labkit"
    if profile_dir is not None:
        model_prof = str(Path(profile_dir) / "model.prof")
        model_args, model_module = ["--out", model_prof, "-m", "labkit", *model_args], "labkit.bench.cpuprofile"
    try:
        with tempfile.TemporaryDirectory() as tmp, ServerProcess(model_args, module=model_module) as model:
            load["model_pid"] = model.proc.pid
            peer_phases: dict = {}
            by_workers = {}
            for w in workers:
                if w > 1 and redis is None:
                    continue
                window = (ProfiledWindow(model.proc.pid, model_prof, timeout_s=120)
                          if profile_dir is not None and w == 1 else None)
                # the new-stream cost before the load, on the 1-worker server; the model profiled over its load
                by_workers[w] = _lab(model.url, w, redis.url if redis else None, tmp,
                                     peer_phases if peers and w == 1 else None,
                                     new_streams=(QUICK_NEW_STREAMS if quick else NEW_STREAMS) if w == 1 else 0,
                                     profile_dir=profile_dir if w == 1 else None, model_window=window, **load)
                if window is not None:
                    by_workers[w]["model_server_layers_cpu_s"] = _layers(model_prof)
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
                  "clients_per_transport": clients, "max_tokens": max_tokens, "ramp_s": ramp_s, "quick": quick,
                  "workers": list(by_workers),
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
        "cpu_per_process": one["cpu_per_process"],
        "new_stream_cpu_ms": one.get("new_stream_cpu_ms"),
        **{k: one[k] for k in ("app_server_layers_cpu_s", "model_server_layers_cpu_s") if k in one},
        "workers": {str(w): {k: v for k, v in phase.items() if k != "app_server_stats_after"}
                    for w, phase in by_workers.items()},
        "peers": {"phases": {name: {k: v for k, v in phase.items() if k != "app_server_stats_after"}
                             for name, phase in peer_phases.items()},
                  "ratios": peer_rows},
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    """A run of another size than ``bench load``'s (e.g. 300 + 300 clients over 3 s: a minute)."""
    parser = argparse.ArgumentParser(prog="python -m labkit.bench.load", description=main.__doc__)
    parser.add_argument("--json", required=True, metavar="PATH")
    parser.add_argument("--clients", type=int, default=FULL_CLIENTS, help="clients per transport")
    parser.add_argument("--ramp-s", type=float, default=RAMP_S)
    parser.add_argument("--workers", default="1,2", help="e.g. 1 or 1,2")
    parser.add_argument("--no-peers", action="store_true", help="no peer relays, no lab SSE alone")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="cProfile the app and model servers over the 1-worker load (inflates their CPU)")
    args = parser.parse_args(argv)
    results = run(workers=tuple(int(w) for w in args.workers.split(",")), peers=not args.no_peers,
                  clients=args.clients, ramp_s=args.ramp_s, profile_dir=args.profile)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    for name, target in results["targets"].items():
        print(f"  {'met    ' if target['met'] else 'NOT met'}  {name}  {target['value']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
