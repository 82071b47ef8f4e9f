"""Notebook widgets, driven headless as nbval drives them."""

import asyncio
import builtins

import matplotlib.pyplot as plt
import numpy as np

from labkit.audio import ArraySource, SyntheticSource
from labkit.vad import VADConfig
from labkit.widgets import ChatBox, LiveVAD


async def test_live_vad_runs_bounded_draws_without_leaking_figures():
    before = plt.get_fignums()
    scope = LiveVAD(SyntheticSource(seconds=6, realtime=False), VADConfig(threshold=0.02), window_s=4)
    events = await scope.run(seconds=5)
    assert scope.vad.time_s >= 5 and scope.vad.time_s < 5.1           # bounded by seconds
    assert [e.type for e in events][:2] == ["speech_start", "speech_end"]
    assert scope.segments and scope.segments[0][1] is not None
    assert bytes(scope.image.value).startswith(b"\x89PNG")
    assert plt.get_fignums() == before                                  # nothing registered with pyplot
    assert scope.trace[0][0] >= scope.vad.time_s - 4 - 0.02             # the trace keeps only the window
    snapshot = scope.snapshot()
    assert snapshot.data.startswith(b"\x89PNG")


async def test_sliders_retune_the_running_detector_and_stop_ends_it():
    silence_then_tone = np.concatenate([np.zeros(16_000, np.int16),
                                        (0.01 * 32767 * np.sin(np.arange(16_000 * 30) / 5)).astype(np.int16)])
    scope = LiveVAD(ArraySource(silence_then_tone, realtime=True), VADConfig(method="rms", frame_ms=10, threshold=0.05))
    scope.start()
    await asyncio.sleep(0.3)
    scope.threshold.value = 0.003                        # the quiet tone (RMS 0.007) now counts as speech
    scope.min_silence.value = 300
    assert scope.vad.config.threshold == 0.003 and scope.vad.config.min_silence_ms == 300
    await asyncio.sleep(1.5)
    assert any(e.type == "speech_start" for e in scope.events)
    scope.stop()
    await asyncio.sleep(0.1)
    assert scope._task.done() and "stopped" in scope.status.value


async def test_chat_box_works_headless(server):
    box = ChatBox(server.url)
    reply = await box.ask("What is a WebSocket?")
    assert "WebSocket" in reply and box.transcript[0] == ("you", "What is a WebSocket?")
    assert box.last_ttft_s is not None and "first token" in box._status.value
    assert "WebSocket" in box._history.value
    await box.close()


def test_a_missing_peer_is_reported_not_fatal(monkeypatch):
    from labkit import vadeval
    real_import = builtins.__import__

    def no_webrtc(name, *args, **kwargs):
        if name == "webrtcvad":
            raise ImportError("No module named 'webrtcvad'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_webrtc)
    monkeypatch.setattr(vadeval.importlib.util, "find_spec", lambda name: None)
    detectors, missing = vadeval.all_detectors()
    assert {"webrtcvad mode 0", "silero (onnx)"} <= set(missing)
    assert "pip install webrtcvad-wheels" in missing["webrtcvad mode 0"]
    assert any(d.name.startswith("labkit") for d in detectors)
