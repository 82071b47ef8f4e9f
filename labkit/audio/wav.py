"""Reading and writing mono PCM16 WAV files with the standard library's ``wave`` module."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from .pcm import pcm16_bytes, resample

__all__ = ["read_wav", "write_wav"]


def read_wav(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """``(int16 mono samples, rate)``; stereo is averaged, and ``sample_rate`` resamples if given."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported (found {8 * w.getsampwidth()}-bit)")
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).round().astype(np.int16)
    if sample_rate is not None and sample_rate != rate:
        return resample(samples, rate, sample_rate), sample_rate
    return samples.astype(np.int16, copy=False), rate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16_bytes(samples))
    return path
