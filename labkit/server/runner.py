"""Running the labkit server: in a background thread for notebooks and tests, or in the foreground.

``serve()`` binds a socket on a port the kernel chooses (port 0), so two notebooks, or two servers
in one notebook, never collide. It waits until ``/health`` answers before returning, and
``stop()`` (or leaving the ``with`` block) shuts it down even while streams are still open.

Notebooks use :func:`lab_server` instead: the kernel's own server, started on first use and the same
one on every later call (a re-run cell, a second Run All), stopped when the kernel ends. So no chapter
has to end by stopping what the learner is about to scroll back and use. :func:`stop_at_exit` gives
anything else a chapter starts (a server in a child process, say) the same lifetime.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import socket
import threading
import time
from dataclasses import replace

import httpx
import uvicorn

from ..auth import check_bind
from . import logredact
from .app import create_app
from .protocols import quiet_websocket_access_log, tune_gc, uvicorn_options
from .state import ServerConfig
from .upstream import LOCAL_API_KEY

__all__ = ["LabServer", "serve", "lab_server", "stop_at_exit", "bind_socket", "run_forever"]


def bind_socket(host: str = "127.0.0.1", port: int = 0, backlog: int = 2048) -> socket.socket:
    """Bind (port 0: any free port) and listen before uvicorn starts, so the URL is known and nothing
    races: from the moment the URL is printed, a client's connection is accepted by the kernel and
    waits in the backlog until uvicorn serves it (bound but not listening, it would be refused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}. "
                               f"Is another server using that port? Try another --port, or 0 for any free one.") from None
    sock.listen(backlog)                         # uvicorn's own listen() on this socket later only resizes the backlog
    sock.set_inheritable(True)
    return sock


def _own_upstream(config: ServerConfig, base_url: str) -> ServerConfig:
    """The app routes call this server's own ``/v1``: with a credential it accepts, when it needs one."""
    key = config.upstream_api_key or config.api_key or config.lab_token
    return replace(config, upstream_base_url=base_url, upstream_api_key=key)


def _url(host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


class LabServer:
    """A running labkit server. Use ``.url``, ``.base_url`` (for the OpenAI SDK), ``.ws_url``, ``.client()``."""

    def __init__(self, config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0, http: str = "auto"):
        config = config or ServerConfig()
        check_bind(host, config.lab_token)
        self._sock = bind_socket(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        self.url = _url(host if host not in ("0.0.0.0", "::") else "127.0.0.1", self.port)
        if config.upstream_base_url is None:      # the app transports use this server's own /v1
            config = _own_upstream(config, self.base_url)
        self.config = config
        self.app = create_app(config)
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                     **{**uvicorn_options(config, http), "timeout_graceful_shutdown": 1}))
        logredact.install()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What ``OpenAI(base_url=...)`` needs (it includes ``/v1``)."""
        return self.url + "/v1"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:]

    @property
    def stats(self) -> dict:
        return self.app.state.stats.as_dict()

    def reply(self, stream_id: str):
        """The kept reply ``stream_id`` as the server holds it (a :class:`labkit.streams.StreamLog`: its
        tokens, the time each was produced and when and why it ended, all on the server's clock);
        :class:`labkit.streams.StreamGone` once it is no longer kept."""
        return self.app.state.hub.machine.get(stream_id)

    @property
    def live(self):
        """The settings switched at run time (:class:`~labkit.server.state.LiveSettings`)."""
        return self.app.state.live

    async def idle(self, timeout_s: float = 5.0) -> dict:
        """Wait until no stream is active (model or app) and return the counters; AssertionError if
        streams are still running after ``timeout_s`` (a stream that was never cancelled, say)."""
        for _ in range(int(timeout_s / 0.02)):
            stats = self.stats
            if stats["model_streams_active"] == 0 and stats["app_streams_active"] == 0:
                return stats
            await asyncio.sleep(0.02)
        raise AssertionError(f"streams still active after {timeout_s:g} s: {self.stats}")

    def start(self, timeout_s: float = 15.0) -> "LabServer":
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"labkit-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._thread.is_alive():
                raise RuntimeError(f"the labkit server on port {self.port} stopped during start-up; see the log above")
            if self._server.started and self._healthy():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the labkit server did not answer /health within {timeout_s:.0f} s")
            time.sleep(0.01)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop serving; open streams are cut after a one-second grace period."""
        if self._thread is not None and self._thread.is_alive():
            loop = getattr(self.app.state, "loop", None)
            if loop is not None and loop.is_running():          # end generations first: no cut-off streams
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(self.app.state.end_streams(), loop).result(timeout=3)
            self._server.should_exit = True
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._sock.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def client(self, *, sync: bool = False, **kwargs):
        """An ``openai`` client for this server's ``/v1`` (async by default)."""
        import openai
        cls = openai.OpenAI if sync else openai.AsyncOpenAI
        default_key = self.config.api_key or self.config.lab_token or LOCAL_API_KEY    # what this server accepts
        return cls(base_url=self.base_url, api_key=kwargs.pop("api_key", default_key), **kwargs)

    def __enter__(self) -> "LabServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LabServer {self.url} {'running' if self.running else 'stopped'}>"


def serve(config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, http: str = "auto",
          **options) -> LabServer:
    """Start a labkit server in the background and return it once ``/health`` answers.

    ``options`` are :class:`ServerConfig` fields, e.g. ``serve(time_scale=0.2, rate_limit_rpm=60)``.
    Use it as a context manager, or call ``.stop()``. ``http="h11"`` picks uvicorn's h11 protocol
    implementation, which answers HTTP/1.0 requests close-delimited (the default, httptools, always
    sends chunked), which is what makes nginx's default buffering visible (chapter 06).
    """
    config = replace(config or ServerConfig(), **options)
    return LabServer(config, host, port, http).start()


_kernel_servers: dict[str, LabServer] = {}
_stop_at_exit: list = []          # what to stop when this process (the notebook's kernel) ends, newest last


def lab_server(**options) -> LabServer:
    """This kernel's server for these ``options`` (:class:`ServerConfig` fields, as for :func:`serve`).

    Started on first use and returned as is on every later call with the same options, so re-running
    a chapter's first cell, or Run All twice, keeps one server and everything connected to it (widgets,
    clients). It stops when the kernel ends (Kernel → Shut Down or Restart; closing JupyterLab). A
    server stopped by hand is replaced by a fresh one on the next call.
    """
    key = repr(sorted(options.items()))
    server = _kernel_servers.get(key)
    if server is None or not server.running:
        server = stop_at_exit(serve(**options))
        _kernel_servers[key] = server
    return server


def stop_at_exit(resource):
    """Call ``resource.stop()`` when this Python process ends (for a notebook: when its kernel ends);
    returns ``resource``. Resources stop newest first, each at most once, and a failing stop does not
    keep the others running."""
    if not _stop_at_exit:
        atexit.register(_stop_all)
    _stop_at_exit.append(resource)
    return resource


def _stop_all() -> None:
    while _stop_at_exit:
        resource = _stop_at_exit.pop()
        with contextlib.suppress(Exception):
            resource.stop()


def run_forever(config: ServerConfig, host: str, port: int, app_factory=None,
                name: str = "labkit server", workers: int = 1) -> None:
    """The foreground server of ``python -m labkit serve``.

    ``app_factory(config)``, when given, builds another ASGI app to serve instead of labkit's (the
    CLI's ``--app tutorial``: the tutorial's blocking SSE server, for comparisons). The caller picks
    it, so this module does not import the chapters' code. ``workers`` > 1: that many processes on one
    socket, sharing rooms and streams through ``config.redis_url`` (:mod:`labkit.server.workers`)."""
    if workers > 1 and not config.redis_url:
        raise OSError(0, "--workers above 1 needs Redis (--redis-url or REDIS_URL): rooms and resumable "
                         "streams must be shared by the worker processes")
    check_bind(host, config.lab_token)
    sock = bind_socket(host, port)
    if app_factory is not None:
        app = app_factory(config)
        print(f"{name} listening on {_url(host, sock.getsockname()[1])}", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
        return
    url = _url("127.0.0.1" if host in ("0.0.0.0", "::") else host, sock.getsockname()[1])
    if config.upstream_base_url is None:
        config = _own_upstream(config, url + "/v1")
    print(f"labkit server listening on {url}", flush=True)
    key = "<LAB_TOKEN or a user token>" if config.lab_token else "any"
    print(f"  OpenAI SDK:  OpenAI(base_url=\"{url}/v1\", api_key=\"{key}\")", flush=True)
    print(f"  chat:        POST {url}/api/chat   POST {url}/api/chat/stream   ws{url[4:]}/ws/chat", flush=True)
    if workers > 1:
        print(f"  {workers} worker processes, sharing rooms and streams through Redis", flush=True)
    print("  Ctrl+C to stop.", flush=True)
    if workers > 1:
        from .workers import run_workers
        run_workers(config, sock, workers)
        return
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="info", **uvicorn_options(config)))
    logredact.install()                        # ?token=… in an access-log line is masked
    if not config.access_log:
        quiet_websocket_access_log()           # nor a line per WebSocket (uvicorn logs those apart)
    tune_gc()
    server.run(sockets=[sock])

