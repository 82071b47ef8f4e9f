"""Every exercise checker accepts a right answer, rejects the usual wrong ones, and waits for `...`."""

import random

import pytest

from labkit.exercises import EXERCISES, check
from labkit.protocol.sse import SSEDecoder
from reference_answers import reference_answers


def parse_sse_right(raw: bytes) -> list[str]:
    return [e.data for e in SSEDecoder().feed(raw)]


def parse_sse_naive(raw: bytes) -> list[str]:          # the classic: split on blank lines, strip "data: "
    return [block.removeprefix("data: ") for block in raw.decode().split("\n\n") if block.startswith("data: ")]


def parse_sse_unwritten(raw: bytes) -> list[str]:
    ...   # your code here


def reassemble_right(tokens):
    by_seq = {t["seq"]: t["content"] for t in tokens}
    top = max(by_seq, default=-1)
    return "".join(by_seq[i] for i in sorted(by_seq)), [i for i in range(top + 1) if i not in by_seq]


def reassemble_unsorted(tokens):
    return "".join(t["content"] for t in tokens), []


def backoff_right(attempt):
    ceiling = min(5.0, 0.1 * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def backoff_full_jitter(attempt):                     # AWS's "Full Jitter": the textbook answer
    return random.uniform(0, min(5.0, 0.1 * 2 ** (attempt - 1)))


def backoff_no_jitter(attempt):
    return min(5.0, 0.1 * 2 ** (attempt - 1))


def backoff_uncapped(attempt):
    ceiling = 0.1 * 2 ** (attempt - 1)
    return random.uniform(ceiling / 2, ceiling)


CASES = {
    "07.backoff": ({}, backoff_right, [backoff_no_jitter, backoff_uncapped, lambda n: 1.0,
                                       lambda n: random.uniform(0, 5.0), lambda n: -backoff_right(n)]),
    "07.resume_header": ({}, "Last-Event-ID", ["X-Stream-Id", "Retry-After", None]),
    "08.newest": ({}, lambda ids: max(ids, key=lambda i: tuple(map(int, i.split("-")))), [max, min, lambda ids: ids[-1]]),
    "08.freeze": ({"measured": 812.5}, 812.5, [0.8125, 300, "812"]),
    "00.finish_reason": ({}, "length", ["stop", None, 3]),
    "00.chunks_vs_usage": ({"expected": 12}, 12, [13, 14, "12"]),
    "01.perceived_speedup": ({"total_s": 1.6, "ttft_s": 0.25}, 6.4, [0.25 / 1.6, 1.0, "6.4"]),
    "02.parser": ({}, parse_sse_right, [parse_sse_naive, lambda raw: [], "parse_sse"]),
    "02.header": ({}, "X-Accel-Buffering", ["Cache-Control", "Content-Type"]),
    "03.reassemble": ({}, reassemble_right, [reassemble_unsorted, lambda t: ("", [])]),
    "03.delivered": ({"expected": 1}, 1, [2, 3]),
    "05.vad_wait": ({"audio_end_ms": 4480, "true_end_ms": 3936.6}, 543.4, [-543.4, 500, "543"]),
    "05.cancel_reason": ({}, "turn_detected", ["client_cancelled", None]),
    "05b.truncate_ms": ({"played": 61_440}, 2560, [1280, 2560.5, 61_440]),
    "05b.upstream_rate": ({}, 64_000, [48_000, 24_000, "64000"]),
    "05b.silence_cost": ({"before_ms": 500, "after_ms": 800}, 300, [0, 800, "300"]),
    "05c.opus_payload_type": ({"answer_sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\n"},
                              96, ["96", 111, None]),
    "05c.on_time_fraction": ({"row": {"on_time_fraction": 0.75, "timeline": [(0, 100, "on time"), (100, 100, "late"),
                                                                              (200, 200, "on time")]}},
                             0.75, [2 / 3, 75, 0.5]),
    "06.tpot": ({"ttft_s": 0.5, "e2e_s": 1.5, "n_tokens": 11}, 0.1, [1.5 / 11, 1.0, "0.1"]),
    "06.select_model": ({"table": [{"model": "small", "ttft_ms_p90": 100, "tpot_ms_p50": 10},
                                   {"model": "large", "ttft_ms_p90": 400, "tpot_ms_p50": 30}],
                         "ttft_budget_ms": 300}, "small", ["large", None]),
}


def test_every_exercise_has_cases():
    assert set(CASES) | {"04.clock", "04.threshold"} == set(EXERCISES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_right_wrong_and_unanswered(name):
    context, right, wrongs = CASES[name]
    assert check(name, right, **context).ok is True
    for wrong in wrongs:
        result = check(name, wrong, **context)
        assert result.ok is False and result.message, (name, wrong)
    assert check(name, ..., **context).ok is None


def test_no_model_fitting_the_budget_is_answered_none():
    """A busy machine can push every measured p90 over the budget (all of them over 300 ms once, in a
    full test run): then None is the answer, and a name is not."""
    slow = [{"model": "small", "ttft_ms_p90": 320, "tpot_ms_p50": 10}, {"model": "large", "ttft_ms_p90": 700, "tpot_ms_p50": 30}]
    right = check("06.select_model", None, table=slow, ttft_budget_ms=300)
    assert right.ok is True and "no model" in right.message
    assert check("06.select_model", "small", table=slow, ttft_budget_ms=300).ok is False
    answer = reference_answers()["06.select_model"]
    for models, expected in ((slow, None), (slow[:1] + [dict(slow[0], model="mid", ttft_ms_p90=250)], "mid")):
        assert eval(answer) == expected                 # the reference answer, as the notebook tests run it


def test_an_unwritten_function_counts_as_not_attempted():
    assert check("02.parser", parse_sse_unwritten).ok is None


def test_a_crashing_answer_is_reported_not_raised():
    result = check("02.parser", lambda raw: 1 / 0)
    assert result.ok is False and "ZeroDivisionError" in result.message
    with pytest.raises(KeyError):
        check("99.nope", 1)


def test_chapter_04_checkers():
    assert check("04.clock", 1000).ok and check("04.clock", 1000.0).ok
    assert check("04.clock", 5000).ok is False and check("04.clock", ...).ok is None
    assert check("04.threshold", 0.08).ok is True
    low = check("04.threshold", 0.02)
    assert low.ok is False and "never ends" in low.message
    assert check("04.threshold", 0.6).ok is False and check("04.threshold", -1).ok is False


def test_both_named_jitters_pass_and_say_which_they_are():
    assert "equal jitter" in check("07.backoff", backoff_right).message
    full = check("07.backoff", backoff_full_jitter)
    assert full.ok is True and "full jitter" in full.message


def test_a_wrong_answer_says_not_yet_and_why():
    shown = check("00.finish_reason", "stop")._repr_markdown_()
    assert shown.startswith("❌ Not yet: ") and "'stop' means" in shown
    assert check("00.finish_reason", "length")._repr_markdown_().startswith("✅ Right")
