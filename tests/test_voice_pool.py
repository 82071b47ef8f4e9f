"""The speech worker pools, for real: threads, the recogniser's processes, the server speaking by sentence.
Order and fairness are judged by the order of events, the bounds by counts; nothing is timed."""

import asyncio
import json
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from labkit.audio.pool import FairPool, QueueFull
from labkit.realtime.client import RealtimeClient


def _gate():
    opened = threading.Event()

    def blocker():
        assert opened.wait(30)
        return "blocker"
    return opened, blocker


def test_the_pool_takes_sessions_in_turn():
    pool = FairPool("test-fair", slots=1, max_pending=10)
    opened, blocker = _gate()
    ran = []
    first = pool.submit("x", blocker)
    jobs = [pool.submit(s, ran.append, s + str(k)) for s, k in [("a", 1), ("a", 2), ("a", 3), ("b", 1)]]
    opened.set()
    assert first.result(30) == "blocker"
    for job in jobs:
        job.result(30)
    assert ran == ["a1", "b1", "a2", "a3"]
    assert pool.pending == 0


def test_a_full_pool_refuses_at_once_and_has_room_after():
    pool = FairPool("test-bounded", slots=1, max_pending=2)
    opened, blocker = _gate()
    running, waiting = pool.submit("a", blocker), pool.submit("b", lambda: "b")
    with pytest.raises(QueueFull):
        pool.submit("c", lambda: "c")
    opened.set()
    assert (running.result(30), waiting.result(30)) == ("blocker", "b")
    assert pool.submit("c", lambda: "c").result(30) == "c"


def test_an_error_reaches_its_caller_and_frees_the_slot():
    pool = FairPool("test-error", slots=1, max_pending=2)

    def broken():
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        pool.submit("a", broken).result(30)
    assert pool.submit("a", lambda: 7).result(30) == 7 and pool.pending == 0


async def test_a_cancelled_wait_withdraws_the_job_before_it_runs():
    pool = FairPool("test-cancel", slots=1, max_pending=3)
    opened, blocker = _gate()
    ran = []
    running = pool.submit("a", blocker)
    waiter = asyncio.ensure_future(pool.run("b", ran.append, "b"))
    await asyncio.sleep(0)
    assert pool.pending == 2
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.pending == 1                      # its place was given back at once
    opened.set()
    assert await asyncio.wrap_future(running) == "blocker"
    assert await pool.run("c", ran.append, "c") is None
    assert ran == ["c"]                           # the withdrawn job never ran


async def test_one_session_cannot_fill_the_recognisers_queue(monkeypatch):
    from labkit.audio import asr

    opened = threading.Event()
    monkeypatch.setattr(asr._worker, "run", lambda audio, rate: opened.wait(30) and "hello")
    monkeypatch.setattr(asr, "_check_available", lambda: None)
    audio = np.zeros(2400, np.int16)
    mine = [asyncio.ensure_future(asr.transcribe_async(audio, 24_000, session="greedy"))
            for _ in range(asr.MAX_PENDING_PER_SESSION)]
    await asyncio.sleep(0)
    try:
        with pytest.raises(asr.ASRBusy, match="for this session"):
            await asr.transcribe_async(audio, 24_000, session="greedy")
        other = asyncio.ensure_future(asr.transcribe_async(audio, 24_000, session="polite"))
    finally:
        opened.set()
    assert await asyncio.gather(*mine, other) == ["hello"] * (asr.MAX_PENDING_PER_SESSION + 1)


def test_the_recogniser_pool_has_one_process_per_core_it_may_use():
    """Judged by what a process gets, not by restating the formula: allowed one core, one recogniser
    lane; allowed every core, one per core; ``LABKIT_ASR_WORKERS`` wins over either. (One fresh
    process; the module is reloaded under each condition, which starts no recogniser.)"""
    probe = """
import importlib, json, os
os.environ.pop("LABKIT_ASR_WORKERS", None)
every = os.sched_getaffinity(0)
from labkit.audio import asr

def sizes(cores):
    os.sched_setaffinity(0, cores)
    importlib.reload(asr)
    return [asr.WORKERS, len(asr._worker.lanes), asr._pool.slots]

out = {"cores": len(every), "one core": sizes({min(every)}), "every core": sizes(every)}
os.environ["LABKIT_ASR_WORKERS"] = "3"
out["told 3, one core"] = sizes({min(every)})
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(done.stdout)
    assert got["one core"] == [1, 1, 1]
    assert got["every core"] == [got["cores"]] * 3
    assert got["told 3, one core"] == [3, 3, 3]


def test_the_recogniser_process_runs_isolated_without_labkit():
    """Started by path with -I, it never imports the labkit package (slow to import), and recognises real speech."""
    from labkit.audio import asr_worker
    from labkit.audio._sphinx import model_files, normalise
    from labkit.speechdata import SAMPLE_RATE, load_clean

    clean, utterances = load_clean()
    u = utterances[1]
    pcm = clean[int(u.start_s * SAMPLE_RATE): int(u.end_s * SAMPLE_RATE)].astype("<i2").tobytes()
    h = asr_worker.HEADER                    # begin (its sample rate), the audio in two pieces, end: one answer line
    messages = (h.pack(asr_worker.BEGIN, 7, 4) + struct.pack("<I", SAMPLE_RATE) + h.pack(asr_worker.AUDIO, 7, 3200)
                + pcm[:3200] + h.pack(asr_worker.AUDIO, 7, len(pcm) - 3200) + pcm[3200:] + h.pack(asr_worker.END, 7, 0))
    run_alone = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
                 "sys.exit(3 if any(m.split('.')[0] == 'labkit' for m in sys.modules) else 0)")
    proc = subprocess.run([sys.executable, "-I", "-c", run_alone, str(Path(asr_worker.__file__)), *model_files()],
                          input=messages, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]          # 3: it imported labkit
    assert proc.stdout.startswith(b"7 "), proc.stdout
    heard = set(normalise(proc.stdout.decode()[2:]).split())
    truth = normalise(u.text).split()
    assert len(heard & set(truth)) >= 0.7 * len(truth), (proc.stdout, proc.stderr[-500:], u.text)


async def test_synthesis_refuses_when_full(monkeypatch):
    from labkit.audio import tts

    opened = threading.Event()
    monkeypatch.setattr(tts, "synthesize_words", lambda *a: opened.wait(30) and (np.zeros(1, np.int16), []))
    monkeypatch.setattr(tts, "MAX_PENDING", 1)
    first = asyncio.ensure_future(tts.synthesize_words_async("one", session="a"))
    await asyncio.sleep(0)
    try:
        with pytest.raises(tts.TTSBusy, match="busy"):
            await tts.synthesize_words_async("two", session="b")
    finally:
        opened.set()
    assert (await first)[1] == []


async def test_the_first_audio_goes_out_while_later_sentences_wait(server, monkeypatch):
    """The reply is synthesized by sentence: its first audio delta arrives while the second sentence's
    synthesis is held back, so the first audio never waits for the whole answer."""
    from labkit.audio import tts

    real = tts.synthesize_words
    second_may_finish = threading.Event()
    asked: list[str] = []

    def gated(text, voice="en-us", words_per_minute=175):
        asked.append(text)
        if len(asked) == 2:
            assert second_may_finish.wait(30)
        return real(text, voice, words_per_minute)
    monkeypatch.setattr(tts, "synthesize_words", gated)
    try:
        async with RealtimeClient.local(server) as rt:
            await rt.send_text("hello")
            first = await rt.wait_for("response.output_audio.delta", timeout=30)
            assert first["type"] == "response.output_audio.delta"
            assert not second_may_finish.is_set()          # sentence two is not made yet (it may not be asked yet)
            second_may_finish.set()
            done = await rt.wait_for("response.done", timeout=60)
    finally:
        second_may_finish.set()
    transcript = done["response"]["output"][0]["content"][0]["transcript"]
    assert len(asked) >= 2 and "".join(asked) == transcript              # every sentence, in order, once
    deltas = [e["delta"] for _t, way, e in rt.timeline
              if way == "in" and e["type"] == "response.output_audio_transcript.delta"]
    assert "".join(deltas) == transcript
