"""``labkit serve --workers N``: N server processes on one listening socket.

uvicorn's supervisor starts N worker processes that accept connections from the same socket (the
kernel hands each new connection to one of them) and restarts any that dies. Everything a worker
needs is in its :class:`ServerConfig`, passed to it in the environment (``LABKIT_WORKER_CONFIG``,
as JSON; the processes are the server's own children). State that must be the same on every
worker lives in Redis, so N > 1 needs ``redis_url``: rooms (:mod:`labkit.rooms.broker`) and
resumable replies (:mod:`labkit.server.sharedstreams`: a stream started on one worker resumes on
another). Per-user limits (streams at once, requests per minute) are counted per worker.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, fields

import uvicorn

from . import logredact
from .protocols import http_protocol, tune_gc, uvicorn_options
from .state import ServerConfig

__all__ = ["run_workers", "app_from_env", "config_to_env", "config_from_env", "ENV"]

ENV = "LABKIT_WORKER_CONFIG"

#: The HTTP protocol of every worker, by import string (uvicorn pickles its config for each worker,
#: and a class made at run time cannot be pickled).
HTTP_PROTOCOL = http_protocol("auto")


def config_to_env(config: ServerConfig) -> str:
    return json.dumps(asdict(config))


def config_from_env(text: str) -> ServerConfig:
    data = json.loads(text)
    tuples = {f.name for f in fields(ServerConfig) if str(f.type).startswith("tuple")}
    return ServerConfig(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


def app_from_env():
    """uvicorn's app factory in each worker. The config holds the server's secrets (its LAB_TOKEN, API
    and instructor keys): it is taken out of this worker's environment once read, so that the processes
    the worker starts (its speech recognisers) do not inherit them."""
    from .app import create_app

    config = config_from_env(os.environ.pop(ENV))
    HTTP_PROTOCOL.header_timeout_s = config.header_timeout_s
    logredact.install()
    app = create_app(config)
    tune_gc()
    return app


def run_workers(config: ServerConfig, sock: socket.socket, workers: int) -> None:
    """Serve ``sock`` with ``workers`` processes until interrupted (``config.redis_url`` is set: the caller,
    :func:`labkit.server.runner.run_forever`, refuses more than one worker without Redis before binding)."""
    from uvicorn.supervisors import Multiprocess

    os.environ[ENV] = config_to_env(config)
    options = {**uvicorn_options(config), "http": f"{__name__}:HTTP_PROTOCOL"}
    uv = uvicorn.Config(f"{__name__}:app_from_env", factory=True, workers=workers, log_level="info", **options)
    logredact.install()
    Multiprocess(uv, sockets=[sock]).run()
