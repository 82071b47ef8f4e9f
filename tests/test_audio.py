"""Audio helpers and sources: conversions, resampling, WAV files, pacing, and the no-sound-card fallbacks."""

import asyncio
import builtins
import sys

import numpy as np
import pytest

from labkit.audio import (ArraySource, FileSource, StreamResampler, SyntheticSource, audio_status, open_input,
                          pcm16_bytes, play, read_wav, resample, to_float32, to_int16, write_wav)
from labkit.audio import devices, sources


def test_pcm16_round_trips():
    x = np.array([0, 1, -1, 32767, -32768], np.int16)
    assert np.array_equal(to_int16(pcm16_bytes(x)), x)
    assert np.array_equal(to_int16(to_float32(x)), x)                    # exactly invertible
    assert np.array_equal(to_int16(np.array([1.5, -2.0, 0.5])), np.array([32767, -32768, 16384], np.int16))
    with pytest.raises(ValueError):
        to_int16(b"\x00")


@pytest.mark.parametrize("src, dst", [(16_000, 24_000), (24_000, 16_000), (22_050, 16_000)])
def test_resampling_keeps_a_tone_and_its_length(src, dst):
    t = np.arange(src) / src
    x = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    y = resample(x, src, dst)
    assert y.dtype == np.int16 and abs(y.size - dst) <= 1
    spectrum = np.abs(np.fft.rfft(y.astype(float)))
    assert abs(np.argmax(spectrum) * dst / y.size - 440) < 2
    assert np.sqrt(np.mean((y / 32768.0) ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_streaming_resampler_matches_whole_signal():
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 3000, 24_000)).astype(np.int16)
    stream = StreamResampler(24_000, 16_000)
    pieces = [stream.process(x[i:i + 480]) for i in range(0, x.size, 480)] + [stream.flush()]
    y = np.concatenate(pieces)
    whole = resample(x, 24_000, 16_000)
    assert abs(y.size - whole.size) <= 2
    n = min(y.size, whole.size)
    assert np.max(np.abs(y[:n].astype(int) - whole[:n].astype(int))) <= 60      # same filter, edge effects aside


def test_wav_round_trip_and_stereo_and_resample(tmp_path):
    x = (np.sin(np.arange(16_000) / 10) * 10_000).astype(np.int16)
    path = write_wav(tmp_path / "a.wav", x, 16_000)
    y, rate = read_wav(path)
    assert rate == 16_000 and np.array_equal(x, y)
    z, rate = read_wav(path, sample_rate=24_000)
    assert rate == 24_000 and abs(z.size - 24_000) <= 1


class FakeClock:
    """perf_counter and asyncio.sleep on a clock of our own: sleeping advances it, nothing waits."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


async def test_file_source_paces_in_real_time_and_chunks_exactly(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from labkit.audio import sources

    clock = FakeClock()
    monkeypatch.setattr(sources, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(sources, "asyncio", SimpleNamespace(sleep=clock.sleep))
    path = write_wav(tmp_path / "b.wav", np.arange(8_000, dtype=np.int16), 16_000)     # 0.5 s
    t0, chunks, times = clock.now, [], []
    async for c in FileSource(path, chunk_ms=20):
        chunks.append(c)
        times.append(round(clock.now - t0, 6))
    assert len(chunks) == 25 and all(c.size == 320 for c in chunks)
    assert np.array_equal(np.concatenate(chunks), np.arange(8_000, dtype=np.int16))
    # real-time pace: chunk k is out once its last sample "happened", on an absolute schedule
    assert times == [round(0.02 * (k + 1), 6) for k in range(25)]
    t0 = clock.now
    assert len([c async for c in FileSource(path, chunk_ms=20, realtime=False)]) == 25 and clock.now == t0


async def test_looping_source_is_bounded():
    source = ArraySource(np.ones(1600, np.int16), chunk_ms=10, realtime=False, loop=True, max_seconds=0.5)
    assert sum(c.size for c in [c async for c in source]) == 8_000
    with pytest.raises(ValueError):
        list(ArraySource(np.ones(10, np.int16), loop=True).chunks())


def test_synthetic_source_is_deterministic():
    a, b = SyntheticSource(seed=3), SyntheticSource(seed=3)
    assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, SyntheticSource(seed=4).samples)


def test_without_portaudio_everything_falls_back_with_one_line(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    status = audio_status()
    assert not status.has_input and "PortAudio" in status.reason and "libportaudio2" in status.reason
    source = open_input(max_seconds=1)
    line = capsys.readouterr().out.strip()
    assert isinstance(source, FileSource) and line.count("\n") == 0 and "clean.wav" in line
    assert play(np.zeros(10, np.int16), 16_000) is False
    assert "Not played" in capsys.readouterr().out


def test_with_portaudio_but_no_devices(monkeypatch):
    class FakeSD:
        @staticmethod
        def query_devices():
            return []

    monkeypatch.setattr(devices, "import_sounddevice", lambda: FakeSD)
    status = devices.audio_status()
    assert not status.has_input and "no sound card" in status.reason


def test_microphone_is_chosen_when_present(monkeypatch):
    monkeypatch.setattr(sources, "audio_status", lambda: devices.AudioStatus(True, True, "input: test mic"))
    assert isinstance(open_input(), sources.MicrophoneSource)


def _fake_sounddevice(monkeypatch, on_enter) -> list:
    """A stand-in for ``sounddevice`` whose InputStream calls ``on_enter(callback, blocksize)`` when
    entered (and does nothing on leaving); returns the callbacks the streams were given."""
    callbacks = []

    class FakeStream:
        def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
            callbacks.append(callback)
            self.callback, self.blocksize = callback, blocksize

        def __enter__(self):
            on_enter(self.callback, self.blocksize)
            return self

        def __exit__(self, *exc):
            pass

    class FakeSD:
        InputStream = FakeStream

    monkeypatch.setattr(sources, "import_sounddevice", lambda: FakeSD)
    return callbacks


def _block(value: int, blocksize: int) -> np.ndarray:
    return np.full((blocksize, 1), value, np.int16)


async def test_microphone_source_reads_through_a_callback(monkeypatch):
    """The real MicrophoneSource against a stand-in InputStream that calls back from another thread,
    and goes on doing so after the stream is left (a late block must be dropped, never raise)."""
    import threading

    def produce(callback, blocksize):
        def run():
            for k in range(10):
                callback(_block(k, blocksize), blocksize, None, None)
        threading.Thread(target=run, daemon=True).start()

    _fake_sounddevice(monkeypatch, produce)
    mic = sources.MicrophoneSource(chunk_ms=20, max_seconds=0.1)
    chunks = await asyncio.wait_for(_collect(mic), 5)
    assert [int(c[0]) for c in chunks] == [0, 1, 2, 3, 4] and all(c.size == 320 for c in chunks)


def test_a_late_microphone_block_after_the_loop_closed_is_dropped(monkeypatch):
    """PortAudio's thread may deliver a block while the stream stops and the loop closes: dropped."""
    callbacks = _fake_sounddevice(monkeypatch, lambda callback, n: callback(_block(0, n), n, None, None))
    loop = asyncio.new_event_loop()
    try:
        chunks = loop.run_until_complete(asyncio.wait_for(_collect(sources.MicrophoneSource(max_seconds=0.02)), 5))
    finally:
        loop.close()
    assert [c.size for c in chunks] == [320]
    callbacks[0](_block(0, 320), 320, None, None)      # late, the loop closed: no error


async def _collect(source):
    return [c async for c in source]
