"""Playing audio through the default output device, when there is one."""

from __future__ import annotations

import numpy as np

from .devices import audio_status, import_sounddevice

__all__ = ["play"]


def play(samples: np.ndarray, sample_rate: int, *, blocking: bool = True, quiet: bool = False) -> bool:
    """Play int16 or float samples; returns False (and says why, in one line) when there is no speaker."""
    status = audio_status()
    if not status.has_output:
        if not quiet:
            print(f"Not played: {status.reason}.")
        return False
    sd = import_sounddevice()
    sd.play(np.asarray(samples), sample_rate, blocking=blocking)
    return True
