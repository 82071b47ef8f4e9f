"""A child process labkit starts never outlives its parent, however the parent dies.

The bug this guards: pytest-timeout (or ``subprocess.run(timeout=)``) kills a benchmark's CLI with
SIGKILL, which runs no clean-up, and the ``serve`` child that CLI started kept running. Here a real
parent process starts a real server (from a thread that then ends, as chapter 06 starts its servers in
a thread pool: the server must survive that) and a plain child, and is then killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

PARENT = r"""
import sys, threading
from labkit.server.process import ServerProcess
from labkit.services import spawn

servers = []
starter = threading.Thread(target=lambda: servers.append(
    ServerProcess(["--port", "0"], module="labkit.bench.rawtcp", health_path=None).__enter__()))
starter.start()
starter.join()                                   # the thread that started the server has ended
sleeper = spawn([sys.executable, "-c", "import time; time.sleep(300)"])
print(servers[0].proc.pid, sleeper.pid, servers[0].url, flush=True)
sys.stdin.read()                                 # until it is killed
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has ended: it holds no socket, runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _ask_raw_server(url: str) -> list[str]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(json.dumps({"prompt": "hi", "seed": 1, "max_tokens": 3}).encode() + b"\n")
        lines = s.makefile().read().splitlines()
    return [json.loads(line).get("content") for line in lines if "content" in line]


def test_children_end_when_their_parent_is_killed_with_sigkill():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    children: list[int] = []
    try:
        server_pid, sleeper_pid, url = parent.stdout.readline().split()
        children = [int(server_pid), int(sleeper_pid)]
        # alive and serving, though the thread that started the server is gone
        assert len(_ask_raw_server(url)) == 3
        assert all(_alive(pid) for pid in children)

        os.kill(parent.pid, signal.SIGKILL)          # no atexit, no finally: nothing of the parent runs
        parent.wait(30)
        deadline = time.monotonic() + 30             # generous: a loaded machine is slow, not wrong
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in children if _alive(pid)] == [], "a child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in children:                         # never leave a process behind, even on failure
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
