"""Benchmarks: each writes its results as JSON (``python -m labkit bench NAME --json PATH``).

Speed targets live here, never in timed unit tests: these machines are shared and noisy, so each
benchmark compares contenders side by side in one run and reports ratios.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = {"transports": "labkit.bench.transports", "vad": "labkit.bench.vad", "realtime": "labkit.bench.realtime",
              "latency": "labkit.bench.latency"}


def run_benchmark(name: str, json_path: str, quick: bool = False) -> int:
    module = importlib.import_module(BENCHMARKS[name])
    results = module.run(quick=quick)
    Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {json_path}", file=sys.stderr)
    return 0
