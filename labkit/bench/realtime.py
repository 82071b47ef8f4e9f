"""Benchmark: voice-to-voice latency through the Realtime emulator, part by part, and recognition accuracy.

Each turn streams one utterance of the lab's speech set (resampled to 24 kHz, with silence around it)
at real-time pace, in 20 ms appends, to a fresh session with server VAD (500 ms silence) and input
transcription on, and times the events that come back. With the stream's start at wall time ``t0``,
the user's speech truly ends at ``t0 + end_s`` (from the labels). Parts of the voice-to-voice latency
(true end of speech to the first audio delta):

* ``vad_wait``: ``audio_end_ms`` minus the true end: the configured silence, to a frame;
* ``to_response``: from that moment (on the wall clock) to ``response.created`` arriving;
* ``to_first_audio``: ``response.created`` to the first audio delta: model time to first token
  plus speech synthesis;
* ``transcription``: ``speech_stopped`` to the transcript (it runs beside the response, not before it).

Each turn is cancelled once its first audio and its transcript have arrived. The round trip of the
answers (spoken in full, recognised again) runs afterwards on a sped-up server.

Two series run: ``gpt-realtime`` (the simulated model's ``balanced`` latency profile) and ``instant``
(no model latency), whose voice-to-voice latency minus the VAD wait is the emulator's own overhead:
target p95 < 100 ms. Word error rates: what the user said against the input transcript, and the
assistant's synthesized answer, recognised again, against its own transcript.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time

import numpy as np

from ..audio._sphinx import normalise, recognise
from ..audio.pcm import resample
from ..latency import summarize
from ..realtime.client import RealtimeClient
from ..server.process import ServerProcess
from ..speechdata import SAMPLE_RATE, load_clean

RATE = 24_000
CHUNK_MS = 20
SILENCE_MS = 500
TRANSCRIPT_OUTCOMES = ("conversation.item.input_audio_transcription.completed",
                       "conversation.item.input_audio_transcription.failed")


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance between word sequences, over the reference's length (after :func:`normalise`)."""
    r, h = normalise(reference).split(), normalise(hypothesis).split()
    d = np.zeros((len(r) + 1, len(h) + 1), int)
    d[:, 0], d[0, :] = range(len(r) + 1), range(len(h) + 1)
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (r[i - 1] != h[j - 1]))
    return float(d[-1, -1]) / max(1, len(r))


class ServerAddress:
    """A running server known by its ``http://`` URL, as :meth:`RealtimeClient.local` takes one."""

    def __init__(self, url: str):
        self.ws_url = "ws" + url[4:]


async def timed_turn(server, model: str, audio24: np.ndarray, speech_end_s: float, text: str,
                start: asyncio.Event | None = None) -> dict:
    """One spoken turn, timed. With ``start``, the connection and session are set up first and the
    speech begins when the event is set (so that concurrent sessions speak together)."""
    rt = RealtimeClient.local(server, model)
    await rt.connect()
    await rt.update_session(audio={"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                                             "turn_detection": {"type": "server_vad", "silence_duration_ms": SILENCE_MS}}})
    marks: dict[str, float] = {}
    events: dict[str, dict] = {}

    async def listen():
        while True:
            e = await rt.next_event(60)
            now = time.perf_counter()
            kind = e["type"]
            if kind not in marks:
                marks[kind], events[kind] = now, e
            transcribed = any(k in marks for k in TRANSCRIPT_OUTCOMES)
            if "response.output_audio.delta" in marks and transcribed:
                return                            # all the timing is in: the rest of the answer is not needed

    if start is not None:                          # update_session returned: the session is ready
        await start.wait()
    listener = asyncio.ensure_future(listen())
    n = RATE * CHUNK_MS // 1000
    t0 = time.perf_counter()
    true_end = t0 + speech_end_s                     # when the speech ends, if every chunk goes out on time
    end_chunk = int(speech_end_s * 1000 // CHUNK_MS)
    for k, i in enumerate(range(0, audio24.size, n)):
        await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_MS / 1000 - time.perf_counter()))
        await rt.send_audio(audio24[i:i + n])
        if k == end_chunk:
            # a busy client sends late: the user's speech ended when its last chunk really went out
            # (minus what that chunk held after the end), so the server is not charged for our lateness
            true_end = max(true_end, time.perf_counter() - ((k + 1) * CHUNK_MS / 1000 - speech_end_s))
        if listener.done():
            break
    while not listener.done():                       # keep the input stream alive with silence, as a mic would
        k += 1
        await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_MS / 1000 - time.perf_counter()))
        await rt.send_audio(np.zeros(n, np.int16))
        if k * CHUNK_MS > 30_000:
            break
    await listener
    await rt.cancel()
    await rt.close()
    audio_end_s = events["input_audio_buffer.speech_stopped"]["audio_end_ms"] / 1000
    heard = events.get("conversation.item.input_audio_transcription.completed", {}).get("transcript")
    completed = marks.get("conversation.item.input_audio_transcription.completed")
    return {
        "voice_to_voice_ms": 1000 * (marks["response.output_audio.delta"] - true_end),
        "vad_wait_ms": 1000 * (audio_end_s - speech_end_s),
        "client_send_lag_ms": 1000 * (true_end - (t0 + speech_end_s)),
        "to_response_ms": 1000 * (marks["response.created"] - (true_end - speech_end_s + audio_end_s)),
        "to_first_audio_ms": 1000 * (marks["response.output_audio.delta"] - marks["response.created"]),
        "transcription_ms": (1000 * (marks["conversation.item.input_audio_transcription.completed"]
                                     - marks["input_audio_buffer.speech_stopped"])
                             if heard is not None else None),
        "transcript_after_speech_ms": 1000 * (completed - true_end) if completed is not None else None,
        "transcription_failed": "conversation.item.input_audio_transcription.failed" in marks,
        "input_wer": word_error_rate(text, heard) if heard is not None else None,
        "input_transcript": heard, "said": text,
    }


def class_turns(n: int) -> list[tuple[np.ndarray, float, str]]:
    """``n`` turns of the speech set (it repeats past its length): each ``(audio at 24 kHz with 0.5 s of
    silence before the speech and 0.3 s after, where the speech ends in seconds, what is said)``."""
    clean, utterances = load_clean()
    turns = []
    for k in range(n):
        u = utterances[k % len(utterances)]
        lead, tail = 0.5, 0.3
        piece = clean[int((u.start_s - lead) * SAMPLE_RATE): int((u.end_s + tail) * SAMPLE_RATE)]
        turns.append((resample(piece, SAMPLE_RATE, RATE), lead + u.duration_s, u.text))
    return turns


async def _answer_round_trip(server, questions: list[str]) -> list[dict]:
    """Ask in text, take the whole spoken answer, recognise it again, compare with its own transcript."""
    rows = []
    for question in questions:
        rt = RealtimeClient.local(server, "instant")
        await rt.connect()
        await rt.send_text(question)
        pcm, transcript = [], ""
        async for e in rt.events():
            if e["type"] == "response.output_audio.delta":
                pcm.append(base64.b64decode(e["delta"]))
            elif e["type"] == "response.done":
                transcript = e["response"]["output"][0]["content"][0]["transcript"]
        await rt.close()
        audio = np.frombuffer(b"".join(pcm), dtype="<i2")
        heard = await asyncio.to_thread(recognise, audio, RATE)
        rows.append({"question": question, "answer": transcript, "recognised": heard,
                     "wer": word_error_rate(transcript, heard)})
    return rows


async def _series(server, model: str, turns: list) -> list[dict]:
    rows = []
    for k, (audio, end_s, text) in enumerate(turns):
        row = await timed_turn(server, model, audio, end_s, text)
        rows.append(row)
        print(f"  {model:12} turn {k + 1}/{len(turns)}: voice-to-voice {row['voice_to_voice_ms']:6.0f} ms "
              f"(VAD wait {row['vad_wait_ms']:4.0f} ms)", file=sys.stderr, flush=True)
    return rows


def run(quick: bool = False) -> dict:
    turns = class_turns(2 if quick else 6)
    print(f"realtime benchmark: {len(turns)} turns x 2 models, streamed at real-time pace", file=sys.stderr)
    with ServerProcess(["serve", "--port", "0"]) as proc:
        server = ServerAddress(proc.url)
        series = {model: asyncio.run(_series(server, model, turns)) for model in ("gpt-realtime", "instant")}
    with ServerProcess(["serve", "--port", "0", "--time-scale", "0.02"]) as proc:     # fast: whole answers
        round_trip = asyncio.run(_answer_round_trip(ServerAddress(proc.url), [text for _, _, text in turns[:3]]))
    parts = ("voice_to_voice_ms", "vad_wait_ms", "to_response_ms", "to_first_audio_ms", "transcription_ms")
    summary = {model: {p: summarize((r[p] for r in rows), digits=1) for p in parts} for model, rows in series.items()}
    overhead = [r["voice_to_voice_ms"] - r["vad_wait_ms"] for r in series["instant"]]
    p95 = float(np.percentile(overhead, 95))
    wers = [r["input_wer"] for rows in series.values() for r in rows if r["input_wer"] is not None]
    answer_wers = [r["wer"] for r in round_trip]
    return {
        "benchmark": "realtime", "description": __doc__.strip().splitlines()[0],
        "setup": {"turns": len(turns), "chunk_ms": CHUNK_MS, "silence_duration_ms": SILENCE_MS, "cpus": os.cpu_count(),
                  "server": "labkit serve in its own process"},
        "turns": series, "summary": summary, "answer_round_trip": round_trip,
        "emulator_overhead_ms": {"values": [round(x, 1) for x in overhead], "p95": round(p95, 1),
                                 "target_p95_under_ms": 100, "met": p95 < 100},
        "word_error_rate": {"input_transcription_mean": round(float(np.mean(wers)), 3) if wers else None,
                            "answer_round_trip_mean": round(float(np.mean(answer_wers)), 3) if answer_wers else None},
    }
