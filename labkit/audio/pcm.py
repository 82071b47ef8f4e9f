"""PCM16 conversions and resampling: 16 kHz for the VAD, 24 kHz for the Realtime API.

Resampling uses libsoxr (the ``soxr`` package), a well-tested band-limited resampler; its
streaming form keeps filter state across chunks, so resampling a stream chunk by chunk gives the
same samples as resampling it whole.
"""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["to_int16", "to_float32", "pcm16_bytes", "resample", "StreamResampler"]


def to_int16(audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16 little-endian bytes, or an int16 / float ([-1, 1]) mono array, as int16 samples."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        if len(audio) % 2:
            raise ValueError("PCM16 audio has 2 bytes per sample; got an odd number of bytes")
        return np.frombuffer(audio, dtype="<i2")
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise ValueError(f"expected mono audio (a 1-D array), got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr
    if np.issubdtype(arr.dtype, np.floating):      # the inverse of to_float32: x * 32768, clipped
        return np.clip(np.round(arr * 32768.0), -32768, 32767).astype(np.int16)
    raise TypeError(f"audio must be PCM16 bytes, int16 or float samples, not {arr.dtype}")


def to_float32(audio: bytes | np.ndarray) -> np.ndarray:
    """Audio as float32 in [-1, 1)."""
    arr = np.asarray(audio) if not isinstance(audio, (bytes, bytearray, memoryview)) else to_int16(audio)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    return to_int16(arr).astype(np.float32) / 32768.0


def pcm16_bytes(audio: np.ndarray) -> bytes:
    """Little-endian PCM16 bytes (what WAV files and the Realtime API carry)."""
    return to_int16(audio).astype("<i2", copy=False).tobytes()


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole mono signal; int16 in gives int16 out, float in gives float32 out."""
    if from_rate == to_rate:
        return np.asarray(audio)
    arr = np.asarray(audio)
    out = soxr.resample(to_float32(arr), from_rate, to_rate, quality="HQ")
    return to_int16(out) if arr.dtype == np.int16 else out.astype(np.float32)


class StreamResampler:
    """Resample a stream chunk by chunk (``process``), then ``flush()`` at its end."""

    def __init__(self, from_rate: int, to_rate: int):
        self.from_rate, self.to_rate = from_rate, to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32",
                                                                             quality="HQ")

    def process(self, chunk: np.ndarray | bytes, last: bool = False) -> np.ndarray:
        samples = to_int16(chunk)
        if self._stream is None:
            return samples
        return to_int16(self._stream.resample_chunk(to_float32(samples), last=last))

    def flush(self) -> np.ndarray:
        return self.process(np.zeros(0, np.int16), last=True)
