"""The transports benchmark's placement: the relays on a core of their own, every thread of them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.bench.placement import isolate, isolated, pin

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")

#: a child with a second thread already running when it is pinned
CHILD = "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); " \
        "print('ready', flush=True); time.sleep(60)"


def _threads_cores(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(t.name)) for t in Path(f"/proc/{pid}/task").iterdir()]


def _child() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_pin_moves_every_thread_of_a_process():
    cores = sorted(os.sched_getaffinity(0))
    proc = _child()
    try:
        pin(proc.pid, {cores[0]})
        threads = _threads_cores(proc.pid)
        assert len(threads) == 2 and all(t == {cores[0]} for t in threads)
    finally:
        proc.kill()
        proc.wait()


def test_isolate_gives_the_relays_the_last_core_and_the_others_the_rest_then_hands_them_back():
    cores = sorted(os.sched_getaffinity(0))
    relay, other = _child(), _child()
    try:
        if len(cores) < 2:
            assert isolate([relay.pid], [other.pid]) is None
            return
        mine = os.sched_getaffinity(0)
        with isolated([relay.pid], [other.pid, os.getpid()]) as placement:
            assert placement == {"relay_cores": [cores[-1]], "other_cores": cores[:-1]}
            assert all(t == {cores[-1]} for t in _threads_cores(relay.pid))
            assert all(t == set(cores[:-1]) for t in _threads_cores(other.pid))
            assert os.sched_getaffinity(0) == set(cores[:-1])
        assert os.sched_getaffinity(0) == mine                  # this process has its cores back
    finally:
        for proc in (relay, other):
            proc.kill()
            proc.wait()
