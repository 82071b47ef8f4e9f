"""The transports benchmark runs end to end and writes its JSON (its numbers are not asserted here:
speed targets live in the benchmark's own report, never in timed unit tests)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(300)      # about 25 s on a quiet machine; over 120 s once with the load average at 12
def test_transports_benchmark_writes_json_with_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "transports", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "delivery p50" in proc.stderr                      # progress is shown while it runs
    data = json.loads(out.read_text())
    levels = data["setup"]["levels"]
    assert {(r["transport"], r["clients"]) for r in data["results"]} == \
        {(t, n) for t in ("raw", "http", "sse", "ws", "sse-httpx", "sse-upstream-httpx", "peer-streaming",
                          "peer-sse-starlette")
         for n in levels}
    for row in data["results"]:
        assert row["delivery_delay_ms"]["count"] == row["delivery_delay_app_ms"]["count"] == row["tokens"] > 0
        assert row["ttft_ms"]["count"] == row["requests"] == row["clients"]
        # the lean clients read the kernel's receive stamp; each token reaches the socket before the app reads it,
        # so every percentile at the socket is at most the application's (the httpx rows have no socket stamp)
        lean = row["transport"] not in ("http", "sse-httpx")
        assert (row["delivery_measured_at"] == "socket") == lean, row["transport"]
        if lean:
            assert all(row["delivery_delay_ms"][p] <= row["delivery_delay_app_ms"][p] for p in ("p50", "p99", "max"))
            assert row["lateness_vs_schedule_ms"]["count"] == row["tokens"]
            assert row["extra_inter_token_delay_socket_ms"]["count"] == row["tokens"] - row["requests"]
            assert row["relay_preemptions"] >= 0
    for r in data["ratios"]:
        assert r["ratio_to_raw"] > 0 and isinstance(r["within_bound"], bool)
        assert r["app"]["ratio_to_raw"] > 0 and isinstance(r["app"]["within_bound"], bool)    # the app's, beside
    http = [r for r in data["ratios"] if r["transport"] == "http"]
    assert all(r["p99_ms"] > 100 for r in http)              # HTTP holds every token until the end
    assert isinstance(data["target"]["met"], bool)
    # the usual relays ran beside the lab's, measured the same way, with the CPU each token cost
    peers = {r["peer"]: r for r in data["peer_ratios"] if r["clients"] == max(levels)}
    assert set(peers) == {"peer-streaming", "peer-sse-starlette"}
    assert all(isinstance(r["met"], bool) and r["extra_delay"]["peer_p99_ms"] is not None for r in peers.values())
    assert all(r["lateness"]["peer_p99_ms"] > 0 and r["delivery_delay"]["note"] for r in peers.values())
    assert set(data["information"]) == {f"lab SSE p99 delivery delay / each peer's at {max(levels)} clients"}
    for transport in ("sse", "ws", "sse-upstream-httpx", "peer-streaming", "peer-sse-starlette"):
        assert data["cpu_s_per_1k_tokens"][transport]["relay"] > 0
    for row in data["results"]:
        assert row["extra_inter_token_delay_ms"]["count"] == row["tokens"] - row["requests"]
    assert all("met" in t for t in data["targets"].values()) and len(data["targets"]) == 4
    profile = data["profile"]["sse"]                                      # cProfile of the lab's relay, by layer
    assert profile["tokens"] > 0 and abs(sum(v["share"] for v in profile["layers"].values()) - 1) < 0.05
    assert any(name.startswith("lab streams") for name in profile["layers"])
    from labkit.bench.plots import plot_transports
    assert plot_transports(data, tmp_path / "t.png").stat().st_size > 10_000       # the README's curves


def test_realtime_benchmark_writes_its_breakdown(tmp_path):
    out = tmp_path / "realtime.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "realtime", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for model in ("gpt-realtime", "instant"):
        parts = data["summary"][model]
        assert {"voice_to_voice_ms", "vad_wait_ms", "to_response_ms", "to_first_audio_ms", "transcription_ms"} <= set(parts)
        assert parts["voice_to_voice_ms"]["count"] == data["setup"]["turns"]
        # the parts add up to the whole, turn by turn
        for turn in data["turns"][model]:
            total = turn["vad_wait_ms"] + turn["to_response_ms"] + turn["to_first_audio_ms"]
            assert abs(total - turn["voice_to_voice_ms"]) < 1.0
    assert isinstance(data["emulator_overhead_ms"]["met"], bool)
    assert 0 <= data["word_error_rate"]["input_transcription_mean"] <= 1
    assert data["answer_round_trip"] and all(r["answer"] for r in data["answer_round_trip"])


def test_load_benchmark_writes_json_with_its_targets(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "load", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["benchmark"] == "load" and results["setup"]["quick"]
    assert results["transports"]["sse"]["errors"] == 0 and results["transports"]["ws"]["errors"] == 0
    assert results["transports"]["sse"]["tokens"] == 50 * 10 and results["peak_streams"] >= 50
    for row in results["transports"].values():         # arrivals at the socket beside the application's
        assert row["extra_inter_token_delay_socket_ms"]["count"] == row["extra_inter_token_delay_ms"]["count"] > 0
        assert all(row["lateness_vs_schedule_socket_ms"][p] <= row["lateness_vs_schedule_ms"][p]
                   for p in ("p50", "p99", "max"))            # each token is at the socket before the app reads it
    assert results["extra_p99_at_the_socket_ms"]["value"] is not None
    assert set(results["targets"]) == {"errors == 0", "p99 extra inter-token delay < 50 ms",
                                       "memory per connection < 100 KB",
                                       "lab SSE p99 extra delay <= 0.5 x peer-streaming's at 50 clients",
                                       "lab SSE p99 extra delay <= 0.5 x peer-sse-starlette's at 50 clients"}
    # the peers: the same 50 SSE clients against each usual relay, no errors, every token there
    phases = results["peers"]["phases"]
    assert set(phases) == {"lab-sse", "peer-streaming", "peer-sse-starlette"}
    for name, phase in phases.items():
        row = next(iter(phase["transports"].values()))
        assert phase["errors"] == 0 and row["tokens"] == 50 * 10, name
        assert phase["relay_cpu_s_per_1k_tokens"] > 0
    assert results["workers"]["1"]["relay_cpu_s_per_1k_tokens"] > 0
    # every process's CPU per 1,000 tokens, ramp and steady apart; what a new stream costs each server
    per_process = results["cpu_per_process"]
    assert per_process["tokens"]["ramp"] + per_process["tokens"]["steady"] == 2 * 50 * 10
    for name in ("app server", "model server", "load generators (threads of the benchmark's process)"):
        assert per_process["cpu_s"][name]["whole"] > 0 and per_process["cpu_s_per_1k_tokens"][name]["whole"] > 0, name
    assert results["new_stream_cpu_ms"]["streams"] == 30 and results["new_stream_cpu_ms"]["app_server"] > 0
    from labkit.bench.plots import plot_load
    assert plot_load(results, tmp_path / "l.png").stat().st_size > 10_000
    assert "memory per connection" in proc.stdout
