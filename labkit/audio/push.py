"""An audio source fed from outside: PCM pushed in as it arrives, re-cut into the usual fixed chunks.

The browser's microphone inside a notebook (:class:`labkit.widgets.BrowserMicrophone`) arrives as
binary buffers over the widget's comm, in whatever sizes the browser sent. :class:`PushSource`
turns that into an :class:`~labkit.audio.AudioSource` like the others (``sample_rate``,
``chunk_samples``, ``async for chunk in source``), so chapter 04's ``LiveVAD`` and chapter 05's
``RealtimeClient.stream_input`` take it unchanged. It is paced by the producer (the microphone's
own clock), never by a sleep. ``push`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import numpy as np

from .sources import AudioSource

__all__ = ["PushSource"]


class PushSource(AudioSource):
    """``push(pcm)`` int16 samples (bytes or array) in; ``async for chunk in source`` out; ``end()`` stops it.

    One consumer at a time. ``max_seconds`` bounds a run, as for the other sources.
    """

    def __init__(self, sample_rate: int = 16_000, chunk_ms: int = 20, *, max_seconds: float | None = None,
                 name: str = "pushed audio"):
        super().__init__(sample_rate, chunk_ms, max_seconds)
        self.name = name
        self.pushed = 0                          # samples received in all
        self._buffer = bytearray()
        self._ended = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def push(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> None:
        data = np.asarray(pcm, dtype="<i2").tobytes() if isinstance(pcm, np.ndarray) else bytes(pcm)
        if len(data) % 2:
            raise ValueError("PCM16 audio must be a whole number of 2-byte samples")
        with self._lock:
            self._buffer += data
            self.pushed += len(data) // 2
        self._signal()

    def end(self) -> None:
        """No more audio: the consumer gets what is buffered (whole chunks), then the iteration ends."""
        self._ended = True
        self._signal()

    def _signal(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> np.ndarray | None:
        size = 2 * self.chunk_samples
        with self._lock:
            if len(self._buffer) < size:
                return None
            chunk = np.frombuffer(bytes(self._buffer[:size]), dtype="<i2").copy()
            del self._buffer[:size]
        return chunk

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        limit = None if self.max_seconds is None else int(self.max_seconds * self.sample_rate)
        total = 0
        while limit is None or total < limit:
            chunk = self._take()
            if chunk is None:
                if self._ended:
                    return
                self._wake.clear()
                if (chunk := self._take()) is None:      # pushed between the check and the clear
                    await self._wake.wait()
                    continue
            total += chunk.size
            yield chunk
            await asyncio.sleep(0)       # stay cooperative with a backlog: the comm that feeds us runs on this loop too
