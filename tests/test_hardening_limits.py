"""Hardening, limits: one client cannot hurt the others. Bodies are refused before they are read
whole, sockets that never finish a request are closed, a shutdown is bounded, the ASR queue is
bounded, and ``POST /api/chat`` counts against the stream limit and stops when its client leaves."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
import numpy as np
import pytest
import websockets



def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat", "/lab/admin/model"])
def test_an_oversize_body_gets_413_before_it_is_sent(server, path):
    """Content-Length says 100 MB: the answer comes at once, without the server reading any of it."""
    with _raw(server.port) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode())
        status, headers, body = _read_response(sock)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and "4194304 bytes" in error["message"]


def test_a_chunked_body_is_cut_off_at_the_limit(make_server):
    server = make_server(max_body_bytes=64 * 1024)
    with _raw(server.port) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b'"' + b"x" * 16_382 + b'"'
        sent = 0
        try:
            for _ in range(64):                           # up to 1 MiB, unless the server answers first
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass                                          # it answered and closed: the rest was never read
        status, _, body = _read_response(sock)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    assert httpx.get(server.url + "/health").status_code == 200


def test_sockets_that_never_finish_their_headers_are_closed(make_server):
    """The slowloris: idle and half-sent requests each hold a descriptor until the header timeout."""
    server = make_server(header_timeout_s=0.5, timeout_keep_alive_s=0.5)
    idle = [_raw(server.port) for _ in range(20)]
    slow = _raw(server.port)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    keep_alive = _raw(server.port)
    keep_alive.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert _read_response(keep_alive)[0] == 200
    for sock in [*idle, slow, keep_alive]:
        sock.settimeout(30)
        assert sock.recv(1) == b"", "the server should have closed this connection"
        sock.close()
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_connection_cap_answers_503_instead_of_hanging(make_server):
    server = make_server(limit_concurrency=8, header_timeout_s=60)
    hold = [_raw(server.port) for _ in range(8)]
    try:
        with httpx.Client(timeout=30) as client:
            r = client.get(server.url + "/health")
            assert r.status_code == 503
    finally:
        for sock in hold:
            sock.close()


def test_sigterm_is_not_held_by_a_long_reply():
    """A reply that would stream for minutes must not hold a shutdown beyond its grace period."""
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:
            if "listening on http" in line:
                url = line.split()[-1]
                break
        assert url, "the server did not start"
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        deadline = __import__("time").monotonic() + 120           # a loaded machine imports slowly
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                assert __import__("time").monotonic() < deadline and proc.poll() is None, "no /health"
                threading.Event().wait(0.05)
        first = threading.Event()

        def stream() -> None:
            body = {"model": "slow-large", "messages": [{"role": "user", "content": "Tell me everything."}],
                    "max_tokens": 4096, "stream": True}
            try:
                with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=None) as r:
                    for _ in r.iter_bytes():
                        first.set()
            except httpx.HTTPError:
                pass
        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert first.wait(60)
        proc.send_signal(signal.SIGINT if os.name == "nt" else signal.SIGTERM)
        assert proc.wait(timeout=30) is not None       # ~3 s of grace (graceful_shutdown_s), never minutes
        reader.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_the_asr_queue_is_bounded(monkeypatch):
    """At most MAX_PENDING utterances wait for the recogniser; the next one fails at once."""
    from labkit.audio import asr

    release = threading.Event()

    def slow_run(audio, rate):
        release.wait(30)
        return "hello"
    monkeypatch.setattr(asr._worker, "run", slow_run)
    monkeypatch.setattr(asr, "_check_available", lambda: None)
    monkeypatch.setattr(asr, "MAX_PENDING", 3)
    waiting = [asyncio.ensure_future(asr.transcribe_async(np.zeros(2400, np.int16), 24_000)) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(asr.ASRBusy):
        await asr.transcribe_async(np.zeros(2400, np.int16), 24_000)
    release.set()
    assert await asyncio.gather(*waiting) == ["hello"] * 3
    assert await asr.transcribe_async(np.zeros(2400, np.int16), 24_000) == "hello"     # room again


async def test_a_full_asr_queue_is_a_transcription_failed_event(server, monkeypatch):
    from labkit.audio import asr

    release = threading.Event()
    monkeypatch.setattr(asr._worker, "run", lambda audio, rate: release.wait(30) and "hello")
    monkeypatch.setattr(asr, "_check_available", lambda: None)
    monkeypatch.setattr(asr, "warm_up", lambda: None)
    monkeypatch.setattr(asr, "MAX_PENDING", 1)
    import base64
    audio = base64.b64encode(np.zeros(4800, "<i2").tobytes()).decode()        # 200 ms
    try:
        async with websockets.connect(server.ws_url + "/v1/realtime?model=gpt-realtime", max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": None, "transcription": {"model": "whisper-1"}}}}}))
            items, failed = [], []
            for _ in range(3):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while len(failed) < 2:
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if event["type"] == "input_audio_buffer.committed":
                    items.append(event["item_id"])
                elif event["type"] == "conversation.item.input_audio_transcription.failed":
                    failed.append(event)
            assert [e["item_id"] for e in failed] == items[1:]
            assert "busy" in failed[0]["error"]["message"]
    finally:
        release.set()


async def test_post_api_chat_counts_against_the_stream_limit(make_server):
    server = make_server(max_streams_per_user=1, time_scale=1.0)
    body = {"message": "Tell me a long story.", "model": "slow-large", "max_tokens": 300}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        first = asyncio.ensure_future(client.post("/api/chat", json=body))
        for _ in range(500):                              # until the first reply is streaming
            if server.stats["app_streams_active"] == 1:
                break
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*(client.post("/api/chat", json=body) for _ in range(7)))
        assert [r.status_code for r in results] == [429] * 7
        assert all(r.json()["error"]["code"] == "too_many_streams" for r in results)
        first.cancel()                                    # the first client leaves mid-reply...
        with pytest.raises(asyncio.CancelledError):
            await first
    stats = await server.idle(timeout_s=20)               # ...and its generation stops (not minutes later)
    assert stats["app_streams_cancelled"] >= 1 and stats["model_streams_active"] == 0


def test_a_body_that_never_finishes_gets_408(make_server):
    server = make_server(body_timeout_s=0.5)
    with _raw(server.port) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"message\": ")
        status, _, body = _read_response(sock)               # the rest of the body never comes
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
