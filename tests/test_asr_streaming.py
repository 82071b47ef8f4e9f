"""Recognising while the user speaks, for real: the recogniser's worker processes (a decoder per open
utterance, lanes, a worker killed mid-utterance) and the real ``/v1/realtime`` server, on the speech
set's utterances. The transcript must not depend on which path ran (streamed, or decoded whole at
commit), nor on how the audio was chunked. No timing assertions."""

import asyncio

import pytest

pytest.importorskip("pocketsphinx")

from labkit.audio import asr
from labkit.bench.realtime import RATE, class_turns

from test_realtime import Client, appends, speech_24k
from test_asr_streaming_machine import TRANSCRIBE


@pytest.fixture(scope="module")
def turns():
    return class_turns(3)


def _whole(audio) -> str:
    return asr._worker.run(audio, RATE)


async def _streamed(audio, chunk: int, stream=None) -> str:
    stream = stream or asr.begin_stream(RATE)
    assert stream is not None
    for i in range(0, audio.size, chunk):
        stream.feed(audio[i:i + chunk])
    return await asr.transcribe_async(audio, RATE, session="t", stream=stream)


async def _ready_stream() -> "asr.Stream":
    """A stream once the lanes run (a cold lane takes no stream: it is started in the background)."""
    asr.warm_up()
    for _ in range(600):
        stream = asr.begin_stream(RATE)
        if stream is not None:
            return stream
        await asyncio.sleep(0.1)
    raise AssertionError("no recogniser lane started within 60 s")


async def test_streamed_in_any_chunks_is_the_whole_utterance_transcript(turns):
    for audio, _end, _text in turns[:2]:
        whole = _whole(audio)
        assert whole                                              # real words were heard
        assert await _streamed(audio, 2400, await _ready_stream()) == whole       # 100 ms appends
        assert await _streamed(audio, 777, await _ready_stream()) == whole        # ragged
        assert asr.transcribe(audio, RATE) == whole               # in this process, too


async def test_an_utterance_stays_on_its_lane_and_new_ones_go_to_the_least_loaded(turns):
    first = await _ready_stream()
    others = [asr.begin_stream(RATE) for _ in range(2 * asr.WORKERS - 1)]
    streams = [first, *others]
    try:
        loads = [len(lane.streams) for lane in asr._worker.lanes]
        assert max(loads) - min(loads) <= 1, loads               # spread over the lanes
        audio = turns[0][0]
        for s in streams:
            s.feed(audio[:2400])
        assert all(s.uid in s.lane.streams for s in streams)     # each still on the lane it began on
    finally:
        for s in streams:
            s.cancel()
    assert all(not lane.streams for lane in asr._worker.lanes)   # cancelled: every decoder freed


async def test_no_room_for_a_stream_falls_back_to_whole_decoding(turns, monkeypatch):
    stream = await _ready_stream()
    stream.cancel()
    monkeypatch.setattr(asr, "MAX_STREAMS_PER_WORKER", 0)
    assert asr.begin_stream(RATE) is None                         # bounded: no lane takes another
    audio = turns[1][0]
    assert await asr.transcribe_async(audio, RATE, session="t") == _whole(audio)


async def test_a_worker_killed_mid_utterance_falls_back_and_is_restarted(turns):
    audio = turns[0][0]
    whole = _whole(audio)
    stream = await _ready_stream()
    lane, generation = stream.lane, stream.generation
    stream.feed(audio[: audio.size // 2])
    lane.proc.kill()
    stream.feed(audio[audio.size // 2:])                          # after the death: lost, never raises
    text = await asyncio.wait_for(asr.transcribe_async(audio, RATE, session="t", stream=stream), 120)
    assert text == whole                                          # decoded whole, the same way
    assert not lane.streams                                       # nothing is left open on it
    asr.warm_up()                                                 # what every new session does: cold lanes start
    for _ in range(600):
        if lane.alive and lane.generation > generation:
            break
        await asyncio.sleep(0.1)
    assert lane.generation > generation and lane.alive            # a new process took over
    assert await _streamed(audio, 2400, await _ready_stream()) == whole


async def test_an_answer_owed_by_a_dying_worker_fails_at_once(turns):
    stream = await _ready_stream()
    stream.feed(turns[0][0])
    future = stream.end()                                         # the END is queued; then the worker dies
    stream.lane.proc.kill()
    try:
        future.result(timeout=60)                                 # answered before it died, or failed: never hangs
    except asr.WorkerDied:
        pass


# ------------------------------------------------------------------------------- the real /v1/realtime server

async def _transcript_through_server(server, seconds: float) -> list[str]:
    c = await Client.connect(server)
    await c.send(TRANSCRIBE)
    await c.recv()
    for event in appends(speech_24k(seconds)):
        await c.send(event)
    transcripts = []
    while True:
        e = await c.recv(timeout=60)
        if e["type"] == "conversation.item.input_audio_transcription.completed":
            transcripts.append(e["transcript"])
            break
        assert e["type"] != "conversation.item.input_audio_transcription.failed", e
    await c.close()
    return transcripts


async def test_the_server_streams_and_its_transcript_is_the_whole_paths(server, monkeypatch):
    from labkit.speechdata import load_clean

    _, utterances = load_clean()
    begun = []
    real_begin = asr.begin_stream

    def spying(rate):
        stream = real_begin(rate)
        begun.append(stream)
        return stream

    await _ready_stream()
    monkeypatch.setattr(asr, "begin_stream", spying)
    streamed = await _transcript_through_server(server, utterances[0].end_s + 0.8)
    assert begun and begun[0] is not None                        # the streamed path ran
    monkeypatch.setattr(asr, "MAX_STREAMS_PER_WORKER", 0)        # every lane full: decoded whole at commit
    begun.clear()
    whole = await _transcript_through_server(server, utterances[0].end_s + 0.8)
    assert begun == [None]
    assert streamed == whole and streamed[0]


async def test_a_worker_error_is_answered_not_hung():
    """An END for an utterance the worker does not hold is answered with an error (an ASRUnavailable)."""
    from labkit.audio.asr import _message
    from labkit.audio.asr_worker import END

    stream = await _ready_stream()
    stream.cancel()
    future = stream.lane.post(stream.generation, _message(END, 4_000_000_000), answer_uid=4_000_000_000)
    with pytest.raises(asr.ASRUnavailable, match="no such utterance"):
        future.result(timeout=60)


def test_a_cancelled_utterance_leaves_its_decoder_reusable(turns):
    """In the worker's own logic (in this process): cancel mid-utterance, then the decoder serves the next."""
    import struct

    from labkit.audio._sphinx import model_files
    from labkit.audio.asr_worker import AUDIO, BEGIN, CANCEL, END, Worker, make_decoder

    w = Worker(lambda: make_decoder(*model_files()))
    audio = turns[1][0].astype("<i2").tobytes()
    assert w.handle(BEGIN, 1, struct.pack("<I", RATE)) is None
    w.handle(AUDIO, 1, audio[: len(audio) // 4 * 2])                 # half, in whole samples
    w.handle(CANCEL, 1, b"")
    assert len(w.idle) == 1 and not w.open
    w.handle(BEGIN, 2, struct.pack("<I", RATE))
    w.handle(AUDIO, 2, audio)
    assert w.handle(END, 2, b"") == f"2 {_whole(turns[1][0])}"
    assert w.handle(END, 3, b"") == "3!no such utterance"


async def test_a_session_closed_mid_utterance_frees_its_stream(server):
    from labkit.speechdata import load_clean

    _, utterances = load_clean()
    await _ready_stream()
    before = {id(lane): set(lane.streams) for lane in asr._worker.lanes}
    c = await Client.connect(server)
    await c.send(TRANSCRIBE)
    await c.recv()
    for event in appends(speech_24k(utterances[0].start_s + 1.0)):            # speaking, not yet ended
        await c.send(event)
    await c.until("input_audio_buffer.speech_started")
    for _ in range(600):                                                       # the server has begun its stream
        if any(set(lane.streams) - before[id(lane)] for lane in asr._worker.lanes):
            break
        await asyncio.sleep(0.05)
    opened = {id(lane): set(lane.streams) - before[id(lane)] for lane in asr._worker.lanes}
    assert any(opened.values())
    await c.close()
    for _ in range(600):                                                       # closed: cancelled, decoder freed
        if not any(opened[id(lane)] & lane.streams for lane in asr._worker.lanes):
            break
        await asyncio.sleep(0.05)
    assert not any(opened[id(lane)] & lane.streams for lane in asr._worker.lanes)
