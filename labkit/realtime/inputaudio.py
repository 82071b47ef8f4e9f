"""The Realtime input audio buffer and the server VAD that watches it (pure, sample-clocked).

Without turn detection the buffer holds everything since the last commit or clear: the client
decides when to commit. With server VAD the buffer is bounded: while no speech is in progress it
keeps only the audio prefix padding may need (a silent microphone left open for an hour costs
a few hundred milliseconds of memory, not 170 MB), and an utterance longer than
``max_utterance_ms`` is committed at that length (the speech then goes on as a new utterance), so a
talker who never pauses, or a noise the detector mistakes for one, cannot hold the turn forever.
"""

from __future__ import annotations

import numpy as np

from ..vad import SpeechEnd, SpeechStart, VADConfig, VoiceActivityDetector

__all__ = ["InputAudio"]


class InputAudio:
    def __init__(self, sample_rate: int, vad_config: VADConfig | None, start_sample: int = 0):
        self.sample_rate = sample_rate
        self.samples_in = start_sample             # input clock: all samples ever appended
        self._buffer = bytearray()                 # PCM16 from buffer_start on
        self.buffer_start = start_sample           # input-clock sample where the buffer begins
        self.restart_vad(vad_config)

    def restart_vad(self, vad_config: VADConfig | None) -> None:
        """New turn-detection settings: a fresh detector whose clock starts where the stream is now."""
        self.vad = VoiceActivityDetector(vad_config) if vad_config is not None else None
        if self.vad is not None:
            self.vad.segmenter.samples_seen = self.samples_in

    @property
    def buffered_samples(self) -> int:
        return len(self._buffer) // 2

    def append(self, pcm: bytes) -> list[SpeechStart | SpeechEnd]:
        """Add PCM16 audio; returns what the server VAD saw (nothing without turn detection)."""
        if self.vad is not None and self.vad.segmenter.state == "silence":
            # trimmed before adding, never after: an utterance that ends in this chunk is taken first
            self._keep_from(self.samples_in - self._idle_keep())
        self._buffer += pcm
        self.samples_in += len(pcm) // 2
        return self.vad.process(pcm) if self.vad is not None else []

    def take(self, first_sample: int, last_sample: int) -> np.ndarray:
        """The audio of ``[first_sample, last_sample)`` (clipped to what is held), dropping all before ``last_sample``."""
        first = max(first_sample, self.buffer_start) - self.buffer_start
        last = max(first, min(last_sample, self.samples_in) - self.buffer_start)
        audio = np.frombuffer(bytes(self._buffer[2 * first: 2 * last]), dtype="<i2")
        self._keep_from(last_sample)
        return audio

    def peek(self, first_sample: int, last_sample: int) -> np.ndarray:
        """The audio of ``[first_sample, last_sample)`` (clipped to what is held), keeping it all."""
        first = max(first_sample, self.buffer_start) - self.buffer_start
        last = max(first, min(last_sample, self.samples_in) - self.buffer_start)
        return np.frombuffer(bytes(self._buffer[2 * first: 2 * last]), dtype="<i2")

    @property
    def analysed_samples(self) -> int:
        """The input clock up to where server VAD has decided (a partial frame waits): an utterance in
        progress will be committed at least this far (its end is detected on a later frame)."""
        return self.vad.samples_seen if self.vad is not None else self.samples_in

    def take_all(self) -> np.ndarray:
        audio = np.frombuffer(bytes(self._buffer), dtype="<i2")
        self.clear()
        return audio

    def clear(self) -> None:
        self._buffer.clear()
        self.buffer_start = self.samples_in

    def _idle_keep(self) -> int:
        """In silence: an onset may be dated up to prefix_padding back, and its audio starts prefix_padding before that."""
        cfg = self.vad.config
        return 2 * cfg.prefix_padding_ms * self.sample_rate // 1000 + 2 * cfg.frame_samples

    def _keep_from(self, sample: int) -> None:
        drop = min(max(0, sample - self.buffer_start), self.buffered_samples)
        if drop:
            del self._buffer[: 2 * drop]
            self.buffer_start += drop
