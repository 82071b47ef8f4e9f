"""``labkit serve --no-access-log`` writes no line per request, WebSocket connections included
(uvicorn logs those on its error logger, apart from the access log); without the flag it writes both."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import websockets

from labkit.services import spawn, stop_process


def _serve_and_log(*flags: str) -> str:
    proc = spawn([sys.executable, "-m", "labkit", "serve", "--port", "0", "--time-scale", "0.05", *flags],
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = proc.stdout.readline().split()[-1]

        async def visit() -> None:
            async with websockets.connect("ws" + url[4:] + "/ws/chat") as ws:
                await ws.send(json.dumps({"type": "message", "content": "hi", "max_tokens": 2}))
                while json.loads(await ws.recv())["type"] != "complete":
                    pass
        asyncio.run(visit())
        assert httpx.get(url + "/health", timeout=30).status_code == 200
    finally:
        stop_process(proc)
    return proc.stdout.read()


def test_no_access_log_means_no_line_per_websocket_either():
    quiet, loud = _serve_and_log("--no-access-log"), _serve_and_log()
    assert '"WebSocket /ws/chat" [accepted]' in loud and '"GET /health HTTP/1.1" 200' in loud
    assert "connection open" in loud
    assert "WebSocket /ws/chat" not in quiet and "GET /health" not in quiet and "connection open" not in quiet
    assert "Application startup complete" in quiet             # the server's own lines are still there
