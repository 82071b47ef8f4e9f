"""A private nginx in front of a labkit server, for seeing what proxy buffering does to a stream.

``ensure_nginx()`` finds the nginx binary or raises :class:`ServiceUnavailable` saying how to install
it, so a notebook cell can explain and skip. :class:`NginxProxy` runs nginx on a free port with its own config and temporary
folder (nothing under /etc is touched) and three routes to the same upstream:

* ``/buffered/``: nginx's defaults (HTTP/1.0 to the upstream, ``proxy_buffering on``), with the app's
  ``X-Accel-Buffering: no`` header ignored, as a proxy you do not control might;
* ``/unbuffered/``: the same, with ``proxy_buffering off``;
* ``/honoured/``: the defaults, honouring the app's ``X-Accel-Buffering: no`` (the lab's SSE sends it).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .services import BINARIES, ServiceUnavailable, find_binary, free_port, spawn, stop_process

__all__ = ["ServiceUnavailable", "ensure_nginx", "NginxProxy", "ROUTES"]

ROUTES = ("buffered", "unbuffered", "honoured")


def ensure_nginx() -> str:
    """The path of an nginx binary, else ServiceUnavailable saying how to install it (library code only
    looks; installing is the user's job, or the test setup's)."""
    return find_binary("nginx", *BINARIES["nginx"])


_CONFIG = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp/body; proxy_temp_path {root}/tmp/proxy; fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi; scgi_temp_path {root}/tmp/scgi;
  upstream app {{ server 127.0.0.1:{upstream}; }}
  server {{
    listen 127.0.0.1:{port};
    location /buffered/   {{ proxy_pass http://app/; proxy_ignore_headers X-Accel-Buffering; }}
    location /unbuffered/ {{ proxy_pass http://app/; proxy_ignore_headers X-Accel-Buffering; proxy_buffering off; }}
    location /honoured/   {{ proxy_pass http://app/; }}
  }}
}}
"""


class NginxProxy:
    """``with NginxProxy(app_port) as proxy:`` then ``proxy.url("buffered")`` is a base URL for a client."""

    def __init__(self, upstream_port: int, *, binary: str | None = None):
        self.upstream_port = upstream_port
        self.binary = binary or ensure_nginx()
        self.port = 0
        self._dir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    def url(self, route: str) -> str:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        return f"http://127.0.0.1:{self.port}/{route}"

    def __enter__(self) -> "NginxProxy":
        self._dir = tempfile.TemporaryDirectory(prefix="labkit-nginx-")
        root = Path(self._dir.name)
        (root / "tmp").mkdir()
        self.port = free_port()
        (root / "nginx.conf").write_text(_CONFIG.format(root=root, upstream=self.upstream_port, port=self.port))
        conf = str(root / "nginx.conf")
        check = subprocess.run([self.binary, "-t", "-p", str(root), "-c", conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise ServiceUnavailable(f"nginx rejected its config: {check.stderr.strip()[-300:]}")
        self._proc = spawn([self.binary, "-p", str(root), "-c", conf, "-g", "daemon off;"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
                    self.stop()
                    raise ServiceUnavailable(f"nginx did not start: {err.strip()[-300:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self._proc)                    # SIGTERM: fast shutdown, even with streams open
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __exit__(self, *exc) -> None:
        self.stop()
