"""Offline speech recognition for the Realtime emulator's input transcription.

Recognition uses ``pocketsphinx`` when it is installed (its wheel ships an English model). When it
is not, :func:`transcribe` raises :class:`ASRUnavailable` with the reason, and the emulator sends
``conversation.item.input_audio_transcription.failed``: it never invents a transcript.

pocketsphinx holds Python's GIL while it decodes (measured: the event loop stalled for ~95 ms per
utterance even with the work in a thread), so :func:`transcribe_async` sends the audio to a worker
*process* (:mod:`labkit.audio.asr_worker`) over a pipe: one user's transcription must never freeze
everyone else's audio. (A plain subprocess, not ``multiprocessing``, whose "spawn" start method
re-imports the caller's main script and breaks scripts without an ``if __name__ == "__main__"`` guard.)
"""

from __future__ import annotations

import asyncio
import atexit
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["ASRUnavailable", "ASRBusy", "MAX_PENDING", "transcribe", "transcribe_async", "warm_up"]


class ASRUnavailable(RuntimeError):
    """Offline recognition cannot run here; the message says why and how to fix it."""


def _check_available() -> None:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        raise ASRUnavailable("offline speech recognition is not installed: pip install pocketsphinx") from None


def transcribe(audio: np.ndarray, sample_rate: int) -> str:
    """Recognise ``audio`` here, in this process (blocking: fine in scripts, not in a server)."""
    _check_available()
    from ._sphinx import recognise
    return recognise(audio, sample_rate)


class _Worker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def _ensure(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "labkit.audio.asr_worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self.proc

    def run(self, audio: np.ndarray, sample_rate: int) -> str:
        pcm = np.asarray(audio, dtype="<i2").tobytes()
        with self.lock:                                  # one utterance at a time through the pipe
            for _ in range(2):                           # a dead worker is restarted once
                proc = self._ensure()
                try:
                    proc.stdin.write(struct.pack("<II", sample_rate, len(pcm)) + pcm)
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except (BrokenPipeError, OSError):
                    line = b""
                if line:
                    return line.decode("utf-8").strip()
                self.stop()
            raise ASRUnavailable("the speech recogniser's worker process failed twice")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


_worker = _Worker()
atexit.register(_worker.stop)


#: Utterances waiting for (or in) the recogniser, across the process; more are refused at once
#: (:class:`ASRBusy`) rather than queued without end: a wait that only grows helps nobody.
MAX_PENDING = 8
_pending = 0
_pending_lock = threading.Lock()
# Its own thread (the pipe is serial anyway): queued utterances never take the default executor's
# threads, which speech synthesis and tokenizing need.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-asr")


class ASRBusy(ASRUnavailable):
    """Too many utterances are already waiting for the recogniser."""


async def transcribe_async(audio: np.ndarray, sample_rate: int) -> str:
    """Recognise ``audio`` in the worker process; the event loop stays free meanwhile.
    Raises :class:`ASRBusy` when :data:`MAX_PENDING` utterances are already waiting."""
    global _pending
    _check_available()
    with _pending_lock:
        if _pending >= MAX_PENDING:
            raise ASRBusy(f"the speech recogniser is busy ({_pending} utterances are waiting); this one was not "
                          f"transcribed")
        _pending += 1
    job = _executor.submit(_worker.run, audio, sample_rate)
    job.add_done_callback(_release)          # when the work ends, not when a cancelled caller stops waiting
    return await asyncio.wrap_future(job)


def _release(_job) -> None:
    global _pending
    with _pending_lock:
        _pending -= 1


def warm_up() -> None:
    """Start the worker and build its decoder now (about a second), not on the first utterance."""
    try:
        _check_available()
    except ASRUnavailable:
        return
    threading.Thread(target=_worker.run, args=(np.zeros(1600, np.int16), 16_000), daemon=True).start()
