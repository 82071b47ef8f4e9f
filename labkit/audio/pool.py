"""A worker pool for speech jobs that carries out :class:`~labkit.audio.scheduling.FairScheduler`'s
decisions: fair between sessions, bounded, on threads of its own.

Each pool has its own threads (``slots`` of them), never the event loop's default executor, so a
burst of recognition cannot delay synthesis or the model's tokenizing, nor the other way round. The
threads only run ``fn``: recognition's ``fn`` waits on a worker *process* (pocketsphinx holds the GIL),
synthesis's calls espeak-ng, which releases it. Thread-safe: any event loop (or none) may submit.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Hashable

from .scheduling import FairScheduler, QueueFull

__all__ = ["FairPool", "QueueFull"]


class _Job:
    __slots__ = ("future", "fn", "args")

    def __init__(self, fn: Callable, args: tuple):
        self.future: Future = Future()
        self.fn, self.args = fn, args


class FairPool:
    """``submit(session, fn, *args)`` → a :class:`concurrent.futures.Future`, or :class:`QueueFull` at once.

    ``await pool.run(session, fn, *args)`` is the same from async code; cancelling the await withdraws
    a job that has not started (a started one runs to its end and then frees its slot)."""

    def __init__(self, name: str, slots: int, max_pending: int, max_per_session: int | None = None):
        self.name = name
        self.scheduler: FairScheduler[_Job] = FairScheduler(slots, max_pending, max_per_session)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=name)

    @property
    def slots(self) -> int:
        return self.scheduler.slots

    @property
    def pending(self) -> int:
        return self.scheduler.pending

    def submit(self, session: Hashable, fn: Callable, *args, max_pending: int | None = None) -> Future:
        job = _Job(fn, args)
        with self._lock:
            start = self.scheduler.submit(session, job, max_pending)      # QueueFull: nothing was queued
        job.future.add_done_callback(lambda _f: self._withdraw(job))
        self._start(start)
        return job.future

    async def run(self, session: Hashable, fn: Callable, *args, max_pending: int | None = None):
        return await asyncio.wrap_future(self.submit(session, fn, *args, max_pending=max_pending))

    def _start(self, jobs: list[_Job]) -> None:
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                self._executor.submit(self._work, job)
            else:                                    # cancelled as it was about to start
                self._finished(job)

    def _work(self, job: _Job) -> None:
        try:
            result = job.fn(*job.args)
        except BaseException as e:                   # the caller sees it; the slot is freed either way
            job.future.set_exception(e)
        else:
            job.future.set_result(result)
        finally:
            self._finished(job)

    def _finished(self, job: _Job) -> None:
        with self._lock:
            start = self.scheduler.finished(job)
        self._start(start)

    def _withdraw(self, job: _Job) -> None:
        if job.future.cancelled():
            with self._lock:
                self.scheduler.withdraw(job)     # False when it had started: _finished frees that slot
