"""Benchmarks: each writes its results as JSON (``python -m labkit bench NAME --json PATH``).

Speed targets live here, never in timed unit tests: these machines are shared and noisy, so each
benchmark compares contenders side by side in one run and reports ratios.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = {"transports": "labkit.bench.transports", "vad": "labkit.bench.vad", "vad-tune": "labkit.bench.vadtune", "realtime": "labkit.bench.realtime",
              "latency": "labkit.bench.latency", "load": "labkit.bench.load"}


def run_benchmark(name: str, json_path: str, quick: bool = False, transport: str | None = None,
                  concurrency: list[int] | None = None) -> int:
    module = importlib.import_module(BENCHMARKS[name])
    if concurrency is not None:                             # realtime only: N sessions speaking together
        if name != "realtime":
            raise SystemExit("--concurrency applies to the realtime benchmark only")
        from . import realtime_scale
        results = realtime_scale.run(quick=quick, levels=tuple(concurrency))
        png = str(Path(json_path).with_suffix(".png"))
        realtime_scale.plot(results, png)
        results["plot"] = Path(png).name
    elif transport is not None:                               # realtime only: the WebSocket or WebRTC comparison
        if name != "realtime":
            raise SystemExit("--transport applies to the realtime benchmark only")
        from .realtime_loss import run_transport
        base = module.run(quick=quick) if transport == "websocket" else None
        results = run_transport(transport, quick=quick, base=base)
    else:
        results = module.run(quick=quick)
    Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    print(_targets_table(results))
    print(f"wrote {json_path}", file=sys.stderr)
    return 0


def _targets_table(results: dict) -> str:
    """The short table printed at the end of every benchmark: each target, its measured value, met or not."""
    targets = results.get("targets") or {}
    if "rule" in targets:                                   # a single target (transports)
        targets = {targets["rule"]: targets}
    if not targets and "emulator_overhead_ms" in results:   # realtime
        o = results["emulator_overhead_ms"]
        targets = {f"emulator overhead p95 < {o['target_p95_under_ms']} ms": {"met": o["met"], "value": o["p95"]}}
    lines = [f"{results.get('benchmark', '')}: {results.get('description', '')}"]
    for name, t in targets.items():
        value = next((t[k] for k in ("value", "ratio", "x_real_time", "met_in") if k in t), "")
        lines.append(f"  {'met    ' if t.get('met') else 'NOT met'}  {name}  {value}")
    return "\n".join(lines)
