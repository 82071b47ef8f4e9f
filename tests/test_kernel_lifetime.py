"""A notebook's servers live as long as its kernel: one per kernel, kept across re-runs, stopped at exit."""

import os
import subprocess
import sys
import textwrap
import time

import httpx

import labkit


def test_lab_server_is_started_once_and_kept_across_calls():
    first = labkit.lab_server(time_scale=0.1)
    try:
        assert labkit.lab_server(time_scale=0.1) is first and first.running      # a re-run cell: the same server
        other = labkit.lab_server(time_scale=0.1, heartbeat_s=0.25)
        assert other is not first and other.port != first.port                  # other options: its own server
        first.stop()
        again = labkit.lab_server(time_scale=0.1)                                # stopped by hand: a fresh one
        assert again is not first and again.running
        assert httpx.get(again.url + "/health").status_code == 200
    finally:
        for s in (first, other, again):
            s.stop()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:                                         # a zombie has exited too
        return f.read().split(") ")[-1].startswith("Z")


def test_everything_a_kernel_started_stops_when_it_exits():
    script = textwrap.dedent("""
        import labkit
        from labkit.server.process import ServerProcess
        server = labkit.lab_server()
        child = labkit.stop_at_exit(ServerProcess(["serve", "--port", "0"]).__enter__())
        print(server.url, child.url, child.proc.pid, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    server_url, child_url, child_pid = out.stdout.split()
    deadline = time.monotonic() + 10
    while not _gone(int(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(int(child_pid)), "the server in a child process outlived its kernel"
    for url in (server_url, child_url):
        try:
            httpx.get(url + "/health", timeout=2)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"{url} still answers after the kernel exited")
