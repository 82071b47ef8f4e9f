"""The weak-tail model (:mod:`labkit.vadtail`): which island it judges, what it measures, how the
detector dates a tail out, and what the Realtime session commits then.

The model's figures (chosen on the tuning set, scored once on the held-out set) are in
``tests/test_realtime_vad_noise.py``; ``python -m labkit bench vad-tune`` refits it."""

import json
from dataclasses import replace

import numpy as np
import pytest

from labkit import speechsets, vadtune
from labkit.audio.pcm import resample
from labkit.realtime import RealtimeSession
from labkit.speechdata import SAMPLE_RATE
from labkit.vad import SpeechEnd, VADConfig, VoiceActivityDetector
from labkit.vadtail import MEASURES, TAIL_MODEL, TailModel, tail_measures

class ScriptedScorer:
    """Stands in for the detector's scorer: a frame's first sample / 100 is its score (dB), every band
    at it plus ``shape``; it keeps frames through the real scorer's ring (a SubbandSNR it wraps)."""

    def __init__(self, real, shape):
        self.real, self.shape = real, shape
        self.onset_lag_frames = real.onset_lag_frames

    def __getattr__(self, name):                      # keep_frames, kept, keep_at_least, ...
        return getattr(self.real, name)

    def process(self, frames):
        scores = [float(f[0]) / 100 for f in frames]
        ratios = 10 ** ((np.array(scores)[:, None] + self.shape) / 10) / self.real.bands
        for score, ratio in zip(scores, ratios):
            self.real._keep(ratio[None], [score], np.ones(self.real.bands))
            self.real.frames_scored += 1
        return scores

    def score_frame(self, frame):
        return self.process(frame[None])[0]


def scripted_turn(runs, config=None):
    """The one turn the detector reports for scores given as ``(dB, frames)`` runs (30 quiet frames
    after them end it), every band at the score plus a rising shape."""
    config = config or VADConfig(end_correction_ms=0)
    n = config.frame_samples
    audio = np.concatenate([np.full(k * n, int(db * 100), np.int16) for db, k in [*runs, (3, 30)]])
    vad = VoiceActivityDetector(config)
    vad.scorer = ScriptedScorer(vad.scorer, np.linspace(-3, 3, 8))
    ends = [e for i in range(0, audio.size, n) for e in vad.process(audio[i:i + n]) if type(e) is SpeechEnd]
    assert len(ends) == 1
    return ends[0]


def test_a_weak_island_after_a_pause_is_the_turns_weak_tail():
    n = VADConfig().frame_samples
    end = scripted_turn([(3, 20), (12, 20), (3, 5), (6.5, 4)])
    assert (end.last_pause_sample, end.last_island_sample, end.voiced_until) == (40 * n, 45 * n, 49 * n)
    tail = end.weak_tail
    x = dict(zip(MEASURES, tail.measures))
    assert (x["pause_ms"], x["tail_ms"], x["peak_db"], x["mean_db"]) == (100, 80, 6.5, 6.5)
    assert x["peak_vs_utterance_peak_db"] == pytest.approx(-5.5) and x["peak_before_pause_db"] == 12.0
    assert 0.0 < tail.p_noise < 1.0 and tail.p_noise == TAIL_MODEL.probability(tail.measures)
    assert tail.end_sample_dated_out == 40 * n
    assert end.tail_dated_out == (tail.p_noise > VADConfig().weak_tail_p)
    assert end.end_sample == (40 * n if end.tail_dated_out else 49 * n)


@pytest.mark.parametrize("runs, ends_at, why", [
    ([(3, 20), (12, 20), (3, 5), (7.5, 4)], 49, "a frame of it reaches the resume threshold"),
    ([(3, 20), (12, 20), (3, 1), (6.5, 4)], 45, "a 20 ms gap is the word going on"),
    ([(3, 20), (12, 20), (3, 10), (6.5, 4)], 40, "after 160 ms the weak frames are not voiced at all"),
    ([(3, 20), (12, 20)], 40, "the turn is one island"),
])
def test_no_weak_tail(runs, ends_at, why):
    end = scripted_turn(runs)
    assert end.weak_tail is None and not end.tail_dated_out, why
    assert end.end_sample == ends_at * VADConfig().frame_samples


def test_without_a_resume_rule_no_tail_is_weak():
    end = scripted_turn([(3, 20), (12, 20), (3, 5), (6.5, 4)], VADConfig(end_correction_ms=0, resume_snr_db=6.0))
    assert end.weak_tail is None and end.last_pause_sample is not None


def test_a_tail_that_would_leave_too_little_is_judged_but_kept():
    n = VADConfig().frame_samples
    end = scripted_turn([(3, 20), (12, 6), (3, 5), (6.5, 4)])     # 120 ms before the pause: under 200 ms
    assert end.weak_tail is not None and end.weak_tail.end_sample_dated_out is None
    assert not end.tail_dated_out and end.end_sample == 35 * n


def test_the_band_measures():
    """A tail shaped like the utterance correlates 1 with it, the opposite shape -1; a tail loudest in
    the top band (a fricative) has it as its top band and a rising tilt."""
    scores = np.r_[np.full(20, 12.0), np.full(5, 3.0), np.full(4, 6.5)]
    rising = np.linspace(0, 14, 8)
    for tail_shape, correlation, top, tilt in ((rising, 1.0, 7, 2.0), (rising[::-1], -1.0, 0, -2.0)):
        bands = np.vstack([np.tile(rising, (25, 1)), np.tile(tail_shape, (4, 1))])
        x = dict(zip(MEASURES, tail_measures(scores, bands, 20, 25, stop_db=6.0, frame_ms=20)))
        assert x["band_shape_correlation"] == pytest.approx(correlation)
        assert x["top_band"] == top and x["is_top_band"] == float(top == 7)
        assert x["band_tilt_db"] == pytest.approx(tilt)
        assert x["band_spread_db"] == pytest.approx(rising.std())


def test_the_model_is_a_logistic_on_standardised_measures():
    model = TailModel(mean=(1.0, 2.0), scale=(2.0, 4.0), weights=(1.0, -0.5), bias=0.25)
    z = (3.0 - 1.0) / 2.0 * 1.0 + (10.0 - 2.0) / 4.0 * -0.5 + 0.25
    assert model.probability((3.0, 10.0)) == pytest.approx(1 / (1 + np.exp(-z)))
    assert len(TAIL_MODEL.weights) == len(TAIL_MODEL.mean) == len(TAIL_MODEL.scale) == len(MEASURES)


def test_fit_logistic_learns_which_measure_tells_the_classes_apart():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 2))
    y = (x[:, 0] + 0.3 * rng.normal(0, 1, 400) > 0).astype(float)
    model = vadtune.fit_logistic(x, y)
    assert model.weights[0] > 3 and abs(model.weights[1]) < 0.5
    assert model.probability((2.0, 0.0)) > 0.95 and model.probability((-2.0, 0.0)) < 0.05
    assert all(type(v) is float for v in (*model.mean, *model.weights, model.bias))


def _server_config() -> VADConfig:
    session = RealtimeSession("gpt-realtime")
    session.receive(json.dumps(vadtune.SESSION_UPDATE))
    return session.input.vad.config


def _heldout_babble(session: int) -> tuple[np.ndarray, list]:
    mix, _noise, utterances = speechsets.condition(speechsets.load("heldout"), "babble", 10)[session]
    return resample(mix, SAMPLE_RATE, 24_000), [(u.start_s, u.end_s) for u in utterances]


def _ends(config: VADConfig, audio: np.ndarray, chunk: int) -> list[SpeechEnd]:
    vad = VoiceActivityDetector(config)
    return [e for i in range(0, audio.size, chunk) for e in vad.process(audio[i:i + chunk]) if type(e) is SpeechEnd]


def test_the_babble_after_a_sentence_is_dated_out_and_a_soft_last_syllable_is_not():
    """The noisy-room test's two cases (held-out babble at 10 dB): session 5's 8.95-12.29 s is
    followed by a babble bump that held its end to 12.50 s; session 1's 5.30-8.75 s ends with a soft
    syllable after a pause, as weak and as short."""
    config = _server_config()
    audio, labels = _heldout_babble(5)
    late = _ends(replace(config, weak_tail_p=None), audio, 2400)[2]
    end = _ends(config, audio, 2400)[2]
    assert labels[2] == pytest.approx((8.95, 12.29), abs=0.01)
    assert late.end_s == pytest.approx(12.50) and not late.tail_dated_out
    assert end.tail_dated_out and end.weak_tail.p_noise > config.weak_tail_p
    assert end.end_s == pytest.approx(12.28) and abs(end.end_s - labels[2][1]) < 0.15
    assert end.end_sample == end.last_pause_sample == end.weak_tail.end_sample_dated_out       # no end lag here
    assert late.voiced_until == late.end_sample and end.last_island_sample > end.end_sample
    assert end.commit_sample == end.committed_until == end.end_sample + 500 * 24 and end.detected_sample == late.detected_sample
    assert end.audio_start_sample + end.audio.size == end.end_sample
    assert np.array_equal(end.audio, late.audio[:end.audio.size])

    audio, labels = _heldout_babble(1)
    kept = _ends(config, audio, 2400)[1]
    assert kept.weak_tail is not None and kept.weak_tail.p_noise <= config.weak_tail_p
    assert not kept.tail_dated_out and kept.committed_until == kept.detected_sample
    assert abs(kept.end_s - labels[1][1]) < 0.15


def test_the_session_commits_up_to_the_dated_end_and_its_transcript_is_of_that_audio():
    """``audio_end_ms`` and the commit end at the dated end plus the silence wait (the rest of the wait
    stays in the buffer); the streamed transcription, fed past that, is redone on the commit alone."""
    import base64
    from labkit.realtime.machine import StartTranscription, TranscriptionCancel, TranscriptionEnd
    audio, _labels = _heldout_babble(5)
    session = RealtimeSession("gpt-realtime")
    update = json.loads(json.dumps(vadtune.SESSION_UPDATE))
    update["session"]["audio"]["input"]["transcription"] = {"model": "gpt-4o-mini-transcribe"}
    session.receive(json.dumps(update))
    turns, started = [], None
    for i in range(0, audio.size, 2400):
        events, orders = session.receive(json.dumps({"type": "input_audio_buffer.append",
                                                     "audio": base64.b64encode(audio[i:i + 2400].tobytes()).decode()}))
        for event in events:
            if event["type"] == "input_audio_buffer.speech_started":
                started = event["audio_start_ms"]
            elif event["type"] == "input_audio_buffer.speech_stopped":
                turns.append((started, event["audio_end_ms"], session.input.buffer_start, session.input.samples_in,
                              [type(o) for o in orders], [o.audio.size for o in orders if type(o) is StartTranscription]))
    (_s, _e, _b, _n, kept_orders, _a), (start_ms, end_ms, buffer_start, samples_in, orders, decoded) = turns[1], turns[2]
    assert end_ms == 12_780                           # 12.28 s and the 500 ms silence wait, not 13.00 s
    assert buffer_start == 12_780 * 24 < samples_in   # the rest of the wait is still held
    assert TranscriptionCancel in orders and decoded == [(end_ms - start_ms) * 24]   # the commit, whole
    assert TranscriptionEnd in kept_orders and StartTranscription not in kept_orders  # a turn kept streams on


def test_a_turn_closed_at_the_end_of_the_stream_is_judged_too():
    config = _server_config()
    audio, _labels = _heldout_babble(5)
    vad = VoiceActivityDetector(config)
    ends = [e for e in vad.process(audio[:int(12.62 * 24_000)]) + vad.flush() if type(e) is SpeechEnd]
    assert ends[-1].tail_dated_out and ends[-1].end_s == pytest.approx(12.28)


def test_with_an_end_correction_the_dated_end_is_the_pause_start_as_early():
    """Offline (16 kHz, ends dated 40 ms early): held-out babble at 20 dB, session 5, in any chunking."""
    mix, _noise, _utterances = speechsets.condition(speechsets.load("heldout"), "babble", 20)[5]
    config = VADConfig()
    lag = config.end_correction_ms * config.sample_rate // 1000
    found = {}
    for chunk in (320, 777, 5 * 320, mix.size):
        vad = VoiceActivityDetector(config)
        ends = [e for i in range(0, mix.size, chunk) for e in vad.process(mix[i:i + chunk])]
        ends = [e for e in ends + vad.flush() if type(e) is SpeechEnd]
        found[chunk] = [(e.start_sample, e.end_sample, e.tail_dated_out) for e in ends]
        dated = [e for e in ends if e.tail_dated_out]
        assert len(dated) == 1
        e = dated[0]
        assert e.end_sample == e.last_pause_sample - lag == e.weak_tail.end_sample_dated_out
        assert e.last_pause_sample < e.last_island_sample < e.voiced_until
    assert len(set(map(tuple, found.values()))) == 1


def test_the_kept_ring_returns_only_frames_it_still_holds():
    from labkit.vadspectral import SubbandSNR
    rng = np.random.default_rng(1)
    frames = rng.normal(0, 2000, (60, 320)).astype(np.int16)
    scorer = SubbandSNR(16_000, 320, keep_frames=4)
    scores = scorer.process(frames[:40])
    got, _ = scorer.kept(34, 38)                      # frames 36-39 are held; 34 and 35 were overwritten
    assert got.tolist() == scores[36:38]
    scorer.keep_at_least(20)                          # grown: 36-39 stay, nothing older comes back
    scores += scorer.process(frames[40:50])
    got, bands = scorer.kept(0, 50)
    assert got.tolist() == scores[36:50] and bands.shape == (14, scorer.bands)
    scores += scorer.process(frames[50:60])           # wrapped in the grown ring: the last 20
    assert scorer.kept(0, 60)[0].tolist() == scores[40:60]


def test_retuning_the_durations_resizes_what_is_kept():
    vad = VoiceActivityDetector(VADConfig(max_speech_ms=10_000))
    small = vad.scorer.keep_frames
    vad.update(max_speech_ms=60_000)
    assert vad.scorer.keep_frames > small and vad.scorer.keep_frames >= 60_000 // 20


def test_a_long_chunk_is_judged_as_short_ones_are():
    """A chunk is scored whole before its frames are decided: one of 100 s (longer than the 61 s the
    server's detector keeps for a turn: its longest utterance, silence wait and prefix) must give
    the same turns as 100 ms appends."""
    config = _server_config()
    audio = np.concatenate([_heldout_babble(k)[0] for k in (5, 0, 1, 2, 3, 4)])
    assert audio.size > 1.5 * (config.max_speech_ms or 0) * 24
    short = _ends(config, audio, 2400)
    assert any(e.tail_dated_out for e in short)
    whole = _ends(config, audio, audio.size)
    assert [(e.start_sample, e.end_sample, e.committed_until) for e in whole] == \
        [(e.start_sample, e.end_sample, e.committed_until) for e in short]


def test_kept_frames_are_the_scores_and_the_traced_band_snrs():
    config = _server_config()
    audio, _labels = _heldout_babble(5)
    vad = VoiceActivityDetector(config)
    vad.scorer.keep_trace = True
    scores, levels, floors = [], [], []
    for i in range(0, 24_000 * 6, 2400):
        vad.process(audio[i:i + 2400])
        scores += vad.last_scores
        levels.append(vad.scorer.last_levels)
        floors.append(vad.scorer.last_floors)
    kept_scores, band_db = vad.scorer.kept(100, 300)
    assert kept_scores.tolist() == scores[100:300]
    want = 10 * np.log10(np.concatenate(levels)[100:300] / np.concatenate(floors)[100:300])
    np.testing.assert_allclose(band_db, want, atol=1e-4)


def test_weak_tail_p_is_checked():
    with pytest.raises(ValueError, match="weak_tail_p"):
        VADConfig(weak_tail_p=1.5)
    assert VADConfig(weak_tail_p=None).weak_tail_p is None



def test_a_turn_longer_than_the_judged_window_is_judged_alike_in_any_chunking():
    """``max_speech_ms=None``: a 40 s turn is judged on its last 30 s, whatever the chunk (one whole
    chunk holds it all, 20 ms chunks only the ring's 31 s)."""
    config = VADConfig(max_speech_ms=None)
    n = config.frame_samples
    runs = [(3, 50), (30, 300), (10, 1700), (3, 7), (6.5, 2), (3, 60)]       # (dB, frames): loud at first
    audio = np.concatenate([np.full(k * n, int(db * 100), np.int16) for db, k in runs])
    judged = set()
    for chunk in (n, 5 * n, 777, audio.size):
        vad = VoiceActivityDetector(config)
        vad.scorer = ScriptedScorer(vad.scorer, np.linspace(-3, 3, 8))
        ends = [e for i in range(0, audio.size, chunk) for e in vad.process(audio[i:i + chunk]) if type(e) is SpeechEnd]
        assert len(ends) == 1 and ends[0].weak_tail is not None
        judged.add((ends[0].end_sample, ends[0].weak_tail.measures))
    assert len(judged) == 1
    measures = dict(zip(MEASURES, judged.pop()[1]))
    assert measures["peak_vs_utterance_peak_db"] == pytest.approx(6.5 - 10)   # the 30 dB start is out of the window
