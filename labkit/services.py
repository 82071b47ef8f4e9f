"""Optional services the lab starts for itself (Redis, nginx, Chromium), each private and on a free port.

``find_binary`` finds a program or raises :class:`ServiceUnavailable` saying how to get it (its
Debian package), so a notebook cell can print the reason and a test can skip with it. Nothing here
installs anything: the test setup does that (``tests/services.py``, apt-get when run as root). Nothing under /etc is used:
each service gets its own temporary folder and is stopped by PID.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future

__all__ = ["ServiceUnavailable", "find_binary", "BINARIES", "chromium_path", "CHROMIUM_ARGS", "free_port", "spawn",
           "stop_process", "RedisServer"]


class ServiceUnavailable(RuntimeError):
    """An optional service cannot be had here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- children that never outlive their parent ----------------------------------------------------------

_PR_SET_PDEATHSIG = 1          # <linux/prctl.h>


class _Spawner:
    """The one thread that starts every child process (see :func:`spawn`).

    Linux sends the parent-death signal when the *thread* that forked the child ends, not the process:
    a server started from a short-lived thread (chapter 06 starts three side by side in a thread pool)
    would be killed as soon as that thread finished. So children are forked from this thread, which
    lives as long as the process does."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0                   # the process the thread belongs to (a fork has no such thread)

    def run(self, fn):
        if threading.current_thread() is self._thread:
            return fn()
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
                self._thread = threading.Thread(target=self._loop, args=(self._jobs,), name="labkit-spawner",
                                                daemon=True)
                self._thread.start()
            jobs = self._jobs
        done: Future = Future()
        jobs.put((fn, done))
        return done.result()

    @staticmethod
    def _loop(jobs: queue.SimpleQueue) -> None:
        while True:
            fn, done = jobs.get()
            try:
                done.set_result(fn())
            except BaseException as e:          # the caller gets it (a missing binary: FileNotFoundError)
                done.set_exception(e)


_spawner = _Spawner()


def _die_with(parent: int):
    """``preexec_fn`` for a child of ``parent``: SIGTERM when the parent dies (however it dies, SIGKILL
    included). libc is looked up here, in the parent: the child only makes one call before ``exec``."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:       # the parent died before the call above: no signal will come
            os._exit(1)
    return preexec


def spawn(args: list[str], **popen_options) -> subprocess.Popen:
    """``subprocess.Popen(args, **popen_options)``, for a child that must not outlive this process.

    On Linux the child gets SIGTERM as soon as this process ends, even when it is killed with SIGKILL
    (pytest-timeout or ``subprocess.run(timeout=)`` ending a benchmark's CLI, say) and has no chance to
    stop its children itself: the child's own SIGTERM handling then stops *its* children in turn (a
    ``labkit serve`` its recognisers, a ``--workers`` supervisor its workers). Elsewhere it is a plain
    ``Popen``. Stopping a child on purpose is still :func:`stop_process`."""
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(args, **popen_options)
    if "preexec_fn" in popen_options:
        raise TypeError("spawn() sets preexec_fn itself")
    preexec = _die_with(os.getpid())
    return _spawner.run(lambda: subprocess.Popen(args, preexec_fn=preexec, **popen_options))


def stop_process(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; harmless if it already has."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace_s)


def find_binary(name: str, package: str, candidates: tuple[str, ...] = ()) -> str:
    """The path of ``name`` (on ``PATH`` or one of ``candidates``), else :class:`ServiceUnavailable`
    saying which Debian ``package`` has it. Library code only looks: installing is the user's job, or
    the test setup's (``tests/services.py`` installs these with apt-get when it runs as root)."""
    for candidate in (shutil.which(name), *candidates):
        if candidate and os.path.exists(candidate):
            return candidate
    raise ServiceUnavailable(f"{name} is not installed (Debian/Ubuntu: sudo apt-get install {package})")


#: Headless Chromium as it runs on these machines: as root (no sandbox), no GPU, and none of its
#: background connections (a closed network refuses them, many at a time).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


#: The programs the lab's optional services need: name -> (Debian package, other places to look).
BINARIES = {
    "chromium": ("chromium", ("/usr/bin/chromium", "/usr/bin/chromium-browser")),
    "nginx": ("nginx", ("/usr/sbin/nginx",)),
    "redis-server": ("redis-server", ("/usr/bin/redis-server",)),
}


def chromium_path() -> str:
    """Debian's Chromium (else ServiceUnavailable saying how to install it)."""
    return find_binary("chromium", *BINARIES["chromium"])


class RedisServer:
    """A private ``redis-server`` on a free port, no persistence: ``with RedisServer() as r: r.url``."""

    def __init__(self, port: int | None = None):
        self.binary = find_binary("redis-server", *BINARIES["redis-server"])
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="labkit-redis-")

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        self.proc = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", self._dir.name, "--loglevel", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceUnavailable(f"redis-server exited at start: {self.proc.stdout.read().decode()[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise ServiceUnavailable(f"redis-server did not answer on port {self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        stop_process(self.proc)
        self._dir.cleanup()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
