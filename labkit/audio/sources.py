"""Audio sources that yield fixed-size chunks of int16 samples: microphone, WAV file, synthetic.

Every source is an async iterator (``async for chunk in source``). File and synthetic sources play
at **real-time pace** by default, sleeping until each chunk's due time on an absolute schedule (so
pacing never drifts), or as fast as possible with ``realtime=False`` (tests, evaluation).
``open_input()`` picks the microphone when there is one and otherwise says why, in one line, and
plays a WAV file instead: the same code then runs on a laptop and in CI.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np

from ..resources import data_file
from .devices import audio_status, import_sounddevice
from .wav import read_wav

__all__ = ["AudioSource", "ArraySource", "FileSource", "SyntheticSource", "MicrophoneSource", "open_input",
           "synthetic_speechlike"]


class AudioSource:
    """Base: ``sample_rate``, ``chunk_samples``, a ``name``, and ``async for chunk in source``."""

    name = "audio"

    def __init__(self, sample_rate: int, chunk_ms: int, max_seconds: float | None):
        if chunk_ms <= 0 or sample_rate * chunk_ms % 1000:
            raise ValueError(f"chunk_ms={chunk_ms} is not a whole number of samples at {sample_rate} Hz")
        self.sample_rate, self.chunk_ms, self.max_seconds = sample_rate, chunk_ms, max_seconds
        self.chunk_samples = sample_rate * chunk_ms // 1000

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.sample_rate} Hz, {self.chunk_ms} ms chunks>"


class ArraySource(AudioSource):
    """Chunks of an in-memory signal; the last chunk is zero-padded to full size."""

    def __init__(self, samples: np.ndarray, sample_rate: int = 16_000, chunk_ms: int = 20, *, realtime: bool = True,
                 loop: bool = False, max_seconds: float | None = None, name: str = "array"):
        super().__init__(sample_rate, chunk_ms, max_seconds)
        self.samples = np.asarray(samples, dtype=np.int16)
        self.realtime, self.loop, self.name = realtime, loop, name

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate

    def chunks(self) -> Iterator[np.ndarray]:
        """All chunks at once, unpaced (bounded by ``max_seconds`` if looping)."""
        n, total = self.chunk_samples, 0
        limit = None if self.max_seconds is None else int(self.max_seconds * self.sample_rate)
        while True:
            for i in range(0, self.samples.size, n):
                if limit is not None and total >= limit:
                    return
                chunk = self.samples[i:i + n]
                if chunk.size < n:
                    chunk = np.concatenate([chunk, np.zeros(n - chunk.size, np.int16)])
                total += n
                yield chunk
            if not self.loop:
                return
            if limit is None:
                raise ValueError("a looping source needs max_seconds, or it would never end")

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        start = time.perf_counter()
        for k, chunk in enumerate(self.chunks()):
            if self.realtime:
                # chunk k is "recorded" once its last sample has happened, like a microphone's
                due = start + (k + 1) * self.chunk_ms / 1000
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            else:
                await asyncio.sleep(0)         # stay cooperative even when unpaced
            yield chunk


class FileSource(ArraySource):
    """A WAV file played as if it were a microphone (resampled to ``sample_rate``)."""

    def __init__(self, path: str | Path, sample_rate: int = 16_000, chunk_ms: int = 20, **kwargs):
        samples, _ = read_wav(path, sample_rate)
        kwargs.setdefault("name", Path(path).name)
        super().__init__(samples, sample_rate, chunk_ms, **kwargs)


def synthetic_speechlike(seconds: float = 6.0, sample_rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Bursts of a buzzy, pitch-gliding tone with syllable-rate amplitude (about 4 Hz), between
    silences, over faint noise: crude, but with speech's on/off rhythm. Deterministic under ``seed``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = rng.normal(0, 0.002, n)
    pos = 0.6
    while pos < seconds - 0.8:
        length = rng.uniform(0.6, 1.6)
        a, b = int(pos * sample_rate), int(min(seconds, pos + length) * sample_rate)
        seg = t[a:b] - pos
        pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * seg)
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * seg)) * np.minimum(1, np.minimum(seg, length - seg) / 0.05)
        out[a:b] += 0.12 * voice * envelope
        pos += length + rng.uniform(0.7, 1.4)
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


class SyntheticSource(ArraySource):
    def __init__(self, seconds: float = 6.0, sample_rate: int = 16_000, chunk_ms: int = 20, seed: int = 0, **kwargs):
        kwargs.setdefault("name", "synthetic")
        super().__init__(synthetic_speechlike(seconds, sample_rate, seed), sample_rate, chunk_ms, **kwargs)


class MicrophoneSource(AudioSource):
    """The default input device through ``sounddevice``; stops after ``max_seconds`` (if set)."""

    name = "microphone"

    def __init__(self, sample_rate: int = 16_000, chunk_ms: int = 20, *, device=None, max_seconds: float | None = None):
        super().__init__(sample_rate, chunk_ms, max_seconds)
        self.device = device

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        sd = import_sounddevice()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue()

        done = threading.Event()                               # set once the stream is left

        def callback(indata, frames, time_info, status):        # runs on PortAudio's thread
            if done.is_set():
                return
            try:
                loop.call_soon_threadsafe(queue.put_nowait, indata[:, 0].copy())
            except RuntimeError:            # the loop closed under a last block: nobody is reading it
                pass

        limit = None if self.max_seconds is None else int(self.max_seconds * self.sample_rate)
        total = 0
        try:
            with sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="int16", blocksize=self.chunk_samples,
                                device=self.device, callback=callback):
                while limit is None or total < limit:
                    chunk = await queue.get()
                    total += chunk.size
                    yield chunk
        finally:
            done.set()


def open_input(sample_rate: int = 16_000, chunk_ms: int = 20, *, fallback: str | Path | None = None,
               prefer_microphone: bool = True, max_seconds: float | None = None, quiet: bool = False) -> AudioSource:
    """The microphone if there is one, else ``fallback`` (default: the lab's speech file) at real-time pace."""
    status = audio_status()
    if prefer_microphone and status.has_input:
        return MicrophoneSource(sample_rate, chunk_ms, max_seconds=max_seconds)
    if fallback is None:
        fallback = data_file("speech", "clean.wav")
    if not quiet:
        why = status.reason if prefer_microphone else "the microphone was not requested"
        print(f"Using {Path(fallback).name} at real-time pace ({why}).")
    return FileSource(fallback, sample_rate, chunk_ms, realtime=True, max_seconds=max_seconds)
