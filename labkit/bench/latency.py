"""Benchmark: chapter 06's latency experiments at full size (``python -m labkit bench latency --json PATH``).

Servers run in their own processes: the model server, the lab's app server (``AsyncOpenAI``) and
the tutorial's app server (a synchronous client inside an async endpoint), both apps streaming from
the same model server. Experiments:

1. streaming vs not: TTFT against the whole wait, same prompt and seeds;
2. TTFT vs prompt length, with a fitted prefill cost, and the tutorial's whitespace trimming measured;
3. a measured TTFT/TPOT table per model, and a model chosen from it for a latency budget;
4. transport overhead: TTFT and total over HTTP, SSE, WebSocket, the SDK to the model directly and a
   raw TCP floor, plus the ``transports`` benchmark (quick) for per-token delivery delay;
5. concurrency: TTFT p50/p99 at 1, 10 and 50 users for both app servers.
   Target: the lab server's p99 TTFT at 50 users within 1.5x of its single-user p99.
6. proxy buffering: a private nginx (installed when possible) in front of the app, buffered,
   unbuffered and honouring ``X-Accel-Buffering: no``; token arrivals per route;
7. network conditions: SSE, a new WebSocket and a kept-open WebSocket through ``labkit.netem`` on
   LAN, Wi-Fi, 4G and 3G profiles.
"""

from __future__ import annotations

import asyncio
import os
import sys

from ..latency.experiments import (SweepServer, concurrency_sweep, model_table, network_conditions, proxy_buffering,
                                   select_model, streaming_vs_not, transport_overhead, ttft_vs_prompt_length)
from ..server.process import ServerProcess

#: The concurrency sweep's two app servers (row names in the JSON).
LAB, TUTORIAL = "lab (AsyncOpenAI)", "tutorial (sync client)"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(quick: bool = False) -> dict:
    users = (1, 10) if quick else (1, 10, 50)
    with ServerProcess(["serve", "--port", "0"]) as model, \
            ServerProcess(["serve", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as lab, \
            ServerProcess(["serve", "--port", "0", "--app", "tutorial", "--upstream-base-url", model.url + "/v1"]) as tut:
        base = model.url + "/v1"
        _say("1/5 streaming vs not")
        streaming = asyncio.run(streaming_vs_not(base, runs=4 if quick else 8))
        _say("2/5 TTFT vs prompt length")
        prompt = asyncio.run(ttft_vs_prompt_length(base, lengths=(0, 500, 1500) if quick else (0, 250, 500, 1000, 2000, 3000),
                                                   reps=2 if quick else 4))
        _say("3/5 model table")
        table = asyncio.run(model_table(base, runs=3 if quick else 8))
        _say(f"5/5 concurrency at {users} users (the tutorial's server is slow under load)")
        sweep = asyncio.run(concurrency_sweep({LAB: SweepServer.lab(lab.url), TUTORIAL: SweepServer.tutorial(tut.url)},
                                              users=users, requests_per_user=2 if quick else 3))
        _say("7 network conditions through labkit.netem")
        network = asyncio.run(network_conditions(int(lab.url.rsplit(":", 1)[1]), reps=1 if quick else 3))
    _say("6 proxy buffering through nginx")
    try:
        from ..nginx import ServiceUnavailable, ensure_nginx
        from ..server.runner import serve
        ensure_nginx()
        with serve(http="h11") as h11:
            buffering = {k: {kk: vv for kk, vv in v.items() if kk != "arrivals_s"}
                         for k, v in asyncio.run(proxy_buffering(h11.port)).items()}
    except ServiceUnavailable as e:
        buffering = {"skipped": str(e)}
    _say("4 transport overhead: per-transport TTFT, and the transports benchmark (quick)")
    from . import transports
    with ServerProcess(["serve", "--port", "0"]) as model, \
            ServerProcess(["serve", "--port", "0", "--upstream-base-url", model.url + "/v1"]) as app, \
            ServerProcess(["--port", "0"], module="labkit.bench.rawtcp", health_path=None) as raw:
        per_transport = asyncio.run(transport_overhead(app.url, model.url + "/v1", raw.url, runs=3 if quick else 8))
    transport = transports.run(quick=True)
    top = max(users)
    lab_top = next(r for r in sweep if r["server"] == LAB and r["users"] == top)
    tut_top = next(r for r in sweep if r["server"] == TUTORIAL and r["users"] == top)
    return {
        "benchmark": "latency", "description": __doc__.strip().splitlines()[0],
        "setup": {"cpus": os.cpu_count(), "users": list(users)},
        "streaming_vs_not": streaming,
        "ttft_vs_prompt_length": prompt,
        "models": {"table": table,
                   "selected_for_ttft_budget_300ms": select_model(table, ttft_budget_ms=300),
                   "selected_for_ttft_budget_800ms": select_model(table, ttft_budget_ms=800)},
        "transport_overhead": {"ttft_and_total": per_transport, "delivery_delay_ratios": transport["ratios"],
                               "target": transport["target"]},
        "concurrency": sweep,
        "network_conditions": network,
        "proxy_buffering": buffering,
        "targets": {"lab_p99_ttft_at_top_users_within_1.5x_single": {
            "users": top, "ratio": lab_top["p99_ratio_to_single_user"],
            "met": lab_top["p99_ratio_to_single_user"] is not None and lab_top["p99_ratio_to_single_user"] <= 1.5,
            "tutorial_ratio": tut_top["p99_ratio_to_single_user"]}},
    }
