"""Self-checking exercises: a notebook cell calls ``check("02.parser", my_answer)``.

An unanswered exercise (the answer is still ``...``) prints what to do; a wrong answer prints why
it is wrong, with a hint; a right one says so. None of them raise, so "Run All" always reaches the
end of a chapter. ``tests/test_exercises.py`` runs every checker with a right and a wrong answer,
so each one is known to accept correct work and to reject the usual mistakes.
"""

from __future__ import annotations

import ast
import inspect
import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["check", "Result", "EXERCISES"]


@dataclass(frozen=True)
class Result:
    ok: bool | None           # None: not attempted yet
    message: str

    def _repr_markdown_(self) -> str:
        icon = {True: "✅", False: "❌ Not yet:", None: "✏️"}[self.ok]
        return f"{icon} {self.message}"

    def __repr__(self) -> str:
        return self._repr_markdown_()

    def __bool__(self) -> bool:
        return bool(self.ok)


EXERCISES: dict[str, Callable[..., Result]] = {}


def exercise(name: str):
    def register(fn):
        EXERCISES[name] = fn
        return fn
    return register


def check(name: str, answer, **context) -> Result:
    """Check ``answer`` for exercise ``name``; returns a :class:`Result` that renders as one line."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; known: {', '.join(sorted(EXERCISES))}")
    if answer is ... or is_unwritten_function(answer):
        return Result(None, "Not attempted yet: replace the `...` with your answer and run the cell again.")
    try:
        return EXERCISES[name](answer, **context)
    except Exception as e:          # the learner's code may raise anything; say what, do not crash
        return Result(False, f"Your answer raised {e.__class__.__name__}: {e}")


def is_unwritten_function(answer) -> bool:
    """True for a function whose body is still only ``...`` (comments and a docstring aside)."""
    if not inspect.isfunction(answer):
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(answer)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)) else []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]                                   # a docstring
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and body[0].value.value is Ellipsis


def _ok(message: str) -> Result:
    return Result(True, message)


def _no(message: str) -> Result:
    return Result(False, message)


# ----------------------------------------------------------------------------- chapter 00

@exercise("00.finish_reason")
def _finish_reason(answer) -> Result:
    if answer == "length":
        return _ok("Right: the model stopped because max_tokens ran out, and says so with 'length'.")
    if answer == "stop":
        return _no("'stop' means the answer ended naturally. Look at the last chunk when max_tokens is small.")
    return _no("finish_reason is a string from the last chunk with choices, e.g. chunk.choices[0].finish_reason.")


@exercise("00.chunks_vs_usage")
def _chunks_vs_usage(answer, *, expected: int) -> Result:
    if answer == expected:
        return _ok(f"Right: {expected} content chunks, one per token, matching usage.completion_tokens.")
    return _no(f"Count only chunks whose choices[0].delta.content is non-empty (got {answer}).")


# ----------------------------------------------------------------------------- chapter 01

@exercise("01.perceived_speedup")
def _perceived_speedup(answer, *, total_s: float, ttft_s: float) -> Result:
    expected = total_s / ttft_s
    if isinstance(answer, (int, float)) and abs(answer - expected) <= 0.05 * expected:
        return _ok(f"Right: the first words appear {expected:.1f}x sooner when streaming.")
    if isinstance(answer, (int, float)) and abs(answer - 1 / expected) <= 0.05 / expected:
        return _no("You divided the other way round: how many times *sooner* does the user see text?")
    return _no("Divide the non-streamed total time by the streamed time to first token.")


# ----------------------------------------------------------------------------- chapter 02

_PARSER_CASES = [
    b"data: hello\n\n",
    b"data: a\ndata: b\n\n",
    b": keep-alive\n\ndata: x\n\n",
    b"event: token\ndata: {\"n\": 1}\n\n",
    b"data:no-space\r\n\r\n",
    b"data: one\n\ndata: two\n\n",
    b"event: ping\n\n",
]


@exercise("02.parser")
def _parser(answer) -> Result:
    from .protocol.sse import SSEDecoder

    if not callable(answer):
        return _no("Pass your function itself (no parentheses): check('02.parser', parse_sse).")
    for raw in _PARSER_CASES:
        expected = [e.data for e in SSEDecoder().feed(raw)]
        got = answer(raw)
        if got != expected:
            return _no(f"For {raw!r} the events' data should be {expected}, your parser gave {got}.")
    return _ok(f"Your parser agrees with labkit's on all {len(_PARSER_CASES)} tricky inputs.")


@exercise("02.header")
def _header(answer) -> Result:
    if isinstance(answer, str) and answer.strip().lower() == "x-accel-buffering":
        return _ok("Right: X-Accel-Buffering: no asks nginx to pass each event through at once.")
    if isinstance(answer, str) and answer.strip().lower() == "cache-control":
        return _no("Cache-Control stops caches from storing the stream; which header speaks to nginx's buffering?")
    return _no("It is one of the headers the SSE endpoint sets. Look at the response headers above.")


# ----------------------------------------------------------------------------- chapter 03

@exercise("03.reassemble")
def _reassemble(answer) -> Result:
    if not callable(answer):
        return _no("Pass your function itself: check('03.reassemble', reassemble).")
    rng = random.Random(3)
    tokens = [{"seq": i, "content": w} for i, w in enumerate(["Hel", "lo", ",", " wor", "ld", "!"])]
    shuffled = tokens[:]
    rng.shuffle(shuffled)
    text, missing = answer(shuffled)
    if (text, list(missing)) != ("Hello, world!", []):
        return _no(f"In-order reassembly of a shuffled stream should give ('Hello, world!', []), got {(text, missing)}.")
    gappy = [t for t in shuffled if t["seq"] not in (2, 4)]
    text, missing = answer(gappy + [tokens[0]])        # a duplicate, too
    if list(missing) != [2, 4]:
        return _no(f"With tokens 2 and 4 lost, the missing list should be [2, 4]; got {list(missing)}.")
    if text != "Hello wor!":
        return _no(f"Keep what arrived, in order, each once: expected 'Hello wor!', got {text!r}.")
    return _ok("Right: ordered by seq, duplicates ignored, gaps reported.")


@exercise("03.delivered")
def _delivered(answer, *, expected: int) -> Result:
    if answer == expected:
        return _ok(f"Right: only {expected} of the members got the message before the broadcast loop raised.")
    return _no("Count the FakeSocket objects whose .received list is non-empty after the tutorial's broadcast.")


# ----------------------------------------------------------------------------- chapter 04

@exercise("04.clock")
def _clock(answer) -> Result:
    if isinstance(answer, (int, float)) and answer == 1000:
        return _ok("Right: the clock only counts buffered (loud) chunks, so silence never moves it past 1000 ms.")
    if isinstance(answer, (int, float)) and answer in (5000, 4000, 3000):
        return _no("That is how much audio was fed. The tutorial's clock counts something else: look at how it computes current_time_ms.")
    return _no("Compute current_time_ms the tutorial's way: len(speech_buffer) * chunk bytes * 1000 / (sample_rate * 2).")


@exercise("04.threshold")
def _threshold(answer) -> Result:
    from .speechdata import condition_audio, load_clean
    from .vad import VADConfig
    from .vadeval import DEFAULT_SEGMENTATION, LabkitDetector, score

    if not isinstance(answer, (int, float)) or isinstance(answer, bool) or not 0 < answer <= 1:
        return _no("The threshold is an RMS level between 0 and 1, e.g. 0.02.")
    clean, utterances = load_clean()
    mixture, _ = condition_audio("white", 10, clean, utterances)
    result = score(LabkitDetector(VADConfig(method="rms", frame_ms=10, threshold=float(answer),
                                                  **DEFAULT_SEGMENTATION)).run(mixture),
                   utterances, mixture.size)
    if result["f1"] >= 0.9:
        return _ok(f"F1 = {result['f1']:.3f} at 10 dB white noise with threshold {answer}.")
    if result["recall"] > 0.99:
        return _no(f"F1 = {result['f1']:.3f}: everything is speech. The *stop* threshold (half of this one) is "
                   "below the noise, so speech never ends. Go higher.")
    return _no(f"F1 = {result['f1']:.3f} (recall {result['recall']:.2f}): too high, quiet speech is missed. Go lower.")


# ----------------------------------------------------------------------------- chapter 05

@exercise("05.vad_wait")
def _vad_wait(answer, *, audio_end_ms: int, true_end_ms: float) -> Result:
    expected = audio_end_ms - true_end_ms
    if isinstance(answer, (int, float)) and abs(answer - expected) <= 1:
        return _ok(f"Right: {expected:.0f} ms of the wait was the server making sure you had stopped "
                   "(silence_duration_ms, to a frame).")
    if isinstance(answer, (int, float)) and abs(answer + expected) <= 1:
        return _no("The sign is reversed: the server's end comes after the true end.")
    return _no("Subtract the true end of speech (from the labels, in ms) from the event's audio_end_ms.")


@exercise("05.cancel_reason")
def _cancel_reason(answer) -> Result:
    if answer == "turn_detected":
        return _ok("Right: server VAD heard you start talking and cancelled the answer (interrupt_response).")
    if answer == "client_cancelled":
        return _no("That is the reason when the client sends response.cancel. Here nobody sent it.")
    return _no("Read response.done's response.status_details.reason.")


# ----------------------------------------------------------------------------- chapter 05b

@exercise("05b.truncate_ms")
def _truncate_ms(answer, *, played: int, rate: int = 24_000, context_rate: int = 48_000) -> Result:
    expected = played * 1000 // rate
    if answer == expected:
        return _ok(f"Right: {played} samples at {rate} Hz are {expected} ms of the item's audio, the point the "
                   "server cuts the item (and its transcript) at.")
    if isinstance(answer, (int, float)) and abs(answer - played * 1000 / context_rate) < 1:
        return _no("That uses the AudioContext's rate. The played position counts the item's own 24 kHz samples.")
    if isinstance(answer, float):
        return _no("audio_end_ms is a whole number of milliseconds: round down (//).")
    return _no("audio_end_ms = played samples x 1000 / 24000, rounded down.")


@exercise("05b.upstream_rate")
def _upstream_rate(answer) -> Result:
    if answer == 64_000:
        return _ok("Right: 24,000 samples x 2 bytes = 48,000 bytes/s of PCM16, and base64 adds a third: 64,000 "
                   "bytes/s (about 512 kbit/s) before the JSON around it. WebRTC's Opus needs ~30 kbit/s.")
    if answer == 48_000:
        return _no("That is the raw PCM16. The WebSocket carries it base64-encoded inside JSON.")
    return _no("Samples per second x bytes per sample, then x 4/3 for base64.")


@exercise("05b.silence_cost")
def _silence_cost(answer, *, before_ms: int, after_ms: int) -> Result:
    expected = after_ms - before_ms
    if isinstance(answer, (int, float)) and abs(answer - expected) <= 1:
        return _ok(f"Right: every turn waits {expected} ms longer before the server even starts answering; the "
                   "other parts do not change.")
    if isinstance(answer, (int, float)) and abs(answer) <= 1:
        return _no("The silence wait is part of voice-to-voice latency: the server answers only once it is sure.")
    return _no("Only the 'silence wait' part moves, by the change in silence_duration_ms.")
# ----------------------------------------------------------------------------- chapter 05c

@exercise("05c.opus_payload_type")
def _opus_payload_type(answer, *, answer_sdp: str) -> Result:
    import re

    found = re.search(r"^a=rtpmap:(\d+) opus/48000/2", answer_sdp, re.M | re.I)
    expected = int(found.group(1)) if found else None
    if answer == expected:
        return _ok(f"Right: payload type {expected} is Opus (48 kHz, 2 channels): every RTP packet of the call "
                   "carries that number in its header.")
    if isinstance(answer, str) and answer.isdigit() and int(answer) == expected:
        return _no("The right number, but as a string: give it as an int.")
    return _no("Find the answer's `a=rtpmap:<payload type> opus/48000/2` line and give its number (an int).")


@exercise("05c.on_time_fraction")
def _on_time_fraction(answer, *, row: dict) -> Result:
    total = sum(d for _, d, _ in row["timeline"])
    on_time = sum(d for _, d, s in row["timeline"] if s == "on time")
    expected = on_time / total if total else 1.0
    if isinstance(answer, (int, float)) and abs(answer - expected) <= 1e-3:
        return _ok(f"Right: {expected:.1%} of the audio was there when the player needed it "
                   f"(the report says {row['on_time_fraction']:.1%}).")
    if isinstance(answer, (int, float)) and total and abs(answer - on_time / len(row["timeline"])) <= 1e-3:
        return _no("Weigh each piece by its duration (its second field), not by counting pieces.")
    if isinstance(answer, (int, float)) and abs(answer - 100 * expected) <= 0.1:
        return _no("A fraction between 0 and 1, please, not a percentage.")
    return _no("Sum the durations of the pieces whose status is 'on time' and divide by the total duration.")


# ----------------------------------------------------------------------------- chapter 06

@exercise("06.tpot")
def _tpot(answer, *, ttft_s: float, e2e_s: float, n_tokens: int) -> Result:
    expected = (e2e_s - ttft_s) / (n_tokens - 1)
    if isinstance(answer, (int, float)) and abs(answer - expected) <= 1e-6 + 1e-3 * expected:
        return _ok(f"Right: {1000 * expected:.1f} ms per token once the stream has started.")
    if isinstance(answer, (int, float)) and abs(answer - e2e_s / n_tokens) <= 1e-3 * e2e_s:
        return _no("That divides the whole time, TTFT included, by the tokens: the tutorial's mistake.")
    return _no("TPOT = (E2E - TTFT) / (n - 1): the time after the first token, over the gaps.")


@exercise("06.select_model")
def _select(answer, *, table: list, ttft_budget_ms: float) -> Result:
    from .latency.experiments import select_model

    expected = select_model(table, ttft_budget_ms=ttft_budget_ms)
    if answer == expected and expected is None:
        return _ok(f"Right: in this table no model's measured p90 TTFT fits {ttft_budget_ms:.0f} ms (a busy "
                   "machine slows every request: measure again and the answer may change).")
    if answer == expected:
        return _ok(f"Right: {expected} is the largest model whose measured p90 TTFT fits {ttft_budget_ms:.0f} ms.")
    return _no("Read the ttft_ms_p90 column: the largest model (the table is small to large) at or under the "
               "budget, or None if none is.")


# ----------------------------------------------------------------------------- chapter 07

def _backoff_ceiling(attempt: int) -> float:
    return min(5.0, 0.1 * 2 ** (attempt - 1))


@exercise("07.backoff")
def _backoff(answer) -> Result:
    """Any jitter inside [0, ceiling] is right: AWS's *full jitter* uniform(0, ceiling) and *equal
    jitter* ceiling/2 + uniform(0, ceiling/2) both are; the message names the one written."""
    random.seed(7)
    samples = {n: [answer(n) for _ in range(200)] for n in range(1, 12)}
    for n, values in samples.items():
        ceiling = _backoff_ceiling(n)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return _no("backoff(attempt) must return a number of seconds.")
        if min(values) < -1e-9 or max(values) > ceiling + 1e-9:
            return _no(f"for attempt {n} the delay must lie between 0 and the ceiling min(5, 0.1 × 2^(n-1)) = "
                       f"{ceiling:.3g} s, but yours ranged from {min(values):.3g} to {max(values):.3g} s.")
    if len({round(v, 9) for v in samples[3]}) < 20:
        return _no("every client gets the same delay, so they all reconnect in lockstep. Add jitter: "
                   "random.uniform(0, ceiling) (full jitter) or ceiling/2 + random.uniform(0, ceiling/2) (equal jitter).")
    lowest = min(min(v) / _backoff_ceiling(n) for n, v in samples.items())
    kind = "full jitter (AWS's uniform(0, ceiling))" if lowest < 0.25 else \
        "equal jitter (half the ceiling, plus a random half)" if lowest >= 0.49 else "jitter"
    return _ok(f"Right: growing, capped at 5 s, with {kind}, so a restarted server is not hit by everyone at once.")


@exercise("07.resume_header")
def _resume_header(answer) -> Result:
    if isinstance(answer, str) and answer.strip().lower() == "last-event-id":
        return _ok("Right: EventSource sends Last-Event-ID with the id of the last event it received.")
    return _no("Look at what the resuming client and the browser send on a reconnect (section 2).")


# ----------------------------------------------------------------------------- chapter 08

@exercise("08.newest")
def _newest(answer) -> Result:
    cases = [(["999-0", "1000-0", "1000-3"], "1000-3"), (["5-10", "5-9"], "5-10"), (["42-0"], "42-0")]
    for ids, expected in cases:
        got = answer(list(ids))
        if got != expected:
            hint = " Compare (milliseconds, counter) as numbers, not the strings." if got in ids else ""
            return _no(f"newest({ids}) should be {expected!r}, got {got!r}.{hint}")
    return _ok("Right: ids order by (milliseconds, counter), compared as numbers.")


@exercise("08.freeze")
def _freeze(answer, *, measured: float) -> Result:
    if isinstance(answer, (int, float)) and abs(answer - measured) <= 0.01 * measured + 1:
        return _ok(f"Right: {measured:.0f} ms, the rest of the AI's answer. Nobody else was served meanwhile.")
    return _no("Read join_ms in the first row of `rows` (the tutorial's server).")
