"""Answer audio under packet loss: the WebSocket's TCP against WebRTC's UDP, measured on the wire.

One spoken answer per run, from the Realtime emulator at real-time pace (``time_scale`` 1: the
emulator sends speech as fast as it is spoken, so nothing is buffered ahead), through an impaired
network path with the same one-way delay and jitter for both and a packet loss of 0, 2, 5 or 10 %:

* **WebSocket**: ``response.output_audio.delta`` events (100 ms each) through :class:`labkit.netem.NetemProxy`,
  read at most one 1448-byte segment at a time, so each segment is lost (and costs one retransmission
  timeout, holding back everything behind it) with the given probability. Arrival = when the client
  has the event.
* **WebRTC**: the Opus answer track (20 ms per packet) through :class:`labkit.netem.UdpRelay`: the
  client's copy of the SDP answer is rewritten to the relay's address, so every datagram of the call
  crosses it. Arrival = when the relay hands a packet to the client's socket (RTP headers are not
  encrypted by SRTP, so sequence numbers say where each packet belongs and which ones are missing).

The loss is switched on once the call is set up, so it hits the answer's audio (and, as on a real
network, the events and the data channel too). :func:`labkit.latency.stalls.stall_report` turns the
arrivals into stalls, late audio and lost audio under a 100 ms jitter buffer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import websockets

from ..latency.stalls import Piece, stall_report, timeline
from ..netem import NetemProxy, NetworkProfile, UdpRelay
from ..realtime.webrtc_client import WebRTCRealtimeClient

__all__ = ["impaired", "websocket_run", "webrtc_run", "loss_series", "LOSSES", "PROMPT"]

LOSSES = (0.0, 0.02, 0.05, 0.10)
PROMPT = "Tell me how streaming works."
BUFFER_MS = 100.0
RTP_FRAME_MS = 20.0


def impaired(loss: float, delay_ms: float = 20.0, jitter_ms: float = 5.0) -> NetworkProfile:
    return NetworkProfile(f"loss {loss:.0%}", delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss, rto_ms=200.0)


def _session(tokens: int) -> dict:
    return {"type": "realtime", "max_output_tokens": tokens, "audio": {"input": {"turn_detection": None}}}


def _ask() -> list[dict]:
    return [{"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": PROMPT}]}},
            {"type": "response.create"}]


async def websocket_run(port: int, profile: NetworkProfile, *, tokens: int = 20, seed: int = 0,
                        model: str = "instant", timeout: float = 90.0) -> dict:
    """One answer over a WebSocket through a :class:`NetemProxy` in front of ``127.0.0.1:port``."""
    async with NetemProxy(port, NetworkProfile("setup"), seed=seed, chunk=1448) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/v1/realtime?model={model}"
        pieces, position = [], 0.0
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer sk-lab"},
                                      max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": _session(tokens)}))
            async with asyncio.timeout(timeout):
                while json.loads(await ws.recv())["type"] != "session.updated":
                    pass
                proxy.set_profile(profile)
                for event in _ask():
                    await ws.send(json.dumps(event))
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "response.output_audio.delta":
                        ms = len(base64.b64decode(event["delta"])) / 2 / 24
                        pieces.append(Piece(position, ms, time.perf_counter()))
                        position += ms
                    elif event["type"] == "response.done":
                        break
    return {"transport": "websocket", "loss": profile.loss, "pieces": len(pieces),
            **stall_report(pieces, BUFFER_MS), "timeline": timeline(pieces, BUFFER_MS)}


_CANDIDATE = re.compile(r"^a=candidate:\S+ 1 udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", re.M | re.I)


def _rtp(data: bytes) -> tuple[int, int] | None:
    """(sequence number, SSRC) of an RTP packet; None for RTCP, STUN, DTLS."""
    if len(data) < 12 or not 128 <= data[0] <= 191 or 192 <= data[1] <= 223:
        return None
    return int.from_bytes(data[2:4], "big"), int.from_bytes(data[8:12], "big")


async def webrtc_run(base_url: str, profile: NetworkProfile, *, tokens: int = 20, seed: int = 0,
                     model: str = "instant", timeout: float = 90.0) -> dict:
    """One answer over WebRTC, every datagram of the call through a :class:`UdpRelay`."""
    arrivals: dict[int, float] = {}
    recording = False

    def tap(direction, data, at):
        header = _rtp(data) if recording and direction == "down" else None
        if header is not None:
            arrivals.setdefault(header[0], at)

    relay_box: dict = {}

    def through_relay(answer: str) -> str:
        found = _CANDIDATE.search(answer)
        if found is None:
            raise RuntimeError("the answer has no IPv4 UDP host candidate")
        relay_box["target"] = (found.group(1), int(found.group(2)))
        relay = relay_box["relay"]
        lines = [ln for ln in answer.splitlines() if not ln.startswith("a=candidate:")]
        at = next(i for i, ln in enumerate(lines) if ln.startswith("a=ice-ufrag"))
        lines.insert(at, f"a=candidate:1 1 udp 2130706431 {found.group(1)} {relay.port} typ host")
        relay.target = relay_box["target"]
        return "\r\n".join(lines) + "\r\n"

    def unreachable_client(offer: str) -> str:
        # the server must not find the client directly (ICE would happily use that path, around the
        # relay): its copy of the offer names a candidate nobody answers on (the discard port)
        found = _CANDIDATE.search(offer)
        lines = [ln for ln in offer.splitlines() if not ln.startswith("a=candidate:")]
        at = next(i for i, ln in enumerate(lines) if ln.startswith("a=ice-ufrag"))
        lines.insert(at, f"a=candidate:1 1 udp 2130706431 {found.group(1) if found else '127.0.0.1'} 9 typ host")
        return "\r\n".join(lines) + "\r\n"

    relay = UdpRelay(("127.0.0.1", 9), NetworkProfile("setup"), host="0.0.0.0", seed=seed, tap=tap)
    relay_box["relay"] = relay
    async with relay:
        client = WebRTCRealtimeClient(base_url, "sk-lab", model=model, rewrite_answer=through_relay,
                                      rewrite_offer=unreachable_client)
        await client.connect(timeout=30)
        try:
            client.update_session(**{k: v for k, v in _session(tokens).items() if k != "type"})
            await client.wait_for("session.updated", timeout)
            relay.set_profile(profile)
            recording = True
            for event in _ask():
                client.send(event)
            await client.wait_for("output_audio_buffer.stopped", timeout)
            recording = False
        finally:
            await client.close()
    if not arrivals:
        raise RuntimeError(f"no RTP packet crossed the relay (delivered {relay.delivered}, lost {relay.lost})")
    seqs = sorted(arrivals)
    unwrapped = []                     # sequence numbers wrap at 2**16
    offset, previous = 0, None
    for s in seqs:
        if previous is not None and s < previous - 30000:
            offset += 65536
        unwrapped.append((s + offset, arrivals[s]))
        previous = s
    first, last = unwrapped[0][0], unwrapped[-1][0]
    got = dict(unwrapped)
    pieces = [Piece((n - first) * RTP_FRAME_MS, RTP_FRAME_MS, got.get(n)) for n in range(first, last + 1)]
    return {"transport": "webrtc", "loss": profile.loss, "pieces": len(pieces),
            "relay_lost": dict(relay.lost), "relay_delivered": dict(relay.delivered),
            **stall_report(pieces, BUFFER_MS), "timeline": timeline(pieces, BUFFER_MS)}


async def loss_series(base_url: str, port: int, transports=("websocket", "webrtc"), losses=LOSSES, *,
                      tokens: int = 20, seed: int = 0, model: str = "instant", log=None,
                      warm_up: bool = True) -> list[dict]:
    """One run per (transport, loss), in that order; the rows of :func:`stall_report` plus their setup.

    Each transport first answers once unimpaired, unrecorded: a fresh server's first answer loads the
    speech synthesiser, and the burst that follows would fill the client's buffer and hide the losses
    (``warm_up=False`` when the server has already spoken)."""
    for transport in transports if warm_up else ():
        run = websocket_run(port, impaired(0.0), tokens=4, model=model) if transport == "websocket" else \
            webrtc_run(base_url, impaired(0.0), tokens=4, model=model)
        await run
    rows = []
    for loss in losses:
        for transport in transports:
            profile, run_seed = impaired(loss), seed + round(1000 * loss)
            if transport == "websocket":
                row = await websocket_run(port, profile, tokens=tokens, seed=run_seed, model=model)
            else:
                row = await webrtc_run(base_url, profile, tokens=tokens, seed=run_seed, model=model)
            row.update(delay_ms=profile.delay_ms, jitter_ms=profile.jitter_ms, rto_ms=profile.rto_ms)
            rows.append(row)
            if log is not None:
                log(f"  {transport:9} loss {loss:4.0%}: {row['stalls']:3d} stalls (longest {row['longest_stall_ms']:5.0f} ms), "
                    f"late {row['late_ms']:6.0f} ms, lost {row['lost_ms']:5.0f} ms of {row['audio_ms']:6.0f} ms")
    return rows


async def webrtc_voice_turn(base_url: str, audio24, speech_end_s: float, *, model: str = "gpt-realtime",
                            silence_ms: int = 500, timeout: float = 60.0) -> dict:
    """One spoken turn over WebRTC on loopback: voice-to-voice latency (true end of speech, from the
    labels, to the first answer sound arriving on the track) and its parts, as labkit.bench.realtime
    measures them over the WebSocket."""
    client = WebRTCRealtimeClient(base_url, "sk-lab", model=model)
    await client.connect(timeout=30)
    try:
        client.update_session(max_output_tokens=12, audio={"input": {
            "transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms}}})
        await client.wait_for("session.updated", timeout)
        begin = client.say(audio24)
        speech_end = client.microphone.time_of_sample(begin + round(speech_end_s * 24_000))
        stopped = await client.wait_for("input_audio_buffer.speech_stopped", timeout)
        stopped_at = next(t for t, e in client.events if e is stopped)
        await client.wait_for("response.created", timeout)
        created_at = next(t for t, e in client.events if e["type"] == "response.created")
        await client.wait_for("output_audio_buffer.started", timeout)

        async def first_sound() -> float:
            while True:
                for at, _, samples in client.received:
                    if at >= created_at and samples.size and int(abs(samples.astype(int)).max()) > 500:
                        return at
                await asyncio.sleep(0.01)
        sound_at = await asyncio.wait_for(first_sound(), timeout)
        transcript = await client.wait_for("conversation.item.input_audio_transcription.completed", timeout)
    finally:
        await client.close()
    detected = speech_end + (stopped["audio_end_ms"] - 1000 * (begin / 24_000 + speech_end_s)) / 1000
    return {"voice_to_voice_ms": round(1000 * (sound_at - speech_end), 1),
            "vad_wait_ms": round(1000 * (detected - speech_end), 1),
            "to_response_ms": round(1000 * (created_at - detected), 1),
            "to_first_sound_ms": round(1000 * (sound_at - created_at), 1),
            "vad_event_after_detection_ms": round(1000 * (stopped_at - detected), 1),
            "transcript": transcript["transcript"]}


def run_transport(transport: str, quick: bool = False, base: dict | None = None) -> dict:
    """``python -m labkit bench realtime --transport websocket|webrtc``: the loss series for that transport
    (and, for WebRTC, voice-to-voice turns on loopback; the WebSocket's are ``base``, the realtime bench)."""
    import os
    import sys

    import numpy as np

    from ..audio.pcm import resample
    from ..latency import summarize
    from ..server.process import ServerProcess
    from ..speechdata import SAMPLE_RATE, load_clean

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = dict(base or {"benchmark": "realtime", "description": "Realtime over " + transport})
    result["transport"] = transport
    if transport == "webrtc":
        clean, utterances = load_clean()
        turns = []
        with ServerProcess(["serve", "--port", "0"]) as proc:
            for u in utterances[:2] if quick else utterances[:6]:
                lead, tail = 0.5, 1.5
                piece = clean[int((u.start_s - lead) * SAMPLE_RATE): int((u.end_s + 0.3) * SAMPLE_RATE)]
                audio = np.concatenate([resample(piece, SAMPLE_RATE, 24_000), np.zeros(int(tail * 24_000), np.int16)])
                row = asyncio.run(webrtc_voice_turn(proc.url, audio, lead + u.duration_s))
                turns.append(row)
                log(f"  webrtc turn {len(turns)}: voice-to-voice {row['voice_to_voice_ms']:6.0f} ms "
                    f"(VAD wait {row['vad_wait_ms']:4.0f} ms)")
        parts = ("voice_to_voice_ms", "vad_wait_ms", "to_response_ms", "to_first_sound_ms")
        result.update(description="Voice-to-voice latency over WebRTC on loopback, and answer audio under loss",
                      turns={"gpt-realtime": turns},
                      summary={"gpt-realtime": {p: summarize((r[p] for r in turns), digits=1) for p in parts}})
    losses = (0.0, 0.10) if quick else LOSSES
    tokens = 10 if quick else 40
    log(f"loss series over {transport}: {len(losses)} runs, answers of {tokens} tokens, 20 ms one way, 5 ms jitter")
    with ServerProcess(["serve", "--port", "0"]) as proc:
        port = int(proc.url.rsplit(":", 1)[1])
        rows = asyncio.run(loss_series(proc.url, port, (transport,), losses, tokens=tokens, log=log))
    result["loss"] = {"setup": {"buffer_ms": BUFFER_MS, "delay_ms": 20.0, "jitter_ms": 5.0, "tcp_rto_ms": 200.0,
                                "answer_tokens": tokens, "cpus": os.cpu_count(),
                                "rule": "labkit.latency.stalls.stall_report"},
                      "runs": rows}
    return result
