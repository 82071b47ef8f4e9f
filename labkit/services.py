"""Optional services the lab starts for itself (Redis, nginx, Chromium), each private and on a free port.

``ensure_binary`` finds a program, or, when running as root with Debian's ``apt-get`` (as CI does),
installs its package; otherwise it raises :class:`ServiceUnavailable` saying why and how to get it,
so a notebook cell can print the reason and a test can skip with it. Nothing under /etc is used:
each service gets its own temporary folder and is stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["ServiceUnavailable", "ensure_binary", "chromium_path", "CHROMIUM_ARGS", "free_port", "stop_process",
           "RedisServer"]


class ServiceUnavailable(RuntimeError):
    """An optional service cannot be had here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def ensure_binary(name: str, package: str, candidates: tuple[str, ...] = (), install: bool = True) -> str:
    """The path of ``name``, installing Debian's ``package`` if allowed and possible."""
    for candidate in (shutil.which(name), *candidates):
        if candidate and os.path.exists(candidate):
            return candidate
    hint = f"(Debian/Ubuntu: sudo apt-get install {package})"
    if not install:
        raise ServiceUnavailable(f"{name} is not installed {hint}")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceUnavailable(f"{name} is not installed, and installing it needs root and apt-get {hint}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quick = ["-o", "Acquire::http::Timeout=20", "-o", "Acquire::https::Timeout=20", "-o", "Acquire::Retries=1"]
    for cmd in (["apt-get", *quick, "update", "-qq"],
                ["apt-get", *quick, "install", "-y", "-qq", "--no-install-recommends", package]):
        try:      # bounded: a blocked network must cost a skip, not the whole CI budget
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        except subprocess.TimeoutExpired:
            raise ServiceUnavailable(f"installing {package} timed out: {' '.join(cmd)}") from None
        if done.returncode != 0:
            raise ServiceUnavailable(f"installing {package} failed: {' '.join(cmd)}: {done.stderr.strip()[-300:]}")
    for candidate in (shutil.which(name), *candidates):
        if candidate and os.path.exists(candidate):
            return candidate
    raise ServiceUnavailable(f"apt-get installed {package} but no {name} binary was found")


#: Headless Chromium as it runs on these machines: as root (no sandbox), no GPU, and none of its
#: background connections (a closed network refuses them, many at a time).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """Debian's Chromium, installed with apt-get if needed and allowed (else ServiceUnavailable)."""
    return ensure_binary("chromium", "chromium", ("/usr/bin/chromium", "/usr/bin/chromium-browser"))


class RedisServer:
    """A private ``redis-server`` on a free port, no persistence: ``with RedisServer() as r: r.url``."""

    def __init__(self, port: int | None = None, install: bool = True):
        self.binary = ensure_binary("redis-server", "redis-server", ("/usr/bin/redis-server",), install)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="labkit-redis-")

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        self.proc = subprocess.Popen(
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
