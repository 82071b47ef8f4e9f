"""The Realtime input buffer under server VAD (pure state machine, sample-clocked): it stays small
while nobody speaks, and an utterance that never ends is committed at the maximum length."""

import base64
import json

import numpy as np

from labkit.realtime.machine import RealtimeSession

SR = 24_000


def noise(seconds: float, rms: float = 300.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, rms, int(seconds * SR))


def voice_like(seconds: float) -> np.ndarray:
    """A harmonic tone gliding in pitch with a 4 Hz syllable rhythm: speech to a sub-band detector."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    tone = sum(np.sin(k * phase) / k for k in range(1, 20))
    return 3000 * tone * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def session(turn_detection: dict | None, **kwargs) -> RealtimeSession:
    s = RealtimeSession("gpt-realtime", **kwargs)
    s.receive(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": turn_detection}}}}))
    return s


def feed(s: RealtimeSession, audio: np.ndarray, chunk_ms: int = 100) -> tuple[list, list, int]:
    """Append in chunks; returns the events, the orders and the largest buffer seen (samples)."""
    events, orders, largest, n = [], [], 0, SR * chunk_ms // 1000
    for i in range(0, audio.size, n):
        e, o = s.receive(json.dumps({"type": "input_audio_buffer.append",
                                     "audio": base64.b64encode(pcm(audio[i:i + n])).decode()}))
        events += e
        orders += o
        largest = max(largest, s.input.buffered_samples)
    return events, orders, largest


def test_idle_microphone_keeps_only_what_prefix_padding_needs():
    s = session({"type": "server_vad", "prefix_padding_ms": 300})
    events, _, largest = feed(s, noise(60.0))
    assert not [e for e in events if e["type"].startswith("input_audio_buffer.speech")]
    bound = 2 * 300 * SR // 1000 + 2 * s.input.vad.config.frame_samples + SR // 10   # + one append
    assert largest <= bound and s.input.buffered_samples <= bound
    assert s.samples_in == 60 * SR                       # the clock still counts every sample


def test_without_turn_detection_the_buffer_keeps_everything_until_commit():
    s = session(None)
    feed(s, noise(20.0))
    assert s.input.buffered_samples == 20 * SR
    events, _ = s.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    assert events[0]["type"] == "input_audio_buffer.committed" and s.input.buffered_samples == 0


def test_an_utterance_that_never_pauses_is_committed_at_the_maximum_length():
    s = session({"type": "server_vad", "create_response": True, "silence_duration_ms": 500},
                max_utterance_ms=1000)
    audio = np.concatenate([noise(1.0), noise(2.7, seed=1) + voice_like(2.7), noise(2.0, seed=2)])
    events, orders, largest = feed(s, audio)
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.speech_started") == 3      # cut at 1 s and 2 s, then the rest
    assert kinds.count("input_audio_buffer.speech_stopped") == 3
    assert kinds.count("input_audio_buffer.committed") == 3
    stops = [e["audio_end_ms"] for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    starts = [e["audio_start_ms"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
    assert 1900 <= stops[0] <= 2100 and abs(starts[1] - stops[0]) <= 300      # the cut, and speech going on
    assert 3600 <= stops[2] - 500 <= 3900                                     # the real end (+ the silence wait)
    # the reply waits for the real end (not the forced cuts), and comes once
    assert kinds.count("response.created") == 1
    assert kinds.index("response.created") > max(i for i, k in enumerate(kinds) if k == "input_audio_buffer.committed")
    assert largest <= (1.0 + 0.3 + 0.6) * SR + SR // 10      # one utterance's worth at most, never all 5.7 s
