"""Which speech job runs next: fair, bounded scheduling for a pool of workers (pure, no threads).

Recognition and synthesis run on a few workers shared by every session. Taking jobs first come, first
served would let one session's long answer (many sentences) or burst of commits hold every worker
while another session waits for its first sentence. :class:`FairScheduler` takes jobs round-robin
*between sessions* (a session with many waiting jobs gets one turn, then goes to the back), runs at
most ``slots`` at once, and refuses a job at once (:class:`QueueFull`) when too many are pending in
all or for that session: a wait that only grows helps nobody, and the caller can say so.

It only decides; :class:`labkit.audio.pool.FairPool` carries the decisions out on threads.

Utterances recognised *while they are spoken* (:mod:`labkit.audio.asr`) are placed differently: each
stays on one worker from its first audio to its end (the worker holds its decoder), chosen when it
begins by :func:`choose_lane`; :func:`decode_at_commit` says whether a committed utterance is finished
by its stream or decoded whole through the fair pool.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Hashable, Literal, Sequence, TypeVar

__all__ = ["FairScheduler", "QueueFull", "choose_lane", "decode_at_commit"]

J = TypeVar("J", bound=Hashable)


class QueueFull(Exception):
    """The job was refused: ``pending`` jobs (waiting or running) already reached ``limit``."""

    def __init__(self, scope: str, pending: int, limit: int):
        super().__init__(f"{pending} {scope} jobs are pending (the limit is {limit})")
        self.scope, self.pending, self.limit = scope, pending, limit


class FairScheduler(Generic[J]):
    """Round-robin between sessions over ``slots`` workers, with at most ``max_pending`` jobs pending
    (waiting or running) in all and ``max_per_session`` per session.

    ``submit`` and ``finished`` return the jobs to start now, in order; a job that leaves before it
    starts (its caller gave up) is withdrawn with ``withdraw``."""

    def __init__(self, slots: int, max_pending: int, max_per_session: int | None = None):
        if slots < 1:
            raise ValueError("a pool needs at least one slot")
        self.slots, self.max_pending = slots, max_pending
        self.max_per_session = max_per_session if max_per_session is not None else max_pending
        self._waiting: dict[Hashable, deque[J]] = {}
        self._turns: deque[Hashable] = deque()          # sessions with waiting jobs, next first
        self._session_of: dict[J, Hashable] = {}
        self._per_session: dict[Hashable, int] = {}
        self.running: set[J] = set()

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return len(self._session_of)

    def waiting(self) -> int:
        return self.pending - len(self.running)

    def pending_for(self, session: Hashable) -> int:
        return self._per_session.get(session, 0)

    def submit(self, session: Hashable, job: J, max_pending: int | None = None) -> list[J]:
        """Queue ``job`` for ``session``; raises :class:`QueueFull` (nothing queued) when over a limit."""
        limit = self.max_pending if max_pending is None else max_pending
        if self.pending >= limit:
            raise QueueFull("in all", self.pending, limit)
        if self.pending_for(session) >= self.max_per_session:
            raise QueueFull("for this session", self.pending_for(session), self.max_per_session)
        if job in self._session_of:
            raise ValueError("this job was already submitted")
        self._session_of[job] = session
        self._per_session[session] = self.pending_for(session) + 1
        if session not in self._waiting:
            self._waiting[session] = deque()
            self._turns.append(session)
        self._waiting[session].append(job)
        return self._start_what_fits()

    def finished(self, job: J) -> list[J]:
        """``job`` (started earlier) ended: its slot goes to the next session's job."""
        if job not in self.running:
            raise ValueError("finished() for a job that is not running")
        self.running.discard(job)
        self._forget(job)
        return self._start_what_fits()

    def withdraw(self, job: J) -> bool:
        """Take a waiting job out (its caller gave up). False if it is not waiting (running or unknown)."""
        session = self._session_of.get(job)
        if session is None or job in self.running:
            return False
        queue = self._waiting[session]
        queue.remove(job)
        if not queue:
            del self._waiting[session]
            self._turns.remove(session)
        self._forget(job)
        return True

    def _forget(self, job: J) -> None:
        session = self._session_of.pop(job)
        left = self._per_session[session] - 1
        if left:
            self._per_session[session] = left
        else:
            del self._per_session[session]

    def _start_what_fits(self) -> list[J]:
        started = []
        while len(self.running) < self.slots and self._turns:
            session = self._turns.popleft()
            queue = self._waiting[session]
            job = queue.popleft()
            if queue:
                self._turns.append(session)            # its next job waits for everyone else's turn
            else:
                del self._waiting[session]
            self.running.add(job)
            started.append(job)
        return started


def choose_lane(open_streams: Sequence[int], max_per_lane: int, busy: Sequence[bool] = ()) -> int | None:
    """The worker a new streamed utterance goes to, for its whole life: the least loaded one that has
    room (fewer than ``max_per_lane`` open streams). Load is its open streams, plus one while it runs
    a whole-utterance job (``busy``); ties go to the lowest index. None when no worker has room: the
    utterance is then decoded whole at its commit (bounded: a worker never holds more decoders)."""
    best = None
    for k, streams in enumerate(open_streams):
        if streams >= max_per_lane:
            continue
        load = streams + (1 if k < len(busy) and busy[k] else 0)
        if best is None or load < best[0]:
            best = (load, k)
    return None if best is None else best[1]


def decode_at_commit(streamed: bool, lost: bool) -> Literal["stream", "whole"]:
    """How a committed utterance is recognised: finished by its stream (``"stream"``: little is left to
    decode), or ``"whole"`` through the fair pool: it was never streamed (manual commit, no room, a
    clear in between) or its stream was lost (its worker died). Both decode the same way, so the
    transcript is the same."""
    return "stream" if streamed and not lost else "whole"
