"""What a token costs in CPU: a process's CPU seconds, and a cProfile of a server split by layer.

* :func:`process_cpu_s` reads a process's user + system CPU time (no profiler, no overhead), and
  :func:`tree_cpu_s` that of a process and of its live descendants (a server's workers, its
  recogniser processes): the benchmarks' one way of reading CPU, taken before and after each run.
* ``python -m labkit.bench.cpuprofile --out PATH -m MODULE ARGS...`` runs a server module (``labkit``
  for ``labkit serve``, or ``labkit.bench.peer``) with :mod:`cProfile` ready: SIGUSR1 starts a fresh
  profile, SIGUSR2 stops it and writes its stats to PATH, so only the measured window is profiled
  (not start-up, imports or warm-up). :class:`ProfiledWindow` sends them.
* :class:`CpuTimeline` samples several processes' CPU (each with its descendants) while a benchmark
  runs, so that a run can be split into phases afterwards (``bench load``: the ramp, when new streams
  arrive, and the steady part, when they only carry tokens), each process apart.
* :func:`layer_seconds` turns those stats into seconds per layer: each function's own time goes to
  the layer of the file it is in (uvicorn's HTTP or WebSocket protocol, the framework, the lab's
  code, the upstream HTTP client, the event loop, JSON, ...). C functions (``socket.send``,
  ``json.dumps``'s encoder, ...) have no file: their time goes to their callers' layers, in the
  proportion of the calls each made. cProfile slows Python code down (so absolute numbers are
  inflated), but the split between layers is what says where to look.
"""

from __future__ import annotations

import bisect
import cProfile
import pstats
import runpy
import signal
import sys
import threading
import time

__all__ = ["process_cpu_s", "tree_cpu_s", "CpuTimeline", "layer_of", "layer_seconds", "LAYERS", "ProfiledWindow"]

#: (layer, path fragments), first match wins; a path is matched with "/" separators.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("websocket protocol (uvicorn ws, websockets, wsproto)",
     ("/uvicorn/protocols/websockets/", "/websockets/", "/wsproto/")),
    ("http server (uvicorn http, httptools)", ("/uvicorn/", "/httptools/")),
    ("framework (starlette, fastapi, sse-starlette)", ("/starlette/", "/fastapi/", "/sse_starlette/")),
    ("lab streams (labkit.server.streamhub, labkit.streams)", ("/labkit/server/streamhub.py", "/labkit/streams",
                                                               "/labkit/streamcore")),
    ("lab transports (labkit.server.chat, connections, protocol)", ("/labkit/server/chat.py",
                                                                    "/labkit/server/connections.py",
                                                                    "/labkit/protocol/")),
    ("lab upstream (labkit.server.upstream)", ("/labkit/server/upstream.py",)),
    ("peer relay (labkit.bench.peer)", ("/labkit/bench/peer.py",)),
    ("other labkit", ("/labkit/",)),
    ("openai sdk and pydantic", ("/openai/", "/pydantic/", "/pydantic_core/")),
    ("upstream http client (aiohttp or httpx: httpx2, httpcore, h11, anyio)",
     ("/aiohttp/", "/aiohappyeyeballs/", "/multidict/", "/yarl/", "/httpx/", "/httpcore/", "/httpx2/", "/httpcore2/",
                                                            "/h11/", "/anyio/")),
    ("json", ("/json/",)),
    ("event loop (asyncio, uvloop)", ("/asyncio/", "/uvloop/", "selectors.py")),
)
OTHER = "other"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far (``psutil.NoSuchProcess`` if it is gone)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds so far of the process ``pid`` (``psutil.NoSuchProcess`` if it is
    gone), and the sum of its live descendants' (one that ends meanwhile counts 0: take both readings
    of a difference while the children live)."""
    import psutil

    def cpu(p) -> float:
        try:
            t = p.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    proc = psutil.Process(pid)
    children = proc.children(recursive=True)
    own = proc.cpu_times()                      # (a process that is gone raises here, as documented)
    return own.user + own.system, sum(cpu(child) for child in children)


class CpuTimeline:
    """CPU seconds of named processes, each with its descendants, read every ``interval_s`` in a thread.

    ``add(name, pid)`` starts following a process; :meth:`at` is a process's CPU at a moment of the
    ``time.monotonic()`` clock (linear between readings; the clock is the system's, so a moment another
    process reported is comparable); :meth:`last` the latest. A process that ends must be given its
    final figure (``ended(name, cpu_s)``, e.g. from ``os.wait4``'s rusage): readings stop when it is gone."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self._pids: dict[str, int] = {}
        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-timeline")

    def __enter__(self) -> "CpuTimeline":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for name in list(self._pids):
            self._read(name)

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self._pids[name] = pid
            self._series[name] = ([], [])
        self._read(name)

    def ended(self, name: str, cpu_s: float) -> None:
        """The process ``name`` is gone; ``cpu_s`` was its CPU in all (its last figure, now)."""
        with self._lock:
            self._pids.pop(name, None)
            times, values = self._series[name]
            times.append(time.monotonic())
            values.append(max(cpu_s, values[-1] if values else 0.0))

    def _read(self, name: str) -> None:
        import psutil

        with self._lock:
            pid = self._pids.get(name)
        if pid is None:
            return
        try:
            value = sum(tree_cpu_s(pid))
        except psutil.Error:                 # gone meanwhile: its final figure comes from ended()
            return
        now = time.monotonic()
        with self._lock:
            if name in self._pids:
                times, values = self._series[name]
                times.append(now)
                values.append(max(value, values[-1] if values else 0.0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for name in list(self._pids):
                self._read(name)

    def names(self) -> list[str]:
        return list(self._series)

    def at(self, name: str, t: float) -> float:
        """CPU seconds of ``name`` at the moment ``t`` (its first or last reading outside them)."""
        with self._lock:
            times, values = (list(v) for v in self._series[name])
        if not times:
            raise ValueError(f"no reading of {name!r}")
        k = bisect.bisect_left(times, t)
        if k == 0:
            return values[0]
        if k == len(times):
            return values[-1]
        t0, t1, v0, v1 = times[k - 1], times[k], values[k - 1], values[k]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1

    def last(self, name: str) -> float:
        return self.at(name, float("inf"))


def layer_of(filename: str) -> str | None:
    """The layer a source file belongs to; None for C functions (cProfile's ``~`` file)."""
    if filename == "~" or filename.startswith("<"):
        return None
    path = filename.replace("\\", "/")
    for layer, fragments in LAYERS:
        if any(fragment in path for fragment in fragments):
            return layer
    if "/site-packages/" in path:                      # another library: named by its package
        return f"{OTHER}: {path.split('/site-packages/', 1)[1].split('/', 1)[0].removesuffix('.py')}"
    if "/lib/python" in path:                          # the standard library: named by its module
        rest = path.split("/lib/python", 1)[1].split("/", 1)[-1]
        return f"{OTHER}: stdlib {rest.split('/', 1)[0].removesuffix('.py')}"
    return OTHER


def layer_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Own time per layer, C functions' time given to their callers' layers (see the module docstring)."""
    table = stats.stats          # {(file, line, name): (primitive calls, calls, own time, cumulative, callers)}
    out: dict[str, float] = {}

    def caller_layers(func, seen: frozenset = frozenset()) -> dict[str, float]:
        """Shares of ``func``'s calls per layer of its callers (C callers followed up to Python code)."""
        callers = table[func][4] if func in table else {}
        counts = {c: v[1] for c, v in callers.items()}
        total = sum(counts.values())
        if not total:
            return {OTHER: 1.0}
        shares: dict[str, float] = {}
        for caller, n in counts.items():
            layer = layer_of(caller[0])
            if layer is None and caller not in seen:
                for sub, share in caller_layers(caller, seen | {func}).items():
                    shares[sub] = shares.get(sub, 0.0) + share * n / total
            else:
                shares[layer or OTHER] = shares.get(layer or OTHER, 0.0) + n / total
        return shares

    for func, (_, _, own, _, _) in table.items():
        layer = layer_of(func[0])
        if layer is not None:
            out[layer] = out.get(layer, 0.0) + own
        else:
            for caller_layer, share in caller_layers(func).items():
                out[caller_layer] = out.get(caller_layer, 0.0) + own * share
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


class ProfiledWindow:
    """``with ProfiledWindow(pid, path): ...`` profiles the server ``pid`` (started by this module's
    command line with ``--out path``) while the block runs, and waits for its stats file."""

    def __init__(self, pid: int, path: str, timeout_s: float = 30.0):
        self.pid, self.path, self.timeout_s = pid, path, timeout_s

    def __enter__(self) -> "ProfiledWindow":
        import os
        from pathlib import Path

        Path(self.path + ".done").unlink(missing_ok=True)       # one process, many windows: one file each time
        os.kill(self.pid, signal.SIGUSR1)
        return self

    def __exit__(self, *exc) -> None:
        import os
        import time
        from pathlib import Path

        done = Path(self.path + ".done")
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + self.timeout_s
        while not done.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {self.pid} wrote no profile to {self.path}")
            time.sleep(0.05)

    def stats(self) -> pstats.Stats:
        return pstats.Stats(self.path)


def _main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[0] != "--out" or argv[2] != "-m":
        raise SystemExit("usage: python -m labkit.bench.cpuprofile --out PATH -m MODULE [ARGS...]")
    out, module, args = argv[1], argv[3], argv[4:]
    profile: list[cProfile.Profile] = []

    def start(*_) -> None:
        profile[:] = [cProfile.Profile()]
        profile[0].enable()

    def stop(*_) -> None:
        if profile:
            profile[0].disable()
            profile[0].dump_stats(out)
            open(out + ".done", "w").close()
            profile.clear()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
