"""The resumable stream log and its registry, pure: no sockets, no sleeping (time is passed in)."""

import pytest

from labkit.streams import DONE, FAILED, RegistryFull, StreamGone, StreamLog, StreamRegistry


def test_a_reader_gets_exactly_the_tokens_after_its_last():
    log = StreamLog("st_1", "ann", [], created=0.0)
    for i, tok in enumerate(["a", "b", "c", "d"]):
        assert log.append(tok, float(i)) == i
    assert log.after(-1) == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]
    assert log.after(1) == [(2, "c"), (3, "d")]
    assert log.after(3) == []
    log.finish("stop", 9.0)
    assert log.status == DONE and log.text == "abcd" and log.finished == 9.0
    with pytest.raises(RuntimeError):
        log.append("e", 10.0)
    log.fail("late", "ignored", 11.0)                 # a finished stream keeps its outcome
    assert log.status == DONE


def test_a_stream_is_bounded_in_size():
    log = StreamLog("st_1", "ann", [], created=0.0, max_chars=10)
    assert log.append("12345", 0) == 0
    assert log.append("678901", 0) == -1
    assert log.status == FAILED and log.error_code == "stream_too_long" and log.text == "12345"


def test_finished_streams_expire_and_say_so():
    reg = StreamRegistry(keep_s=10)
    log = reg.create("ann", [], now=0.0)
    log.finish("stop", 5.0)
    assert reg.get(log.id, now=14.0) is log
    with pytest.raises(StreamGone) as e:
        reg.get(log.id, now=15.5)
    assert e.value.code == "stream_expired"
    with pytest.raises(StreamGone) as e:
        reg.get("st_never", now=15.5)
    assert e.value.code == "stream_not_found"


def test_running_streams_never_expire_and_the_registry_is_bounded():
    reg = StreamRegistry(keep_s=1, max_streams=2)
    a, b = reg.create("ann", [], 0.0), reg.create("bob", [], 0.0)
    assert reg.get(a.id, now=1000.0) is a                 # still running: kept however old
    with pytest.raises(RegistryFull):
        reg.create("cy", [], 1.0)
    a.finish("stop", 1.0)
    c = reg.create("cy", [], 1.5)                         # the oldest finished one makes room
    assert len(reg) == 2 and {s.id for s in reg} == {b.id, c.id}
    with pytest.raises(StreamGone) as e:
        reg.get(a.id, 1.5)
    assert e.value.code == "stream_expired"


def test_active_lists_a_users_running_streams_oldest_first():
    reg = StreamRegistry()
    a1, b1, a2 = reg.create("ann", [], 0), reg.create("bob", [], 1), reg.create("ann", [], 2)
    assert reg.active("ann") == [a1, a2]
    a1.fail("cancelled", "x", 3)
    assert reg.active("ann") == [a2] and reg.active("bob") == [b1]


def test_sweeps_are_amortised_but_never_late_by_more_than_a_quarter():
    reg = StreamRegistry(keep_s=8)
    first = reg.create("ann", [], now=0.0)                # a sweep ran here
    first.finish("stop", 0.0)
    assert reg.sweep(now=8.5) == [first.id]               # due (8.5 s after the last): it goes
    second = reg.create("ann", [], now=8.6)
    second.finish("stop", 0.3)                            # (a made-up time: already past keep_s)
    assert reg.sweep(now=9.0) == []                       # within a second of the last sweep: skipped
    assert reg.sweep(now=9.0, force=True) == [second.id]
    assert reg.sweep(now=9.6) == []                       # a forced sweep counts as the last one
