"""CPU per layer: a real cProfile of real library calls, split by the file each function lives in."""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import subprocess
import sys

import psutil
import pytest
import starlette.datastructures

from labkit.bench.cpuprofile import OTHER, CpuTimeline, layer_of, layer_seconds, process_cpu_s, tree_cpu_s


def test_files_map_to_their_layers():
    assert layer_of(json.__file__) == "json"
    assert layer_of(starlette.datastructures.__file__).startswith("framework")
    assert layer_of("/x/site-packages/uvicorn/protocols/websockets/websockets_impl.py").startswith("websocket")
    assert layer_of("/x/site-packages/uvicorn/protocols/http/httptools_impl.py").startswith("http server")
    assert layer_of("/x/labkit/server/streamhub.py").startswith("lab streams")
    assert layer_of("/x/site-packages/typing_extensions.py") == f"{OTHER}: typing_extensions"
    assert layer_of("~") is None                                       # a C function: no file of its own


def test_c_functions_are_charged_to_their_callers_layers():
    def work():
        for _ in range(2000):
            json.dumps({"seq": 1, "content": "token", "t": 1.0})          # Python json calling the C encoder
            starlette.datastructures.Headers({"a": "b"})

    profile = cProfile.Profile()
    profile.enable()
    work()
    profile.disable()
    stats = pstats.Stats(profile)
    layers = layer_seconds(stats)
    total_own = sum(v[2] for v in stats.stats.values())
    assert abs(sum(layers.values()) - total_own) < 1e-6 * max(1.0, total_own)    # nothing lost, nothing twice
    assert layers["json"] > 0 and any(k.startswith("framework") for k in layers)


def test_process_cpu_grows_with_work():
    before = process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert process_cpu_s(os.getpid()) > before


def test_tree_cpu_counts_a_busy_child_apart_from_its_parent():
    # the child works, then waits (alive) for its stdin to close: both readings see it alive
    child = subprocess.Popen([sys.executable, "-c", "sum(i * i for i in range(3_000_000)); print('done', flush=True); "
                              "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        own, children = tree_cpu_s(os.getpid())
        assert children >= process_cpu_s(child.pid) > 0.05        # at least the busy child's seconds
        assert own == pytest.approx(process_cpu_s(os.getpid()), abs=0.05)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    with pytest.raises(psutil.NoSuchProcess):                       # a process that is gone is an error
        process_cpu_s(child.pid)


def test_both_upstream_transports_are_the_upstream_http_client_layer():
    from labkit.bench.cpuprofile import layer_of

    for path in ("/v/site-packages/aiohttp/client_proto.py", "/v/site-packages/httpx2/_models.py",
                 "/v/site-packages/httpcore/_async/http11.py", "/v/site-packages/aiohappyeyeballs/impl.py"):
        assert layer_of(path).startswith("upstream http client"), path


def test_the_timeline_splits_a_run_into_phases_each_process_apart():
    """A child that idles, works, then idles: its CPU is seen in the busy phase, not the idle ones;
    after it has ended, its final figure (given by the caller) is its last."""
    import time

    script = ("import sys, time\n"
              "sys.stdin.readline(); t = time.process_time()\n"
              "while time.process_time() - t < 0.3: pass\n"
              "print('done', flush=True); sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", script],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with CpuTimeline(interval_s=0.05) as timeline:
        timeline.add("child", child.pid)
        time.sleep(0.2)
        before = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        time.sleep(0.5)                                   # readings after the busy part (a busy machine: generous)
        after = time.monotonic()
        time.sleep(0.5)
        child.stdin.write("end\n")
        child.stdin.flush()
        child.wait(timeout=30)
        timeline.ended("child", 5.0)
    busy = timeline.at("child", after) - timeline.at("child", before)
    assert 0.2 <= busy <= 1.0                                    # the child's 0.3 s of work, in its phase
    assert timeline.at("child", before) < 0.25                  # start-up only (no work yet)
    assert timeline.last("child") == 5.0 and timeline.names() == ["child"]
