"""Where a fake-microphone script's lines are in what a page captured, glitches and all.

Chromium's capture gains or loses whole buffers when its audio thread is late; everything after a
glitch moves. These tests make such captures by hand (a known offset, gain, faint noise, a run of
inserted silence inside one line and samples dropped inside another) and check that each line is
found where it really is, not where one global offset would put it.
"""

from __future__ import annotations

import numpy as np
import pytest

from labkit.fakemic import fake_mic_wav, locate, locate_lines
from labkit.voicepage import VoiceRun

RATE = 24_000


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    return fake_mic_wav(tmp_path_factory.mktemp("mic") / "mic.wav", [1, 5], lead_s=2.5, gaps_s=[3.0], tail_s=2.0)


def _capture(script, *, lead: int, edits: list[tuple[float, int]], seed: int = 0) -> np.ndarray:
    """The script at 24 kHz behind ``lead`` samples, at 0.7x gain with faint noise; each ``(at_s, n)`` in
    ``edits`` inserts ``n`` zeros (n > 0) or drops ``-n`` samples (n < 0) at ``at_s`` of the script."""
    x = script.at_rate(RATE).astype(np.float64) * 0.7
    for at_s, n in sorted(edits, reverse=True):
        i = round(at_s * RATE)
        x = np.concatenate([x[:i], np.zeros(n), x[i:]]) if n > 0 else np.concatenate([x[:i], x[i - n:]])
    x = np.concatenate([np.zeros(lead), x]) + np.random.default_rng(seed).normal(0, 3, lead + x.size)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def test_a_clean_capture_puts_every_line_at_the_global_offset(script):
    captured = _capture(script, lead=1234, edits=[])
    assert locate(captured, script, RATE) == pytest.approx(1234 / RATE, abs=1e-9)
    for line, at in zip(script.lines, locate_lines(captured, script, RATE)):
        assert at.start_s == pytest.approx(line.start_s + 1234 / RATE, abs=1 / RATE)
        assert at.end_s == pytest.approx(line.end_s + 1234 / RATE, abs=1 / RATE)
        assert at.drift_s == pytest.approx(0, abs=1 / RATE)


def test_glitches_inside_lines_move_their_ends_and_are_found(script):
    a, b = script.lines
    # 60 ms lost in the middle of A; 100 ms of silence inserted in the middle of B (a CI run saw +100 ms)
    captured = _capture(script, lead=480, edits=[((a.start_s + a.end_s) / 2, -1440), ((b.start_s + b.end_s) / 2, 2400)])
    offset = locate(captured, script, RATE)
    at_a, at_b = locate_lines(captured, script, RATE, offset)
    lead = 480 / RATE
    assert at_a.start_s == pytest.approx(a.start_s + lead, abs=1e-3)
    assert at_a.end_s == pytest.approx(a.end_s + lead - 0.060, abs=1e-3)
    assert at_a.drift_s == pytest.approx(-0.060, abs=1e-3)
    assert at_b.start_s == pytest.approx(b.start_s + lead - 0.060, abs=1e-3)
    assert at_b.end_s == pytest.approx(b.end_s + lead + 0.040, abs=1e-3)
    assert at_b.drift_s == pytest.approx(0.100, abs=1e-3)
    # one offset for the whole file would misplace B's end by ~100 ms (or A's by 60): what the match corrects
    assert abs((offset + b.end_s) - at_b.end_s) > 0.035 or abs((offset + a.end_s) - at_a.end_s) > 0.035


def test_voice_run_edges_judge_the_server_against_where_each_line_is(script):
    a, b = script.lines
    captured = _capture(script, lead=0, edits=[((b.start_s + b.end_s) / 2, 2400)])
    lines_at = locate_lines(captured, script, RATE)
    events = [{"type": "input_audio_buffer.speech_started", "audio_start_ms": 1000 * a.start_s - 300},
              {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000 * a.end_s + 500},
              {"type": "input_audio_buffer.speech_started", "audio_start_ms": 1000 * b.start_s - 300},
              {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000 * b.end_s + 100 + 500}]
    run = VoiceRun(events, [], [], {}, {}, [], 0, "", 0, captured, 0.0, lines_at, None, [], None)
    edges = run.edges(script)
    assert [round(e["audio_end_ms"] - (e["end_ms"] + 500)) for e in edges] == [0, 0]
    assert [round(e["drift_ms"]) for e in edges] == [0, 100]
