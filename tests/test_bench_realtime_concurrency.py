"""``bench realtime --concurrency``: the real benchmark, small (its own file: it takes ~15 s)."""

import json
import subprocess
import sys

from labkit.bench.realtime_scale import plot_levels, summarize_level


def test_concurrency_benchmark_writes_levels_targets_costs_and_a_plot(tmp_path):
    out = tmp_path / "voices.json"
    proc = subprocess.run([sys.executable, "-m", "labkit", "bench", "realtime", "--quick", "--concurrency", "1,2",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert [level["sessions"] for level in r["levels"]] == [1, 2]
    for level in r["levels"]:
        assert level["answered"] == level["sessions"], level                 # every session answered
        assert level["transcript_after_speech_ms"]["count"] + level["transcriptions_failed"] == level["sessions"]
        assert level["voice_to_voice_ms"]["p95"] >= level["voice_to_voice_ms"]["p50"] > 0
        assert level["server_cpu_s"] > 0
    assert len(r["targets"]) == 3 and r["targets"]["every session answered"]["met"] is True
    assert all("met" in t for t in r["targets"].values())
    cost = r["cost"]
    assert cost["cores"] >= 1 and 0 < cost["recognition_x_real_time"] < 5 and 0 < cost["synthesis_x_real_time"] < 5
    settings = cost["recognition_settings"]                 # the server's search settings beside the defaults
    measured = settings["measured"]["sessions' utterances"]
    assert settings["lab"]["fwdflat"] is False and measured["utterances"] == 6
    assert round(measured["lab"]["cpu_s_per_utterance"], 3) == cost["recognition_cpu_s_per_utterance"]
    # deterministic; the lab decodes incrementally (streamed while spoken): here 0.196 vs the defaults' whole-utterance
    # 0.174, one word of 46 (on the 20 sessions' utterances 0.224 vs 0.218)
    assert measured["lab"]["word_error_rate"] <= measured["pocketsphinx defaults"]["word_error_rate"] + 0.04
    # streamed while spoken, little is left to decode at the end of speech (CPU time, 0.03 vs 0.2 s measured)
    assert 0 < cost["recognition_cpu_s_left_at_end"] < cost["recognition_cpu_s_per_utterance"]
    png = tmp_path / r["plot"]
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "every session answered" in proc.stdout          # the targets table is printed


def test_a_bad_level_list_is_refused_clearly(tmp_path, capsys):
    import pytest

    from labkit.__main__ import main
    with pytest.raises(SystemExit) as refused:
        main(["bench", "realtime", "--concurrency", "1,x", "--json", str(tmp_path / "x.json")])
    assert refused.value.code == 2 and "numbers separated by commas" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="realtime benchmark only"):
        main(["bench", "latency", "--concurrency", "1", "--json", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_the_curve_plots_levels_with_a_missing_transcript():
    import matplotlib
    matplotlib.use("Agg")
    row = {"voice_to_voice_ms": 900.0, "transcript_after_speech_ms": None, "transcription_failed": True}
    fig = plot_levels([summarize_level(1, [row]), summarize_level(2, [row, TimeoutError()])], title="t")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "voice-to-voice"
