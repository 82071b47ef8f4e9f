"""Recognising while the user speaks, the pure half: which work orders the Realtime session machine
gives the recogniser (events in, orders out, no sockets, no clocks), and the scheduling decisions
(labkit.audio.scheduling.choose_lane / decode_at_commit). The real workers and server:
tests/test_asr_streaming.py."""

import base64
import itertools
import json

import numpy as np

from labkit.audio.pcm import resample
from labkit.audio.scheduling import choose_lane, decode_at_commit
from labkit.realtime.machine import (RealtimeSession, StartTranscription, TranscriptionAudio, TranscriptionBegin,
                                     TranscriptionCancel, TranscriptionEnd)
from labkit.speechdata import SAMPLE_RATE as SPEECH_RATE, load_clean

TRANSCRIBE = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
    "transcription": {"model": "gpt-4o-mini-transcribe"}}}}}


def _speech(n_utterances: int = 2) -> np.ndarray:
    clean, utterances = load_clean()
    end = utterances[n_utterances - 1].end_s + 0.9
    return resample(clean[: int(end * SPEECH_RATE)], SPEECH_RATE, 24_000)


def _session(**kw) -> RealtimeSession:
    counter = itertools.count(1)
    s = RealtimeSession("gpt-realtime", ids=lambda prefix: f"{prefix}_{next(counter):03d}", **kw)
    s.opened()
    return s


def _feed(s: RealtimeSession, audio: np.ndarray, sizes) -> tuple[list, list]:
    """Append ``audio`` in chunks of the given sizes (cycled); all events and orders."""
    events, orders, i = [], [], 0
    for n in itertools.cycle(sizes):
        if i >= audio.size:
            break
        e, o = s.append_pcm(audio[i:i + n].astype("<i2").tobytes())
        events += e
        orders += o
        i += n
    return events, orders


def _streams(orders: list) -> dict[str, dict]:
    """Per item: the streamed samples (begin + audio orders, in order), and its end's committed audio."""
    out: dict[str, dict] = {}
    for order in orders:
        if isinstance(order, TranscriptionBegin):
            assert order.item_id not in out, "one begin per item"
            out[order.item_id] = {"sent": [order.audio], "end": None, "cancelled": False}
        elif isinstance(order, TranscriptionAudio):
            entry = out[order.item_id]
            assert entry["end"] is None and not entry["cancelled"], "no audio after the end or a cancel"
            entry["sent"].append(order.audio)
        elif isinstance(order, TranscriptionEnd):
            out[order.item_id]["end"] = order.audio
        elif isinstance(order, TranscriptionCancel):
            out[order.item_id]["cancelled"] = True
    return out


def test_the_streamed_samples_are_exactly_the_committed_ones_whatever_the_chunks():
    audio = _speech(2)
    committed = None
    for sizes in ([2400], [480], [1111, 37, 5000, 240]):        # 100 ms, 20 ms, ragged
        s = _session()
        s.receive(json.dumps(TRANSCRIBE))
        events, orders = _feed(s, audio, sizes)
        streams = _streams(orders)
        stopped = [e["item_id"] for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
        assert len(stopped) == 2 and list(streams) == stopped, (stopped, list(streams))
        assert not any(isinstance(o, StartTranscription) for o in orders)          # every one streamed
        for item_id, entry in streams.items():
            assert entry["end"] is not None and not entry["cancelled"]
            assert np.array_equal(np.concatenate(entry["sent"]), entry["end"]), item_id
            assert item_id in s._transcribing
        ends = [streams[i]["end"] for i in stopped]
        # the same utterances, sample for sample, whatever the client's chunking
        if committed is None:
            committed = ends
        else:
            assert all(np.array_equal(a, b) for a, b in zip(committed, ends))
        # the end's audio is what the commit holds: prefix padding before the onset to the detected end
        started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
        for begin, end, a in zip(started, [e for e in events if e["type"] == "input_audio_buffer.speech_stopped"], ends):
            assert abs(a.size * 1000 / 24_000 - (end["audio_end_ms"] - begin["audio_start_ms"])) <= 1


def test_audio_is_fed_only_after_vad_ran_and_never_past_the_commit():
    """Mid-utterance, what was fed never passes what VAD has analysed (a partial frame waits)."""
    s = _session()
    s.receive(json.dumps(TRANSCRIBE))
    audio = _speech(1)
    fed = 0
    for i in range(0, audio.size, 1111):
        _e, orders = s.append_pcm(audio[i:i + 1111].astype("<i2").tobytes())
        for o in orders:
            if isinstance(o, (TranscriptionBegin, TranscriptionAudio)):
                fed += o.audio.size
                assert s._streamed is None or s._streamed.fed <= s.input.analysed_samples
            if isinstance(o, TranscriptionEnd):
                assert fed == o.audio.size
                fed = 0


def test_without_transcription_nothing_is_streamed():
    s = _session()
    _e, orders = _feed(s, _speech(1), [2400])
    assert orders == [] or not any(isinstance(o, (TranscriptionBegin, TranscriptionEnd, StartTranscription))
                                   for o in orders)


def test_clear_mid_utterance_cancels_the_stream_and_the_commit_is_decoded_whole():
    s = _session()
    s.receive(json.dumps(TRANSCRIBE))
    audio = _speech(1)
    clean, utterances = load_clean()
    middle = int((utterances[0].start_s + 1.0) * 24_000)
    _e, first = _feed(s, audio[:middle], [2400])
    item = next(o.item_id for o in first if isinstance(o, TranscriptionBegin))
    events, orders = s.receive(json.dumps({"type": "input_audio_buffer.clear"}))
    assert events[0]["type"] == "input_audio_buffer.cleared" and orders == [TranscriptionCancel(item)]
    _e, rest = _feed(s, audio[middle:], [2400])
    whole = [o for o in rest if isinstance(o, StartTranscription)]
    assert len(whole) == 1 and not any(isinstance(o, (TranscriptionAudio, TranscriptionEnd)) for o in rest)


def _half_spoken():
    """A session with transcription on, fed the first half of an utterance: (session, audio, streamed item id)."""
    s = _session()
    s.receive(json.dumps(TRANSCRIBE))
    audio = _speech(1)
    _e, first = _feed(s, audio[: audio.size // 2], [2400])
    return s, audio, next(o.item_id for o in first if isinstance(o, TranscriptionBegin))


def test_transcription_turned_off_mid_utterance_cancels_and_commits_nothing_to_recognise():
    s, audio, item = _half_spoken()
    _e, orders = s.receive(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"transcription": None}}}}))
    assert orders == [TranscriptionCancel(item)]
    _e, rest = _feed(s, audio[audio.size // 2:], [2400])
    assert not any(isinstance(o, (TranscriptionAudio, TranscriptionEnd, StartTranscription)) for o in rest)


def test_a_manual_commit_keeps_the_whole_utterance_order():
    s = _session()
    s.receive(json.dumps(TRANSCRIBE))
    s.receive(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": None}}}}))
    audio = _speech(1)
    _e, orders = _feed(s, audio, [2400])
    assert orders == []
    _e, orders = s.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    assert len(orders) == 1 and isinstance(orders[0], StartTranscription)
    assert np.array_equal(orders[0].audio, audio)


def test_a_manual_commit_mid_utterance_cancels_the_stream():
    s, _audio, item = _half_spoken()
    _e, orders = s.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    assert orders[0] == TranscriptionCancel(item) and isinstance(orders[1], StartTranscription)


def test_an_utterance_cut_at_the_maximum_length_streams_as_two():
    s = _session(max_utterance_ms=1500)
    s.receive(json.dumps(TRANSCRIBE))
    events, orders = _feed(s, _speech(1), [2400])
    streams = _streams(orders)
    assert len(streams) >= 2, [e["type"] for e in events]
    for entry in streams.values():
        assert entry["end"] is not None and np.array_equal(np.concatenate(entry["sent"]), entry["end"])


def test_the_lane_is_the_least_loaded_with_room():
    assert choose_lane([0, 0], 4) == 0                      # ties: the lowest index
    assert choose_lane([2, 1], 4) == 1
    assert choose_lane([1, 1], 4, busy=[True, False]) == 1   # a whole-utterance job counts as load
    assert choose_lane([4, 3], 4) == 1                      # lane 0 is full
    assert choose_lane([4, 4], 4) is None                   # no room anywhere: decoded whole at commit
    assert choose_lane([], 4) is None


def test_at_commit_the_stream_finishes_unless_there_was_none_or_it_was_lost():
    assert decode_at_commit(streamed=True, lost=False) == "stream"
    assert decode_at_commit(streamed=True, lost=True) == "whole"
    assert decode_at_commit(streamed=False, lost=False) == "whole"


def test_base64_appends_take_the_same_path():
    """Through receive() (the wire's base64), not only append_pcm."""
    s = _session()
    s.receive(json.dumps(TRANSCRIBE))
    audio = _speech(1)
    orders = []
    for i in range(0, audio.size, 2400):
        _e, o = s.receive(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(audio[i:i + 2400].astype("<i2").tobytes()).decode()}))
        orders += o
    streams = _streams(orders)
    assert len(streams) == 1 and all(np.array_equal(np.concatenate(v["sent"]), v["end"]) for v in streams.values())
