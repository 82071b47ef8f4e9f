"""Offline speech recognition for the Realtime emulator's input transcription.

Recognition uses ``pocketsphinx`` when it is installed (its wheel ships an English model). When it
is not, :func:`transcribe` raises :class:`ASRUnavailable` with the reason, and the emulator sends
``conversation.item.input_audio_transcription.failed``: it never invents a transcript.

pocketsphinx holds Python's GIL while it decodes (measured: the event loop stalled for ~95 ms per
utterance even with the work in a thread), so :func:`transcribe_async` runs it in a separate
*process*: a server must never let one user's transcription freeze everyone else's audio.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np

__all__ = ["ASRUnavailable", "transcribe", "transcribe_async", "warm_up"]

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


class ASRUnavailable(RuntimeError):
    """Offline recognition cannot run here; the message says why and how to fix it."""


def _check_available() -> None:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        raise ASRUnavailable("offline speech recognition is not installed: pip install pocketsphinx") from None


def transcribe(audio: np.ndarray, sample_rate: int) -> str:
    """Recognise ``audio`` here, in this process (blocking)."""
    _check_available()
    from ._sphinx import recognise
    return recognise(audio, sample_rate)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn, not fork: the parent may be a notebook kernel or a server with threads running
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


async def transcribe_async(audio: np.ndarray, sample_rate: int) -> str:
    """Recognise ``audio`` in the worker process, without blocking the event loop."""
    _check_available()
    return await asyncio.get_running_loop().run_in_executor(_get_pool(), transcribe, np.asarray(audio), sample_rate)


def warm_up() -> None:
    """Start the worker and build its decoder now (about a second), not on the first utterance."""
    try:
        _check_available()
    except ASRUnavailable:
        return
    _get_pool().submit(transcribe, np.zeros(1600, np.int16), 16_000)
