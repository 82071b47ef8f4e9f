"""The transports benchmark runs end to end and writes its JSON (its numbers are not asserted here:
speed targets live in the benchmark's own report, never in timed unit tests)."""

import json
import subprocess
import sys


def test_transports_benchmark_writes_json_with_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "transports", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "delivery p50" in proc.stderr                      # progress is shown while it runs
    data = json.loads(out.read_text())
    levels = data["setup"]["levels"]
    assert {(r["transport"], r["clients"]) for r in data["results"]} == \
        {(t, n) for t in ("raw", "http", "sse", "ws", "sse-httpx") for n in levels}
    for row in data["results"]:
        assert row["delivery_delay_ms"]["count"] == row["tokens"] > 0
        assert row["ttft_ms"]["count"] == row["requests"] == row["clients"]
    for r in data["ratios"]:
        assert r["ratio_to_raw"] > 0 and isinstance(r["within_bound"], bool)
    http = [r for r in data["ratios"] if r["transport"] == "http"]
    assert all(r["p99_ms"] > 100 for r in http)              # HTTP holds every token until the end
    assert isinstance(data["target"]["met"], bool)
