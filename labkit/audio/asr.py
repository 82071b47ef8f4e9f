"""Offline speech recognition for the Realtime emulator's input transcription.

Recognition uses ``pocketsphinx`` when it is installed (its wheel ships an English model). When it
is not, :func:`transcribe` raises :class:`ASRUnavailable` with the reason, and the emulator sends
``conversation.item.input_audio_transcription.failed``: it never invents a transcript.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ASRUnavailable", "transcribe"]


class ASRUnavailable(RuntimeError):
    """Offline recognition cannot run here; the message says why and how to fix it."""


def transcribe(audio: np.ndarray, sample_rate: int) -> str:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        raise ASRUnavailable("offline speech recognition is not installed: pip install pocketsphinx") from None
    from ._sphinx import recognise
    return recognise(audio, sample_rate)
