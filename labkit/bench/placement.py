"""Which cores a benchmark's processes run on: the relay under test on a core of its own.

On one machine a benchmark's processes stand for several: the model server is a remote API, the
load generator is the users' devices, the relay is the server being measured. Sharing two cores,
the kernel preempts the relay between stamping a token and writing it whenever the load generator
or the model server wants the core, and that wait lands in the relay's delivery delay although it
is not the relay's cost (``relay_preemptions`` in ``bench transports`` counted thousands per row).
:func:`isolate` gives the relays the last core and everything else the others, as separate
machines would: the relays are measured one at a time, so they never compete with each other.

Linux's affinity is per thread: a process's threads are pinned one by one (``/proc/PID/task``), and
threads it starts later inherit the mask of the thread that starts them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["pin", "isolate", "isolated"]


def pin(pid: int, cores: set[int]) -> None:
    """Pin every thread of process ``pid`` to ``cores``."""
    tasks = Path(f"/proc/{pid}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:            # a thread that ended meanwhile
            pass


def isolate(relays: list[int], others: list[int]) -> dict | None:
    """Pin the ``relays``' processes to the last usable core and the ``others`` to the rest.

    Returns the placement, for the benchmark's JSON, or ``None`` (nothing pinned) where fewer than
    two cores are usable or the platform has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    relay_cores, other_cores = {usable[-1]}, set(usable[:-1])
    for pid in relays:
        pin(pid, relay_cores)
    for pid in others:
        pin(pid, other_cores)
    return {"relay_cores": sorted(relay_cores), "other_cores": sorted(other_cores)}


@contextlib.contextmanager
def isolated(relays: list[int], others: list[int]):
    """:func:`isolate` for a ``with`` block; then the ``others`` (the caller's own process, typically)
    get their cores back, so a benchmark run inside another leaves it as it was."""
    before = {pid: os.sched_getaffinity(pid) for pid in others} if hasattr(os, "sched_getaffinity") else {}
    try:
        yield isolate(relays, others)
    finally:
        for pid, cores in before.items():
            with contextlib.suppress(ProcessLookupError):
                pin(pid, cores)
