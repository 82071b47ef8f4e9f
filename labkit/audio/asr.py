"""Offline speech recognition for the Realtime emulator's input transcription.

Recognition uses ``pocketsphinx`` when it is installed (its wheel ships an English model). When it
is not, :func:`transcribe` raises :class:`ASRUnavailable` with the reason, and the emulator sends
``conversation.item.input_audio_transcription.failed``: it never invents a transcript.

pocketsphinx holds Python's GIL while it decodes (measured: the event loop stalled for ~95 ms per
utterance even with the work in a thread), so recognition runs in :data:`WORKERS` worker *processes*
(:mod:`labkit.audio.asr_worker`, one per core), each on a pipe. (A plain subprocess, not
``multiprocessing``, whose "spawn" start method re-imports the caller's main script and breaks scripts
without an ``if __name__ == "__main__"`` guard.)

**Recognised while the user speaks** (issue 18). With server VAD, the Realtime session streams each
utterance to a worker as it is spoken (:func:`begin_stream`, :meth:`Stream.feed`): decoding the whole
utterance at commit cost about 0.2 CPU s each, and twenty utterances ending together on two cores
queued for seconds; streamed, about 0.03 CPU s is left when the speech ends. A worker holds a decoder
per open utterance (from a small pool of reusable decoders), and a session's utterance stays on the
worker chosen at its start, the least loaded one (:func:`labkit.audio.scheduling.choose_lane`).

**Fallback.** When no worker can take another streamed utterance (:data:`MAX_STREAMS_PER_WORKER`),
or its worker died, the utterance is decoded whole at commit through a fair, bounded pool
(:mod:`labkit.audio.pool`: utterances of different sessions take turns; a full queue is refused with
:class:`ASRBusy`). Both paths decode the same incremental way (:class:`labkit.audio.asr_worker.Utterance`),
so the transcript never depends on which one ran. A worker that dies is restarted on next use; every
answer it owed fails at once (never hangs), and its streamed utterances fall back.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import queue
import re
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Hashable

import numpy as np

from .asr_worker import AUDIO, BEGIN, CANCEL, END, HEADER
from .errors import ASRBusy, ASRUnavailable
from .pool import FairPool, QueueFull
from .scheduling import choose_lane, decode_at_commit

__all__ = ["ASRUnavailable", "ASRBusy", "WorkerDied", "MAX_PENDING", "MAX_PENDING_PER_SESSION",
           "MAX_STREAMS_PER_WORKER", "WORKERS", "Stream", "begin_stream", "transcribe", "transcribe_async",
           "warm_up"]


class WorkerDied(ASRUnavailable):
    """The recogniser process answering this utterance exited before it answered."""


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


_uids = itertools.count(1)
_uid_lock = threading.Lock()


def _new_uid() -> int:
    with _uid_lock:
        return next(_uids) % 0xFFFF_FFFF + 1


_ANSWER = re.compile(r"^(\d+)([ !])(.*)$", re.S)     # "<id> <transcript>" or "<id>!<error>"


def _message(op: int, uid: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(op, uid, len(payload)) + payload


class _Worker:
    """One recogniser process (a lane): messages go out through a writer thread (the caller never
    blocks on the pipe), answers come back on a reader thread that resolves each utterance's future."""

    def __init__(self) -> None:
        self.lock = threading.Lock()                     # guards everything below
        self.proc: subprocess.Popen | None = None
        self.generation = 0                              # +1 each time a process starts
        self._outbox: queue.SimpleQueue | None = None
        self._answers: dict[int, Future] = {}
        self.streams: set[int] = set()                   # streamed utterances open on this process
        self.busy = False                                # a whole-utterance job of the pool is running here
        self.warming = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _ensure(self) -> int:
        """Start the process if it is not running (call with ``lock`` held); returns its generation."""
        if not self.alive:
            from ._sphinx import model_files
            # by path, isolated (-I: no script folder or PYTHON* variables): it never imports labkit
            proc = subprocess.Popen([sys.executable, "-I", str(Path(__file__).with_name("asr_worker.py")),
                                     *model_files()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            self.proc, self.generation = proc, self.generation + 1
            self.streams = set()
            self._outbox = outbox = queue.SimpleQueue()
            self._answers = answers = {}
            threading.Thread(target=self._write, args=(proc, outbox), daemon=True, name="labkit-asr-writer").start()
            threading.Thread(target=self._read, args=(proc, outbox, answers), daemon=True,
                             name="labkit-asr-reader").start()
        return self.generation

    def post(self, generation: int, data: bytes, answer_uid: int | None = None) -> Future | None:
        """Queue ``data`` for the process of ``generation``; with ``answer_uid``, a future for its answer.
        Raises :class:`WorkerDied` when that process is gone."""
        with self.lock:
            if generation != self.generation or not self.alive:
                raise WorkerDied("the speech recogniser's worker process exited")
            future = None
            if answer_uid is not None:
                future = self._answers[answer_uid] = Future()
            self._outbox.put(data)
            return future

    def open_stream(self, sample_rate: int) -> tuple[int, int]:
        """A new streamed utterance here: ``(generation, uid)``."""
        uid = _new_uid()
        with self.lock:
            generation = self._ensure()
            self.streams.add(uid)
            self._outbox.put(_message(BEGIN, uid, struct.pack("<I", sample_rate)))
        return generation, uid

    def close_stream(self, generation: int, uid: int) -> None:
        with self.lock:
            if generation == self.generation:
                self.streams.discard(uid)

    def _write(self, proc: subprocess.Popen, outbox: queue.SimpleQueue) -> None:
        while True:
            data = outbox.get()
            if data is None:
                return
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                with contextlib.suppress(OSError):
                    proc.kill()                          # the reader sees the end and fails what it owed
                return

    def _read(self, proc: subprocess.Popen, outbox: queue.SimpleQueue, answers: dict[int, Future]) -> None:
        for line in proc.stdout:
            answer = _ANSWER.match(line.decode("utf-8", "replace").rstrip("\n"))
            if answer is None:
                continue
            head, ok, rest = answer.group(1), answer.group(2) == " ", answer.group(3)
            with self.lock:
                future = answers.pop(int(head), None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(rest)
                else:
                    future.set_exception(ASRUnavailable(f"the speech recogniser failed: {rest}"))
        proc.wait()
        outbox.put(None)                                 # its writer stops too
        with self.lock:                                  # the process is gone: fail everything it owed, now
            owed = list(answers.values())
            answers.clear()
            if self.proc is proc:
                self.proc = None
                self.streams = set()
        for future in owed:
            if not future.done():
                future.set_exception(WorkerDied("the speech recogniser's worker process exited"))

    def run(self, audio: np.ndarray, sample_rate: int) -> str:
        """Decode a whole utterance here (blocking; the pool's threads call this). A dead worker is
        restarted once."""
        pcm = np.asarray(audio, dtype="<i2").tobytes()
        for _ in range(2):
            uid = _new_uid()
            with self.lock:
                generation = self._ensure()
            try:
                future = self.post(generation, _message(BEGIN, uid, struct.pack("<I", sample_rate))
                                   + _message(AUDIO, uid, pcm) + _message(END, uid), answer_uid=uid)
                return future.result()
            except WorkerDied:
                continue
        raise ASRUnavailable("the speech recogniser's worker process failed twice")

    def stop(self) -> None:
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: Recogniser processes: one per core (``LABKIT_ASR_WORKERS`` overrides). Recognition is CPU-bound
#: (about 0.06 CPU second per second of speech here), so more processes than cores only add switching.
WORKERS = max(1, int(os.environ.get("LABKIT_ASR_WORKERS") or _cores()))
#: Streamed utterances one worker holds open at once (a decoder each, about 8 MB). Past that on every
#: worker, a new utterance is decoded whole at its commit instead. 24 per core: a class of 20 speaking
#: at once streams on two cores (each utterance needs about 0.06 CPU s per second of speech).
#: ``LABKIT_ASR_STREAMS_PER_WORKER`` overrides it (0: every utterance decoded whole at commit, to compare).
MAX_STREAMS_PER_WORKER = int(os.environ.get("LABKIT_ASR_STREAMS_PER_WORKER") or 24)


class _Workers:
    """The recogniser processes; ``run`` takes an idle one (the pool never runs more jobs than there are)."""

    def __init__(self, n: int) -> None:
        self.lanes = [_Worker() for _ in range(n)]
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for lane in self.lanes:
            self.idle.put(lane)
        self.lock = threading.Lock()

    def run(self, audio: np.ndarray, sample_rate: int) -> str:
        lane = self.idle.get()
        lane.busy = True
        try:
            return lane.run(audio, sample_rate)
        finally:
            lane.busy = False
            self.idle.put(lane)

    def choose(self) -> _Worker | None:
        """The lane for a new streamed utterance (:func:`~labkit.audio.scheduling.choose_lane`), or None."""
        with self.lock:
            # a lane whose process is not running takes no stream now (starting it here would block the
            # event loop): it is restarted in the background, and this utterance is decoded whole
            k = choose_lane([len(lane.streams) if lane.alive else MAX_STREAMS_PER_WORKER for lane in self.lanes],
                            MAX_STREAMS_PER_WORKER, [lane.busy for lane in self.lanes])
        if not all(lane.alive for lane in self.lanes):
            self.warm()
        return None if k is None else self.lanes[k]

    def warm(self) -> None:
        """Start every lane that has no live process, each building its decoder (in the background)."""
        for lane in self.lanes:
            with self.lock:
                cold = not lane.alive and not lane.busy and not lane.warming
                lane.warming = lane.warming or cold
            if cold:
                threading.Thread(target=_warm_lane, args=(lane,), daemon=True).start()

    def stop(self) -> None:
        for lane in self.lanes:
            lane.stop()


def _warm_lane(lane: _Worker) -> None:
    try:
        with contextlib.suppress(ASRUnavailable):
            lane.run(np.zeros(1600, np.int16), 16_000)
    finally:
        lane.warming = False


_worker = _Workers(WORKERS)
atexit.register(_worker.stop)


class Stream:
    """One utterance streamed to a worker while it is spoken: :meth:`feed` audio (never blocks), then
    finish it with :func:`transcribe_async` (``stream=``), or :meth:`cancel` it."""

    def __init__(self, lane: _Worker, sample_rate: int):
        self.lane, self.sample_rate = lane, sample_rate
        self.generation, self.uid = lane.open_stream(sample_rate)
        self.lost = False                                # its worker died: decode the committed audio whole
        self.closed = False

    def feed(self, audio: np.ndarray) -> None:
        if self.lost or self.closed or not len(audio):
            return
        try:
            self.lane.post(self.generation, _message(AUDIO, self.uid, np.asarray(audio, dtype="<i2").tobytes()))
        except WorkerDied:
            self.lost = True

    def cancel(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(WorkerDied):
            self.lane.post(self.generation, _message(CANCEL, self.uid))
        self.lane.close_stream(self.generation, self.uid)

    def end(self) -> Future | None:
        """Finish: a future for the transcript, or None when the stream was lost."""
        if self.closed:
            raise ValueError("this stream was already ended or cancelled")
        self.closed = True
        try:
            return None if self.lost else self.lane.post(self.generation, _message(END, self.uid), answer_uid=self.uid)
        except WorkerDied:
            self.lost = True
            return None
        finally:
            self.lane.close_stream(self.generation, self.uid)


def begin_stream(sample_rate: int) -> Stream | None:
    """Start recognising an utterance as it is spoken, on the least loaded worker; None when no worker
    can take it (or recognition is not installed): it is then decoded whole at its commit."""
    try:
        _check_available()
    except ASRUnavailable:
        return None
    lane = _worker.choose()
    return Stream(lane, sample_rate) if lane is not None else None


#: Utterances pending (waiting for or in the recogniser) across the process; more are refused at once
#: (:class:`ASRBusy`, sent as ``transcription.failed``) rather than queued without end: a wait that
#: only grows helps nobody. 32 lets a class of 20-30 utterances ending together wait their turn
#: (0.2 CPU s each: a few seconds on 2 cores); one session may have at most
#: :data:`MAX_PENDING_PER_SESSION` of them, so one client's burst of commits cannot fill the queue.
#: Streamed utterances are not counted: they are bounded by :data:`MAX_STREAMS_PER_WORKER`.
MAX_PENDING = 32
MAX_PENDING_PER_SESSION = 4
# Its own threads (one per recogniser process; they only wait on pipes), taking utterances round-robin
# between sessions: queued utterances never take the default executor's threads, which the model's
# tokenizing needs, nor synthesis's (labkit.audio.tts has its own pool).
_pool = FairPool("labkit-asr", slots=WORKERS, max_pending=MAX_PENDING, max_per_session=MAX_PENDING_PER_SESSION)


async def transcribe_async(audio: np.ndarray, sample_rate: int, session: Hashable = None,
                           stream: Stream | None = None) -> str:
    """The words of a committed utterance, ``audio``; the event loop stays free meanwhile.

    With ``stream`` (the same samples, streamed while spoken), its worker finishes it; when that worker
    died, or without a stream, ``audio`` is decoded whole in a worker through the fair pool, where
    utterances of different sessions take turns. Raises :class:`ASRBusy` when :data:`MAX_PENDING`
    utterances (or :data:`MAX_PENDING_PER_SESSION` of this session's) are already pending there."""
    _check_available()
    future = stream.end() if stream is not None else None
    if decode_at_commit(streamed=stream is not None, lost=future is None) == "stream":
        try:
            return await asyncio.wrap_future(future)
        except WorkerDied:
            pass                                         # its worker died mid-utterance: decode it whole
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
