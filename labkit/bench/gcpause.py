"""A load generator's garbage collector waits while it measures.

The clients of a benchmark are not what it measures, yet their pauses land in its figures: a full
collection in a load generator holding a hundred (or a thousand) streams stops every client at once
for tens of milliseconds. Tokens that arrive meanwhile are read late, which the application's arrival
times show; and TCP merges them in the socket's receive queue under the stamp of the *last* one, so
even the kernel's receive stamps (:mod:`labkit.clients.arrival`) date the earlier tokens of that read
late. Measured with 100 WebSocket clients against the lab's relay on a core of its own: with the
collector on, 2 of 12 rounds had tokens of every stream 5-132 ms late at the socket; with it paused,
none of 12.

:func:`collector_paused` disables collection for a block (nested and concurrent blocks, e.g. load
generators in threads of one process, keep it off until the last one ends), then collects once.
A measured block lasts seconds and allocates a few hundred thousand objects: the memory is nothing.
"""

from __future__ import annotations

import contextlib
import gc
import threading

__all__ = ["collector_paused"]

_lock = threading.Lock()
_holders = 0
_was_enabled = True


@contextlib.contextmanager
def collector_paused():
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
                gc.collect()
