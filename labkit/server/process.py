"""A labkit server (or any labkit command that prints its URL) in a child process.

Benchmarks use it so that the server and the load generator do not share one Python interpreter:
in one process they would compete for the GIL and the measurement would include that contest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx

from ..services import spawn, stop_process

__all__ = ["ServerProcess"]


class ServerProcess:
    """Run ``python -m <module> <args>``; wait for its first stdout line to end in a URL, then for /health."""

    def __init__(self, args: list[str], module: str = "labkit", health_path: str | None = "/health",
                 timeout_s: float = 20.0, env: dict | None = None):
        self.cmd = [sys.executable, "-m", module, *args]
        self.health_path, self.timeout_s = health_path, timeout_s
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> "ServerProcess":
        # spawn: the child never outlives this process, even one killed with SIGKILL mid-benchmark
        self.proc = spawn(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env)
        first = self.proc.stdout.readline()
        if not first.strip().split() or "://" not in first.split()[-1]:
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"{' '.join(self.cmd[2:])} did not start: {first}{rest}".strip())
        self.url = first.split()[-1]
        # keep draining its output so a chatty child never blocks on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        if self.health_path:
            self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if httpx.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{' '.join(self.cmd[2:])} did not become healthy")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)

    def __exit__(self, *exc) -> None:
        self.stop()
