"""Benchmark: a class speaking at once: N Realtime sessions, each speaking one utterance together.

``python -m labkit bench realtime --concurrency 1,5,10,20,40``. At each level, N fresh sessions (server
VAD, input transcription on) are set up, then all start streaming one utterance of the lab's speech set
at real-time pace at the same moment (the worst case for a class: everyone stops talking together).
Per level: voice-to-voice latency (true end of speech to the first audio delta) p50/p95, the transcript's
delay after the true end of speech (the VAD's 500 ms silence included) p50/p95, how many sessions were
answered, and the CPU seconds the server (with its recogniser and synthesiser processes) spent.

Targets (issue 18): voice-to-voice p95 at 20 sessions <= 1.5x a single session's; transcripts p95 <=
1.5 s after the end of speech at 20; every session answered. Beside them, what recognition and synthesis
cost here (CPU seconds per utterance against its length), which says how many utterances ending
together this machine's cores can recognise within the 1.5 s budget.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import numpy as np

from .cpuprofile import tree_cpu_s
from .realtime import SILENCE_MS, ServerAddress, class_turns, timed_turn

__all__ = ["LEVELS", "TARGET_LEVEL", "speak_together", "summarize_level", "judge", "cpu_costs", "run", "plot", "plot_levels",
           "transcript_floor_ms", "compare_recognition_settings", "tuning_set_turns"]

LEVELS = (1, 5, 10, 20, 40)
TARGET_LEVEL = 20
V2V_RATIO_MAX = 1.5
TRANSCRIPT_P95_MAX_MS = 1500


class _StartTogether:
    """A start line: every session waits, set up, until all ``n`` are ready (or 60 s have passed)."""

    def __init__(self, n: int):
        self.n, self.ready, self.go = n, 0, asyncio.Event()

    async def wait(self) -> None:
        self.ready += 1
        if self.ready >= self.n:
            self.go.set()
        await asyncio.wait_for(self.go.wait(), 60)


async def speak_together(server, n: int, model: str = "gpt-realtime", turns: list | None = None) -> list:
    """``n`` sessions on ``server`` (its ``http://`` URL, or anything with ``.ws_url``) speak one utterance
    each, starting together.

    Returns one row per session: the timings of :func:`labkit.bench.realtime.timed_turn`, or the exception
    that session ended with (it was not answered)."""
    server = ServerAddress(server) if isinstance(server, str) else server
    turns = turns if turns is not None else class_turns(n)
    start = _StartTogether(n)
    jobs = [timed_turn(server, model, audio, end_s, text, start) for audio, end_s, text in turns[:n]]
    return list(await asyncio.gather(*jobs, return_exceptions=True))


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summarize_level(n: int, rows: list) -> dict:
    """One level's figures from :func:`speak_together`'s rows."""
    done = [r for r in rows if isinstance(r, dict)]
    v2v = [r["voice_to_voice_ms"] for r in done]
    heard = [r["transcript_after_speech_ms"] for r in done if r.get("transcript_after_speech_ms") is not None]
    return {"sessions": n, "answered": len(done),
            "voice_to_voice_ms": {"p50": _p(v2v, 50), "p95": _p(v2v, 95), "max": _p(v2v, 100)},
            "transcript_after_speech_ms": {"count": len(heard), "p50": _p(heard, 50), "p95": _p(heard, 95),
                                           "max": _p(heard, 100)},
            "transcriptions_failed": sum(1 for r in done if r.get("transcription_failed")),
            # how late this (shared-CPU) client sent the end of speech; the latencies start from then
            "client_send_lag_ms": {"p95": _p([r.get("client_send_lag_ms", 0.0) for r in done], 95)},
            "errors": sorted({f"{type(r).__name__}: {r}" for r in rows if not isinstance(r, dict)})[:3]}


def judge(levels: list[dict], target_level: int = TARGET_LEVEL) -> dict:
    """The three targets, each with its measured value and met or not (None where a level is missing)."""
    by_n = {row["sessions"]: row for row in levels}
    single, many = by_n.get(1), by_n.get(target_level)
    ratio = None
    if single and many and single["voice_to_voice_ms"]["p95"] and many["voice_to_voice_ms"]["p95"] is not None:
        ratio = round(many["voice_to_voice_ms"]["p95"] / single["voice_to_voice_ms"]["p95"], 2)
    transcript = many["transcript_after_speech_ms"] if many else None
    every_transcript = bool(many) and transcript["count"] == many["sessions"]   # a failed one is not "fast"
    return {
        f"voice-to-voice p95 at {target_level} sessions <= {V2V_RATIO_MAX}x a single session's": {
            "ratio": ratio, "met": None if ratio is None else ratio <= V2V_RATIO_MAX},
        f"transcript p95 <= {TRANSCRIPT_P95_MAX_MS} ms after end of speech at {target_level} sessions": {
            "value": transcript["p95"] if transcript else None,
            "transcribed": f"{transcript['count']}/{many['sessions']}" if many else None,
            "met": None if not many else (every_transcript and transcript["p95"] <= TRANSCRIPT_P95_MAX_MS)},
        "every session answered": {"value": f"{sum(r['answered'] for r in levels)}/{sum(r['sessions'] for r in levels)}",
                                   "met": all(r["answered"] == r["sessions"] for r in levels)},
    }


def tuning_set_turns() -> list[tuple[np.ndarray, float, str]]:
    """Every utterance of the clean tuning speech set (:mod:`labkit.speechsets`: other voices, speaking
    rates and levels than the sessions' audio), as ``(audio at 16 kHz with 0.5 s before and 0.3 s after,
    speech end, text)``. Its sentences are the lab's, which the recogniser's vocabulary is built from
    (text only: no audio was used to build anything); the held-out set's sentences are not in it."""
    from ..speechdata import SAMPLE_RATE
    from ..speechsets import condition, load

    turns = []
    for audio, _noise, utterances in condition(load("tuning"), "clean", None):
        for u in utterances:
            start = max(0, round((u.start_s - 0.5) * SAMPLE_RATE))
            turns.append((audio[start: round((u.end_s + 0.3) * SAMPLE_RATE)], u.end_s - start / SAMPLE_RATE, u.text))
    return turns


def compare_recognition_settings(sets: dict[str, tuple[list, int]], settings: dict[str, dict]) -> dict:
    """CPU seconds per utterance and word error rate of each pocketsphinx ``settings`` on each speech set
    (``{name: (turns, sample rate)}``), measured in one run, the settings taking turns utterance by
    utterance (so a busy moment costs them alike)."""
    from ..audio._sphinx import normalise, recognise
    from .realtime import word_error_rate

    out = {}
    for set_name, (turns, rate) in sets.items():
        cpu = {name: 0.0 for name in settings}
        errors = {name: 0.0 for name in settings}
        words = 0
        for name, chosen in settings.items():
            recognise(np.zeros(1600, np.int16), 16_000, chosen)   # build each decoder first (not an utterance)
        for audio, _end_s, text in turns:
            n = len(normalise(text).split())
            words += n
            for name, chosen in settings.items():
                t0 = time.process_time()
                heard = recognise(audio, rate, chosen)
                cpu[name] += time.process_time() - t0
                errors[name] += word_error_rate(text, heard) * n
        out[set_name] = {"utterances": len(turns), "speech_s": round(sum(a.size for a, _e, _t in turns) / rate, 1),
                         **{name: {"cpu_s_per_utterance": round(cpu[name] / len(turns), 4),
                                   "word_error_rate": round(errors[name] / max(1, words), 4)} for name in settings}}
    return out


def cpu_costs(turns: list, answers: list[str], tuning_set: bool = True) -> dict:
    """CPU seconds per utterance of recognition and of synthesis (by sentence) here, against real time,
    and what that allows on this machine's cores. Recognition is measured with the server's settings
    beside pocketsphinx's defaults (on ``turns`` and, with ``tuning_set``, :func:`tuning_set_turns`)."""
    from ..audio._sphinx import DECODER_SETTINGS, DEFAULT_SETTINGS
    from ..audio.sentences import split_sentences
    from ..audio.tts import ESPEAK_RATE, synthesize
    from .realtime import RATE

    sets = {"sessions' utterances": (turns, RATE)}
    if tuning_set:
        sets["tuning speech set, clean"] = (tuning_set_turns(), 16_000)
    compared = compare_recognition_settings(sets, {"lab": DECODER_SETTINGS, "pocketsphinx defaults": DEFAULT_SETTINGS})
    asr_cpu = compared["sessions' utterances"]["lab"]["cpu_s_per_utterance"]
    speech_s = compared["sessions' utterances"]["speech_s"]
    synthesize("warm up")
    tts, first = [], []
    for answer in answers:
        cpu = time.process_time()
        seconds = 0.0
        for k, sentence in enumerate(split_sentences(answer)):
            seconds += synthesize(sentence).size / ESPEAK_RATE
            if k == 0:
                first.append(time.process_time() - cpu)
        tts.append((time.process_time() - cpu, seconds))
    stall = asyncio.run(_loop_stall_while_synthesizing(answers))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    budget_s = (TRANSCRIPT_P95_MAX_MS - SILENCE_MS) / 1000       # what is left after the VAD's silence
    left = cpu_left_at_end(turns, RATE)
    return {
        "cores": cores,
        "recognition_cpu_s_per_utterance": round(asr_cpu, 3),
        "recognition_x_real_time": round(asr_cpu * len(turns) / speech_s, 3),
        "recognition_settings": {"lab": DECODER_SETTINGS, "pocketsphinx defaults": DEFAULT_SETTINGS,
                                 "measured": compared},
        "synthesis_cpu_s_per_answer": round(float(np.mean([c for c, _ in tts])), 4),
        "synthesis_cpu_s_first_sentence": round(float(np.mean(first)), 4),
        "synthesis_x_real_time": round(sum(c for c, _ in tts) / sum(d for _, d in tts), 4),
        "synthesis_event_loop_stall_ms": stall,
        "recognition_cpu_s_left_at_end": round(left, 4),
        "utterances_ending_together_recognisable_within_budget": int(cores * budget_s / max(left, 1e-6)),
        "utterances_ending_together_recognisable_within_budget_decoded_whole": int(cores * budget_s / asr_cpu),
        "note": (f"the server recognises while the user speaks: at the end of speech {left:.3f} CPU s per utterance "
                 f"is left (its last 0.5 s and the end of the search), against {asr_cpu:.2f} CPU s to decode it whole "
                 f"(the fallback when no recogniser has room); {cores} cores x {budget_s:.1f} s (the 1.5 s target "
                 f"minus the {SILENCE_MS} ms VAD silence) / that; with every core free for it, which a shared "
                 "machine running the clients too never is"),
    }


def transcript_floor_ms(sessions: int, costs: dict) -> float:
    """The soonest 95% of ``sessions`` utterances ending together can be transcribed here, after the end
    of speech: the VAD's silence, then what is left of 95% of them to decode with every core doing
    nothing else. The server recognises while the user speaks, so what is left is the end of each
    utterance (``recognition_cpu_s_left_at_end``), not all of it (``recognition_cpu_s_per_utterance``,
    the whole-utterance fallback's cost, when no recogniser has room for another stream)."""
    share = int(np.ceil(0.95 * sessions))
    left = costs.get("recognition_cpu_s_left_at_end", costs["recognition_cpu_s_per_utterance"])
    return round(SILENCE_MS + 1000 * share * left / max(1, min(share, costs["cores"])), 0)


def cpu_left_at_end(turns: list, rate: int, tail_s: float = 0.5) -> float:
    """CPU seconds per utterance the recogniser still has to spend once the speech has ended, when it
    was fed the utterance while it was spoken: its last ``tail_s`` (the VAD's silence wait streams in
    as it passes) and finishing the search. Measured on the lab's incremental decoder, in this process."""
    from ..audio._sphinx import DECODER_SETTINGS, model_files
    from ..audio.asr_worker import Utterance, make_decoder

    decoder = make_decoder(*model_files(), DECODER_SETTINGS)
    left = 0.0
    for audio, _end_s, _text in turns:
        cut = max(0, audio.size - int(tail_s * rate))
        u = Utterance(decoder, rate)
        u.feed(audio[:cut])
        t0 = time.process_time()
        u.feed(audio[cut:])
        u.finish()
        left += time.process_time() - t0
    return left / max(1, len(turns))


def model_answers(n: int) -> list[str]:
    """The simulated model's first ``n`` answers (what the sessions hear back)."""
    import json
    from pathlib import Path

    from ..model.responder import KNOWLEDGE_PATH

    topics = json.loads(Path(KNOWLEDGE_PATH).read_text())["topics"]
    return [a for t in topics for a in t["answers"]][:n]


async def _loop_stall_while_synthesizing(answers: list[str]) -> dict:
    """How long the event loop is held while synthesis runs on its thread (espeak-ng releases the GIL;
    its audio callback takes it briefly): the longest gap of a 1 ms ticker, and the ticker alone."""
    from ..audio.sentences import split_sentences
    from ..audio.tts import synthesize_words_async

    async def longest_gap(work) -> float:
        loop, gaps, done = asyncio.get_running_loop(), [0.0], asyncio.Event()

        async def tick():
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = loop.time()
                gaps.append(now - last)
                last = now
        ticker = asyncio.ensure_future(tick())
        await work()
        done.set()
        await ticker
        return round(1000 * max(gaps), 1)

    async def synthesize_all():
        for answer in answers:
            for sentence in split_sentences(answer):
                await synthesize_words_async(sentence, session="bench")

    async def idle():
        await asyncio.sleep(0.3)
    return {"max_gap_while_synthesizing": await longest_gap(synthesize_all), "max_gap_idle": await longest_gap(idle)}


def _load() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages: on a shared machine, what else was running."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run(quick: bool = False, levels: tuple[int, ...] = LEVELS) -> dict:
    from ..server.process import ServerProcess

    levels = tuple(sorted(set(levels)))
    print(f"realtime concurrency benchmark: levels {list(levels)}, sessions starting together", file=sys.stderr)
    results = []
    with ServerProcess(["serve", "--port", "0"]) as proc:
        server = ServerAddress(proc.url)
        asyncio.run(speak_together(server, 2 if quick else 4))   # warm-up: every worker process starts
        for n in levels:
            cpu0, client0, load = tree_cpu_s(proc.proc.pid), time.process_time(), _load()
            t0 = time.perf_counter()
            rows = asyncio.run(speak_together(server, n))
            wall = time.perf_counter() - t0
            level = summarize_level(n, rows)
            server_cpu, recogniser_cpu = tree_cpu_s(proc.proc.pid)
            level["server_cpu_s"] = round(server_cpu - cpu0[0], 2)            # event loop, VAD, synthesis
            level["recognisers_cpu_s"] = round(recogniser_cpu - cpu0[1], 2)
            level["client_cpu_s"] = round(time.process_time() - client0, 2)   # the sessions' own side
            level["load_average_1min_before"] = load[0] if load else None
            level["wall_s"] = round(wall, 2)
            results.append(level)
            print(f"  {n:3} sessions: answered {level['answered']}/{n}, voice-to-voice p50/p95 "
                  f"{level['voice_to_voice_ms']['p50']}/{level['voice_to_voice_ms']['p95']} ms, transcript "
                  f"p50/p95 {level['transcript_after_speech_ms']['p50']}/{level['transcript_after_speech_ms']['p95']}"
                  f" ms, CPU: server {level['server_cpu_s']} s, recognisers {level['recognisers_cpu_s']} s", file=sys.stderr, flush=True)
    costs = cpu_costs(class_turns(6 if quick else 20), model_answers(3 if quick else 8), tuning_set=not quick)
    for level in results:
        level["transcript_p95_floor_ms"] = transcript_floor_ms(level["sessions"], costs)
    return {
        "benchmark": "realtime-concurrency", "description": __doc__.strip().splitlines()[0],
        "setup": {"levels": list(levels), "silence_duration_ms": SILENCE_MS, "cpus": os.cpu_count(),
                  "model": "gpt-realtime", "start": "all sessions together",
                  "server": "labkit serve in its own process; the clients in this one",
                  "asr_workers": "one per core (the server's default)", "load_average_at_start": _load()},
        "levels": results, "targets": judge(results), "cost": costs,
    }


def plot_levels(levels: list[dict], axes=None, title: str = ""):
    """The curve: voice-to-voice and transcript delay (p50, p95) against sessions, with the targets.
    Draws on two matplotlib ``axes`` (new ones if None); returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    a, b = axes
    n = [r["sessions"] for r in levels]
    for ax, key, name in ((a, "voice_to_voice_ms", "voice-to-voice"),
                          (b, "transcript_after_speech_ms", "transcript after end of speech")):
        for q, style in (("p50", "o-"), ("p95", "s--")):
            ax.plot(n, [r[key][q] for r in levels], style, label=q)
        ax.set_xlabel("sessions speaking together")
        ax.set_ylabel("ms (log scale)")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    single = next((r for r in levels if r["sessions"] == 1), None)
    if single and single["voice_to_voice_ms"]["p95"]:
        a.axhline(V2V_RATIO_MAX * single["voice_to_voice_ms"]["p95"], color="red", lw=0.8,
                  label=f"target at {TARGET_LEVEL}: {V2V_RATIO_MAX}x single p95")
    b.axhline(TRANSCRIPT_P95_MAX_MS, color="red", lw=0.8, label=f"target p95 at {TARGET_LEVEL}")
    if all("transcript_p95_floor_ms" in r for r in levels):
        b.plot(n, [r["transcript_p95_floor_ms"] for r in levels], ":", color="gray",
               label="p95 floor: VAD wait + recognition CPU / cores")
    a.legend()
    b.legend()
    fig = a.figure
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(results: dict, path: str) -> None:
    """The benchmark's curve as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_levels(results["levels"], title=f"{results['setup']['cpus']} cores: sessions each speaking one "
                                                f"utterance at once")
    fig.savefig(path, dpi=90)
    plt.close(fig)
