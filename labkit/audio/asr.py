"""Offline speech recognition for the Realtime emulator's input transcription.

Recognition uses ``pocketsphinx`` when it is installed (its wheel ships an English model). When it
is not, :func:`transcribe` raises :class:`ASRUnavailable` with the reason, and the emulator sends
``conversation.item.input_audio_transcription.failed``: it never invents a transcript.

pocketsphinx holds Python's GIL while it decodes (measured: the event loop stalled for ~95 ms per
utterance even with the work in a thread), so :func:`transcribe_async` sends the audio to one of
:data:`WORKERS` worker *processes* (:mod:`labkit.audio.asr_worker`, one per core) over a pipe, through
a fair, bounded pool (:mod:`labkit.audio.pool`): one user's transcription must never freeze everyone
else's audio, and one session's burst never holds every recogniser. (A plain subprocess, not ``multiprocessing``, whose "spawn" start method
re-imports the caller's main script and breaks scripts without an ``if __name__ == "__main__"`` guard.)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Hashable

import numpy as np

from .pool import FairPool, QueueFull

__all__ = ["ASRUnavailable", "ASRBusy", "MAX_PENDING", "MAX_PENDING_PER_SESSION", "WORKERS", "transcribe",
           "transcribe_async", "warm_up"]


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
            from ._sphinx import model_files
            # by path, isolated (-I: no script folder or PYTHON* variables): it never imports labkit
            self.proc = subprocess.Popen([sys.executable, "-I", str(Path(__file__).with_name("asr_worker.py")),
                                          *model_files()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        return self.proc

    def run(self, audio: np.ndarray, sample_rate: int) -> str:
        from ._sphinx import prepare

        pcm = prepare(audio, sample_rate).astype("<i2").tobytes()
        sample_rate = 16_000
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


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: Recogniser processes: one per core (``LABKIT_ASR_WORKERS`` overrides). Recognition is CPU-bound
#: (about 0.1 CPU second per second of speech here), so more processes than cores only add switching.
WORKERS = max(1, int(os.environ.get("LABKIT_ASR_WORKERS") or _cores()))


class _Workers:
    """The recogniser processes; ``run`` takes an idle one (the pool never runs more jobs than there are)."""

    def __init__(self, n: int) -> None:
        self.lanes = [_Worker() for _ in range(n)]
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for lane in self.lanes:
            self.idle.put(lane)

    def run(self, audio: np.ndarray, sample_rate: int) -> str:
        lane = self.idle.get()
        try:
            return lane.run(audio, sample_rate)
        finally:
            self.idle.put(lane)

    def warm(self) -> None:
        """Start every lane that has no live process, each building its decoder (in the background)."""
        for lane in self.lanes:
            cold = lane.proc is None or lane.proc.poll() is not None
            if cold and not lane.lock.locked():          # not being started (or used) right now
                threading.Thread(target=_warm_lane, args=(lane,), daemon=True).start()

    def stop(self) -> None:
        for lane in self.lanes:
            lane.stop()


def _warm_lane(lane: _Worker) -> None:
    with contextlib.suppress(ASRUnavailable):
        lane.run(np.zeros(1600, np.int16), 16_000)


_worker = _Workers(WORKERS)
atexit.register(_worker.stop)


#: Utterances pending (waiting for or in the recogniser) across the process; more are refused at once
#: (:class:`ASRBusy`, sent as ``transcription.failed``) rather than queued without end: a wait that
#: only grows helps nobody. 32 lets a class of 20-30 utterances ending together wait their turn
#: (0.3 CPU s each: a few seconds on 2 cores); one session may have at most
#: :data:`MAX_PENDING_PER_SESSION` of them, so one client's burst of commits cannot fill the queue.
MAX_PENDING = 32
MAX_PENDING_PER_SESSION = 4
# Its own threads (one per recogniser process; they only wait on pipes), taking utterances round-robin
# between sessions: queued utterances never take the default executor's threads, which the model's
# tokenizing needs, nor synthesis's (labkit.audio.tts has its own pool).
_pool = FairPool("labkit-asr", slots=WORKERS, max_pending=MAX_PENDING, max_per_session=MAX_PENDING_PER_SESSION)


class ASRBusy(ASRUnavailable):
    """Too many utterances are already waiting for the recogniser."""


async def transcribe_async(audio: np.ndarray, sample_rate: int, session: Hashable = None) -> str:
    """Recognise ``audio`` in a worker process; the event loop stays free meanwhile. Utterances of
    different sessions take turns. Raises :class:`ASRBusy` when :data:`MAX_PENDING` utterances
    (or :data:`MAX_PENDING_PER_SESSION` of this session's) are already pending."""
    _check_available()
    try:
        job = _pool.submit(session, _worker.run, audio, sample_rate, max_pending=MAX_PENDING)
    except QueueFull as e:
        raise ASRBusy(f"the speech recogniser is busy ({e.pending} utterances {e.scope} are waiting); this one "
                      f"was not transcribed") from None
    return await asyncio.wrap_future(job)


def warm_up() -> None:
    """Start the worker processes and build their decoders now (about a second), not on the first
    utterance. Cheap when they are running already (every session calls it)."""
    try:
        _check_available()
    except ASRUnavailable:
        return
    _worker.warm()
