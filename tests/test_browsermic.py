"""The browser microphone's kernel side: PushSource and the widget's binary comm messages."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from labkit.audio import PushSource
from labkit.speechdata import load_clean
from labkit.vad import SpeechStart
from labkit.widgets import BrowserMicrophone, LiveVAD


async def _collect(source) -> list[np.ndarray]:
    return [chunk async for chunk in source]


async def test_push_source_recuts_odd_pieces_into_fixed_chunks_and_ends():
    source = PushSource(16_000, chunk_ms=20)
    signal = np.arange(1000, dtype=np.int16)
    task = asyncio.ensure_future(_collect(source))
    for i in range(0, 1000, 77):                        # the browser's sizes are not ours
        source.push(signal[i:i + 77].tobytes())
        await asyncio.sleep(0)
    source.end()
    chunks = await asyncio.wait_for(task, 5)
    assert [c.size for c in chunks] == [320, 320, 320]  # whole chunks only; the 40-sample rest is not padded
    assert np.array_equal(np.concatenate(chunks), signal[:960]) and source.pushed == 1000


async def test_push_source_takes_audio_from_another_thread_and_stops_at_max_seconds():
    source = PushSource(8_000, chunk_ms=10, max_seconds=0.5)
    task = asyncio.ensure_future(_collect(source))
    await asyncio.sleep(0)
    threading.Thread(target=lambda: [source.push(np.ones(80, np.int16)) for _ in range(100)]).start()
    chunks = await asyncio.wait_for(task, 5)
    assert sum(c.size for c in chunks) == 4000


def test_push_source_refuses_half_samples():
    with pytest.raises(ValueError):
        PushSource().push(b"abc")


async def test_the_widget_feeds_live_vad_from_binary_comm_buffers():
    audio, utterances = load_clean()
    u = utterances[0]
    piece = audio[int((u.start_s - 0.8) * 16_000): int((u.end_s + 1.0) * 16_000)]
    mic = BrowserMicrophone(sample_rate=16_000, chunk_ms=20)
    assert "registerProcessor(\"lab-capture\"" in mic._worklet   # the page's own capture worklet
    scope = LiveVAD(mic.source, fps=1)
    run = asyncio.ensure_future(scope.run(seconds=10))
    for seq, i in enumerate(range(0, piece.size, 320)):  # what the front end sends: {type: pcm} + one buffer
        mic._handle_custom_msg({"type": "pcm", "seq": seq, "rms": 0.1}, [memoryview(piece[i:i + 320].tobytes())])
        await asyncio.sleep(0)
    mic._handle_custom_msg({"type": "end"}, [])
    events = await asyncio.wait_for(run, 10)
    starts = [e for e in events if isinstance(e, SpeechStart)]
    assert mic.chunks_received == -(-piece.size // 320) and mic.seconds_received == pytest.approx(piece.size / 16_000)
    assert len(starts) == 1 and abs(starts[0].start_s - 0.8) < 0.1
    scope.close()


async def test_realtime_client_streams_the_browser_microphone_to_the_server(server):
    from labkit.audio import resample
    from labkit.realtime.client import RealtimeClient

    audio, utterances = load_clean()
    u = utterances[0]
    speech = resample(audio[int((u.start_s - 0.5) * 16_000): int((u.end_s + 1.0) * 16_000)], 16_000, 24_000)
    mic = BrowserMicrophone(sample_rate=24_000, chunk_ms=20)
    async with RealtimeClient.local(server) as client:
        await client.update_session(audio={"input": {"transcription": None}})
        sending = asyncio.ensure_future(client.stream_input(mic.source))
        for i in range(0, speech.size, 2400):              # 100 ms per comm message, as the front end sends
            mic._handle_custom_msg({"type": "pcm"}, [memoryview(speech[i:i + 2400].tobytes())])
            await asyncio.sleep(0)
        mic._handle_custom_msg({"type": "end"}, [])
        sent = await asyncio.wait_for(sending, 10)
        started = await client.wait_for("input_audio_buffer.speech_started")
        stopped = await client.wait_for("input_audio_buffer.speech_stopped")
    assert sent == speech.size // 480 * 480
    assert abs(started["audio_start_ms"] - (500 - 300)) <= 60 and stopped["audio_end_ms"] > started["audio_start_ms"]
