"""The stream machine and the chat views, directly: events in, events out, an injected clock and id source."""

import itertools

import pytest

from labkit.chatview import Send, StartTyping, StopTyping, chat_view
from labkit.streams import (DONE, FAILED, End, ReaderState, Stage, StreamMachine, StreamStage, StreamStateError,
                            Token, TooManyStreams)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def machine(**kw):
    ids = (f"st_{i}" for i in itertools.count())
    clock = Clock()
    return StreamMachine(clock=clock, new_id=lambda: next(ids), **kw), clock


def test_a_reader_drains_stages_tokens_and_end_in_order_with_the_clock_times():
    m, clock = machine()
    log = m.start("ann", [{"role": "user", "content": "hi"}]).log
    assert log.id == "st_0" and log.created == 100.0
    reader = m.open_reader(log)
    assert reader.drain() == [Stage(StreamStage.QUEUED)]
    assert not reader.events_pending() and reader.drain() == []
    m.accepted(log)
    assert reader.drain() == [Stage(StreamStage.WAITING)]
    for k, piece in enumerate(["a", "b", "c"]):
        clock.now = 101.0 + k
        assert m.token(log, piece)
    # a writer that fell behind takes everything pending at once
    assert reader.events_pending()
    assert reader.drain() == [Stage(StreamStage.STREAMING), Token(0, "a", 101.0), Token(1, "b", 102.0),
                              Token(2, "c", 103.0)]
    clock.now = 110.0
    m.finished(log, None)
    assert reader.drain() == [Stage(StreamStage.FINISHED), End(log)]
    assert log.status == DONE and log.finish_reason == "stop" and log.finished == 110.0
    assert reader.state is ReaderState.ENDED and not reader.events_pending()
    with pytest.raises(StreamStateError, match="drain\\(\\) after End"):
        reader.drain()


def test_a_resumed_reader_gets_only_what_came_after_its_last_seq():
    m, _ = machine()
    log = m.start("ann", []).log
    m.accepted(log)
    for piece in "abcd":
        m.token(log, piece)
    m.finished(log, "length")
    events = m.open_reader(log, after=1).drain()
    assert events == [Stage(StreamStage.FINISHED), Token(2, "c", 100.0), Token(3, "d", 100.0), End(log)]


def test_the_last_reader_leaving_orphans_a_running_reply_until_the_grace_decision():
    m, _ = machine(resume_grace_s=7)
    log = m.start("ann", []).log
    a, b = m.open_reader(log), m.open_reader(log)
    assert m.readers(log) == 2
    assert m.close_reader(a) is False                  # one still reads
    assert m.close_reader(b) is True                   # nobody: start the grace timer
    with pytest.raises(StreamStateError, match="already closed"):
        m.close_reader(b)
    with pytest.raises(StreamStateError, match="close"):
        b.drain()
    back = m.open_reader(log)
    assert m.orphan_due(log) is False                  # someone came back in time
    m.close_reader(back)
    assert m.orphan_due(log) is True                   # nobody: cancel, and say why
    m.cancelled(log)
    assert log.status == FAILED and log.error_code == "abandoned" and "7 s" in log.error_message


def test_the_stream_limit_rejects_or_supersedes_the_oldest():
    m, _ = machine(max_streams_per_user=1)
    m.start("ann", [])
    with pytest.raises(TooManyStreams) as e:
        m.start("ann", [])
    assert (e.value.active, e.value.limit) == (1, 1)
    m.start("bob", [])                                  # per user

    m, _ = machine(max_streams_per_user=1, limit_policy="replace")
    first = m.start("ann", []).log
    second = m.start("ann", [])
    assert second.superseded == (first,) and first.error_code == "superseded"
    m.cancelled(first)                                  # its generation stops: the outcome stays "superseded"
    assert first.error_code == "superseded"
    assert m.token(first, "late") is False              # the producer is told to stop


def test_a_cancel_reason_is_applied_once_and_an_unexplained_cancel_says_cancelled():
    m, _ = machine()
    a, b = m.start("ann", []).log, m.start("ann", []).log
    m.request_cancel(a, "client_left", "The client closed the connection.")
    m.cancelled(a)
    m.cancelled(b)
    assert (a.error_code, b.error_code) == ("client_left", "cancelled")


def test_too_long_a_reply_fails_and_stops_the_producer():
    m, _ = machine(max_chars=4)
    log = m.start("ann", []).log
    assert m.token(log, "abc") and not m.token(log, "de")
    assert log.error_code == "stream_too_long"


def test_expected_tokens_follow_the_recent_average():
    m, _ = machine()
    assert m.expected_tokens(None) == 80.0 and m.expected_tokens(12) == 12.0
    log = m.start("ann", []).log
    for _ in range(20):
        m.token(log, "x")
    m.finished(log, "stop")
    assert m.expected_tokens(None) == pytest.approx(80 + 0.2 * (20 - 80))


def test_accepting_a_finished_stream_is_a_state_error():
    m, _ = machine()
    log = m.start("ann", []).log
    m.failed(log, "upstream_error", "boom")
    with pytest.raises(StreamStateError, match="failed; it cannot be accepted"):
        m.accepted(log)


def test_the_progressive_view_types_while_silent_and_stops_on_every_path():
    m, _ = machine()
    log = m.start("ann", []).log
    view, reader = chat_view(True, log.id, expected_tokens=8), m.open_reader(log)
    actions = [a for e in reader.drain() for a in view.render(e)]
    assert actions == [StartTyping(), Send({"type": "progress", "stage": "queued", "fraction": 0.0})]
    m.accepted(log)
    for piece in "abcdefgh":
        m.token(log, piece)
    actions = [a for e in reader.drain() for a in view.render(e)]
    assert actions[0] == StopTyping() and StopTyping() not in actions[1:]
    sent = [a.message for a in actions if isinstance(a, Send)]
    assert [s["index"] for s in sent if s["type"] == "token"] == list(range(8))
    assert sent[-1] == {"type": "progress", "stage": "streaming", "fraction": 0.991}   # 0.1 + 0.9 * 0.99
    m.failed(log, "upstream_error", "boom")
    end = [a for e in reader.drain() for a in view.render(e)]
    assert end == [Send({"type": "error", "code": "upstream_error", "message": "boom", "stream_id": log.id})]


def test_the_plain_view_sends_tokens_and_complete_only():
    m, _ = machine()
    log = m.start("ann", []).log
    view, reader = chat_view(False, log.id, 80), m.open_reader(log)
    m.token(log, "hi")
    m.finished(log, "stop")
    sent = [a.message["type"] for e in reader.drain() for a in view.render(e)]
    assert sent == ["token", "complete"]


def test_streams_no_longer_kept_are_forgotten_everywhere():
    gone: list[str] = []
    clock = Clock()
    ids = (f"st_{i}" for i in itertools.count())
    m = StreamMachine(keep_s=10, clock=clock, new_id=lambda: next(ids), on_forget=gone.extend)
    old = m.start("ann", []).log
    m.open_reader(old)
    m.finished(old, "stop")
    clock.now += 30
    m.start("ann", [])                                   # a later call sweeps the expired one
    assert gone == ["st_0"] and m.readers(old) == 0
