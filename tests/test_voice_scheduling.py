"""The voice pipeline's pure decisions: fair bounded scheduling, sentences, pacing, benchmark verdicts."""

import pytest

from labkit.audio.pacing import SpeechPace
from labkit.audio.scheduling import FairScheduler, QueueFull
from labkit.audio.sentences import split_sentences
from labkit.bench.realtime_scale import judge, summarize_level


def test_jobs_start_while_slots_are_free_then_wait():
    s = FairScheduler(slots=2, max_pending=10)
    assert s.submit("a", "a1") == ["a1"]
    assert s.submit("b", "b1") == ["b1"]
    assert s.submit("c", "c1") == []
    assert (s.pending, s.waiting(), s.running) == (3, 1, {"a1", "b1"})
    assert s.finished("a1") == ["c1"]


def test_one_sessions_many_jobs_never_starve_another_sessions_first():
    """A long answer's sentences (session a) and another session's first sentence (b), one slot."""
    s = FairScheduler(slots=1, max_pending=10)
    order = s.submit("a", "a1")
    for job in ("a2", "a3", "a4"):
        order += s.submit("a", job)
    order += s.submit("b", "b1")              # arrives after a's whole backlog
    while s.running:
        order += s.finished(next(iter(s.running)))
    assert order == ["a1", "a2", "b1", "a3", "a4"]      # b waits for one of a's jobs, not all of them


def test_round_robin_between_three_sessions():
    s = FairScheduler(slots=1, max_pending=20)
    order = s.submit("x", "busy")
    for session in "abc":
        for k in range(3):
            order += s.submit(session, f"{session}{k}")
    while s.running:
        order += s.finished(next(iter(s.running)))
    assert order[1:] == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_the_queue_is_bounded_in_all_and_per_session():
    s = FairScheduler(slots=1, max_pending=3, max_per_session=2)
    s.submit("a", "a1")
    s.submit("a", "a2")
    with pytest.raises(QueueFull) as full:
        s.submit("a", "a3")
    assert full.value.scope == "for this session" and full.value.limit == 2
    s.submit("b", "b1")
    with pytest.raises(QueueFull) as full:
        s.submit("c", "c1")
    assert full.value.scope == "in all" and full.value.pending == 3
    assert s.pending == 3                      # a refused job left nothing behind
    s.finished("a1")
    assert s.submit("c", "c1") == []           # room again, and it waits its turn
    with pytest.raises(QueueFull):
        s.submit("d", "d1", max_pending=3)     # a per-call limit (the module's setting, read at call time)


def test_a_withdrawn_job_frees_its_place_and_never_starts():
    s = FairScheduler(slots=1, max_pending=3)
    s.submit("a", "a1")
    s.submit("b", "b1")
    s.submit("b", "b2")
    assert s.withdraw("b1") and not s.withdraw("b1") and not s.withdraw("a1")     # a1 runs: not withdrawn
    assert s.pending_for("b") == 1
    assert s.finished("a1") == ["b2"]
    assert s.finished("b2") == [] and s.pending == 0


def test_misuse_is_refused():
    with pytest.raises(ValueError):
        FairScheduler(slots=0, max_pending=1)
    s = FairScheduler(slots=1, max_pending=3)
    s.submit("a", "a1")
    with pytest.raises(ValueError):
        s.submit("a", "a1")
    with pytest.raises(ValueError):
        s.finished("nope")


@pytest.mark.parametrize("text, pieces", [
    ("Hello! I'm the lab's model. Ask me anything?", ["Hello! ", "I'm the lab's model. ", "Ask me anything?"]),
    ("no end at all", ["no end at all"]),
    ("", []),
    ("Version 1.5 is out. Really", ["Version 1.5 is out. ", "Really"]),
])
def test_sentences_join_back_to_the_text(text, pieces):
    assert split_sentences(text) == pieces
    assert "".join(split_sentences(text)) == text


def test_speech_pace_keeps_time_across_sentences_and_restarts_when_late():
    pace = SpeechPace(rate=1000, time_scale=1.0)
    pace.resume(10.0)
    assert pace.delay(10.0) == 0.0                       # the first chunk goes at once
    pace.sent(100)
    assert pace.delay(10.0) == pytest.approx(0.1)
    pace.sent(100)                                       # sentence one: 200 ms of audio
    pace.resume(10.05)                                   # sentence two ready early: the pace goes on
    assert pace.due() == pytest.approx(10.2) and pace.sent_ms == 200
    pace.resume(11.0)                                    # sentence three late: it starts now, no burst
    assert pace.due() == pytest.approx(11.0)
    fast = SpeechPace(rate=1000, time_scale=0.5)
    fast.resume(0.0)
    fast.sent(1000)
    assert fast.due() == pytest.approx(0.5)


def _row(v2v, heard=300.0, failed=False):
    return {"voice_to_voice_ms": v2v, "transcript_after_speech_ms": None if failed else heard,
            "transcription_failed": failed}


def test_level_summary_counts_unanswered_sessions_and_failed_transcripts():
    level = summarize_level(3, [_row(800), _row(900, failed=True), TimeoutError("no answer")])
    assert level["answered"] == 2 and level["transcriptions_failed"] == 1
    assert level["transcript_after_speech_ms"]["count"] == 1
    assert level["voice_to_voice_ms"]["p50"] == 850.0
    assert level["errors"] == ["TimeoutError: no answer"]


def test_targets_are_judged_from_the_curve():
    single = summarize_level(1, [_row(800)])
    good = summarize_level(20, [_row(1000, 900)] * 20)
    verdict = judge([single, good])
    assert [t["met"] for t in verdict.values()] == [True, True, True]
    assert next(iter(verdict.values()))["ratio"] == 1.25
    slow = summarize_level(20, [_row(4000, 5000)] * 19 + [TimeoutError("x")])
    verdict = judge([single, slow])
    assert [t["met"] for t in verdict.values()] == [False, False, False]
    failed = summarize_level(20, [_row(900, 100)] * 19 + [_row(900, failed=True)])
    assert list(judge([single, failed]).values())[1]["met"] is False      # a failed transcript is not a fast one
    assert [t["met"] for t in judge([single]).values()][:2] == [None, None]  # the level was not run


def test_the_transcript_floor_is_the_vad_wait_plus_recognition_shared_by_the_cores():
    from labkit.bench.realtime_scale import transcript_floor_ms
    costs = {"recognition_cpu_s_per_utterance": 0.3, "cores": 2}
    assert transcript_floor_ms(1, costs) == 500 + 300                 # one utterance: one core
    assert transcript_floor_ms(20, costs) == 500 + 19 * 300 / 2       # 19 of 20 (p95) over two cores
