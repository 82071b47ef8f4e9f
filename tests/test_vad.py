"""The VAD's timing, exactly: synthetic signals, sample counts, no clocks, no sleeping; then the
default (spectral) detector on speech in noise."""

import numpy as np
import pytest

from labkit.tutorial import TutorialVAD, TutorialVADConfig, TutorialVADFixedClock
from labkit.vad import (SpeechEnd, SpeechSegmenter, SpeechStart, VADConfig, VoiceActivityDetector, detect_segments,
                        frame_rms)

SR = 16_000
#: chapter 04's first steps: frame energy, 10 ms frames (the default detector is spectral, below)
RMS = dict(method="rms", frame_ms=10)


def tone(seconds: float, amplitude: float = 0.3, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), np.int16)


def run(signal, config=None, chunk=320):
    vad = VoiceActivityDetector(config or VADConfig(**RMS))
    events = []
    for i in range(0, len(signal), chunk):
        events += vad.process(signal[i:i + chunk])
    return events + vad.flush(), vad


def summary(events):
    return [(e.type, e.start_sample, getattr(e, "end_sample", None), e.detected_sample) for e in events]


def test_rms_of_a_sine_is_amplitude_over_root_two():
    assert frame_rms(tone(0.1, 0.5)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert frame_rms(silence(0.1)) == 0.0


def test_sample_accurate_start_and_end_on_frame_aligned_tone():
    cfg = VADConfig(**RMS, min_speech_ms=200, min_silence_ms=500)
    events, _ = run(np.concatenate([silence(1.0), tone(1.0), silence(1.0)]), cfg)
    start, end = events
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert (start.start_sample, start.start_s) == (16_000, 1.0)
    assert start.detected_sample == 16_000 + 200 * 16            # known after min_speech of voice
    assert (end.start_sample, end.end_sample, end.end_s, end.duration_s) == (16_000, 32_000, 2.0, 1.0)
    assert end.detected_sample == 32_000 + 500 * 16              # known after min_silence of quiet


def test_unaligned_onset_is_found_within_one_frame():
    offset = 16_000 + 37                                        # not on a 10 ms frame boundary
    signal = np.concatenate([silence(offset / SR), tone(0.8), silence(1.0)])
    start = run(signal)[0][0]
    assert 0 <= offset - start.start_sample < VADConfig(**RMS).frame_samples


@pytest.mark.parametrize("chunk", [1, 7, 159, 160, 320, 333, 1600, 10_000, 10**9])
def test_the_same_events_whatever_the_chunk_size(chunk):
    rng = np.random.default_rng(0)
    signal = np.concatenate([silence(0.5), tone(0.6), silence(0.3), tone(0.4, 0.1), silence(0.9), tone(1.2),
                             silence(0.7)])
    signal = (signal + rng.normal(0, 30, signal.size)).astype(np.int16)
    reference, _ = run(signal, chunk=320)
    events, _ = run(signal, chunk=chunk)
    assert summary(events) == summary(reference)
    for a, b in zip(events, reference):
        if isinstance(a, SpeechEnd):
            assert np.array_equal(a.audio, b.audio)


def test_prefix_padding_keeps_the_audio_before_the_onset():
    cfg = VADConfig(**RMS, prefix_padding_ms=300)
    signal = np.concatenate([silence(1.0), tone(0.5), silence(1.0)])
    end = [e for e in run(signal, cfg)[0] if isinstance(e, SpeechEnd)][0]
    assert end.audio_start_sample == 16_000 - 300 * 16
    assert np.array_equal(end.audio, signal[end.audio_start_sample:end.end_sample])
    # an onset earlier than the padding keeps what exists
    early = [e for e in run(np.concatenate([silence(0.1), tone(0.5), silence(1.0)]), cfg)[0]
             if isinstance(e, SpeechEnd)][0]
    assert early.audio_start_sample == 0 and len(early.audio) == early.end_sample


@pytest.mark.parametrize("burst_ms, expected", [(190, 0), (200, 1), (600, 1)])
def test_min_speech_edge(burst_ms, expected):
    signal = np.concatenate([silence(0.5), tone(burst_ms / 1000), silence(1.0)])
    ends = [e for e in run(signal, VADConfig(**RMS, min_speech_ms=200))[0] if isinstance(e, SpeechEnd)]
    assert len(ends) == expected


@pytest.mark.parametrize("gap_ms, utterances", [(490, 1), (500, 2), (800, 2)])
def test_min_silence_edge(gap_ms, utterances):
    signal = np.concatenate([silence(0.5), tone(0.5), silence(gap_ms / 1000), tone(0.5), silence(1.0)])
    ends = [e for e in run(signal, VADConfig(**RMS, min_silence_ms=500))[0] if isinstance(e, SpeechEnd)]
    assert len(ends) == utterances
    if utterances == 1:
        assert (ends[0].start_s, ends[0].end_s) == (0.5, 1.5 + gap_ms / 1000)


def test_hysteresis_keeps_speech_that_dips_below_the_start_threshold():
    dip = tone(0.8, amplitude=0.02)                     # RMS 0.014: below start 0.02, above stop 0.01
    signal = np.concatenate([silence(0.5), tone(0.4, 0.1), dip, tone(0.4, 0.1), silence(1.0)])
    with_h = [e for e in run(signal, VADConfig(**RMS, threshold=0.02))[0] if isinstance(e, SpeechEnd)]
    without = [e for e in run(signal, VADConfig(**RMS, threshold=0.02, stop_threshold=0.02))[0] if isinstance(e, SpeechEnd)]
    assert len(with_h) == 1 and with_h[0].duration_s == pytest.approx(1.6)
    assert len(without) == 2                            # without hysteresis the dip splits it


def test_adaptive_noise_floor_ignores_steady_noise_and_finds_speech_over_it():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.03 * 32767, 6 * SR)         # RMS 0.03: above a fixed 0.02 threshold
    speech = np.zeros(6 * SR)
    speech[3 * SR:4 * SR] = tone(1.0, 0.4)
    signal = np.clip(noise + speech, -32768, 32767).astype(np.int16)
    fixed = [e for e in run(signal, VADConfig(**RMS, threshold=0.02))[0] if isinstance(e, SpeechEnd)]
    adaptive_cfg = VADConfig(**RMS, threshold=0.02, adaptive=True)
    adaptive = [e for e in run(signal, adaptive_cfg)[0] if isinstance(e, SpeechEnd)]
    assert len(fixed) == 1 and fixed[0].duration_s > 5          # the fixed threshold calls all of it speech
    assert len(adaptive) == 1 and abs(adaptive[0].start_s - 3.0) <= 0.02 and abs(adaptive[0].end_s - 4.0) <= 0.02
    _, vad = run(signal, adaptive_cfg)
    assert 0.7 * 0.03 < vad.noise_floor < 0.03          # the minimum of frame levels sits a bit below the mean
    quiet, _ = run(np.concatenate([silence(1), tone(1.0, 0.05), silence(1)]), adaptive_cfg)
    assert len([e for e in quiet if isinstance(e, SpeechEnd)]) == 1   # the same setting works in a quiet room


def test_adaptive_floor_learns_a_step_up_in_noise():
    """A fan switches on: the fixed-threshold detector hears one endless utterance; the adaptive one
    hears a short false start at most, then learns the new floor within its window."""
    rng = np.random.default_rng(2)
    quiet = rng.normal(0, 0.003 * 32767, 2 * SR)
    loud = rng.normal(0, 0.05 * 32767, 10 * SR)
    signal = np.clip(np.concatenate([quiet, loud]), -32768, 32767).astype(np.int16)
    ends = [e for e in run(signal, VADConfig(**RMS, adaptive=True, floor_window_ms=2000))[0] if isinstance(e, SpeechEnd)]
    assert sum(e.duration_s for e in ends) <= 2.5           # at most about one window of false speech
    _, vad = run(signal, VADConfig(**RMS, adaptive=True, floor_window_ms=2000))
    assert vad.noise_floor > 0.03 and not vad.in_speech


def test_bytes_int16_and_float_input_agree():
    signal = np.concatenate([silence(0.5), tone(0.5), silence(1.0)])
    as_int, _ = run(signal)
    vad = VoiceActivityDetector(VADConfig(**RMS))
    as_bytes = vad.process(signal.tobytes()) + vad.flush()
    vad = VoiceActivityDetector(VADConfig(**RMS))
    as_float = vad.process(signal / 32767.0) + vad.flush()
    assert summary(as_int) == summary(as_bytes) == summary(as_float)
    with pytest.raises(ValueError):
        VoiceActivityDetector(VADConfig(**RMS)).process(b"\x00\x01\x02")
    with pytest.raises(ValueError):
        VoiceActivityDetector(VADConfig(**RMS)).process(np.zeros((2, 160)))


def test_long_speech_is_cut_so_memory_stays_bounded():
    cfg = VADConfig(**RMS, max_speech_ms=2000)
    events, vad = run(np.concatenate([silence(0.2), tone(5.0), silence(1.0)]), cfg)
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert [round(e.duration_s, 2) for e in ends] == [2.0, 2.0, 1.0]
    assert max(len(e.audio) for e in ends) <= (2.0 + 0.3) * SR
    assert vad.segmenter.kept_samples <= 2 * cfg.prefix_padding_ms * 16 + cfg.frame_samples


def test_flush_closes_open_speech_and_detect_segments_matches_streaming():
    signal = np.concatenate([silence(0.5), tone(0.7), silence(0.6), tone(0.5)])     # ends mid-speech
    assert detect_segments(signal, SR, VADConfig(**RMS)) == [(0.5, 1.2), (1.8, 2.3)]
    events, _ = run(signal)
    assert [(e.start_s, e.end_s) for e in events if isinstance(e, SpeechEnd)] == [(0.5, 1.2), (1.8, 2.3)]


def test_retuning_a_running_detector():
    vad = VoiceActivityDetector(VADConfig(**RMS, threshold=0.5))
    assert vad.process(np.concatenate([silence(0.2), tone(0.5, 0.3)])) == []      # too quiet for 0.5
    vad.update(threshold=0.1)
    assert any(isinstance(e, SpeechStart) for e in vad.process(tone(0.5, 0.3)))
    with pytest.raises(ValueError):
        vad.update(sample_rate=8000)


@pytest.mark.parametrize("bad", [dict(threshold=0), dict(threshold=1.5), dict(frame_ms=7, sample_rate=22050),
                                 dict(stop_threshold=0.5, threshold=0.1), dict(min_silence_ms=-1)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        VADConfig(**bad)


# ---------------------------------------------------------------- the tutorial's detector, as written

def chunks_of(signal, n=1600):                       # 100 ms at 16 kHz, as in the tutorial
    return [signal[i:i + n].tobytes() for i in range(0, len(signal), n)]


def test_tutorial_vad_never_ends_speech_because_its_clock_stops_in_silence():
    vad = TutorialVAD(TutorialVADConfig())
    results = [vad.process_chunk(c) for c in chunks_of(np.concatenate([silence(1), tone(1), silence(3)]))]
    assert not any(r and r["type"] == "speech_end" for r in results)
    assert vad.is_speaking                             # still "speaking" after 3 s of digital silence
    assert vad.silence_start is not None and len(vad.speech_buffer) == 10
    # the clock only moves while the buffer grows: during all that silence it read 1000 ms
    assert vad.silence_start == 1000.0


def test_tutorial_vad_buffer_grows_without_bound():
    vad = TutorialVAD()
    talk = np.concatenate([silence(1), tone(1), silence(2)])
    sizes = []
    for _ in range(5):                                 # five utterances, well separated
        for c in chunks_of(talk):
            vad.process_chunk(c)
        sizes.append(len(vad.speech_buffer))
    assert sizes == [10, 20, 30, 40, 50]               # one merged "utterance" that only grows
    fixed = VoiceActivityDetector()
    for _ in range(5):
        fixed.process(talk)
    assert fixed.segmenter.kept_samples <= 2 * 300 * 16 + 160


def test_tutorial_vad_reports_no_start_and_clips_the_onset():
    signal = np.concatenate([silence(1), tone(1), silence(1)])
    tutorial = TutorialVADFixedClock()
    results = [r for r in (tutorial.process_chunk(c) for c in chunks_of(signal)) if r]
    assert {r["type"] for r in results} == {"speech_active", "speech_end"}     # no start event at all
    clipped = [r for r in results if r["type"] == "speech_end"][0]["audio"]
    assert len(clipped) // 2 == 16_000                 # exactly the loud chunks: nothing from before
    ours = [e for e in run(signal)[0] if isinstance(e, SpeechEnd)][0]
    assert len(ours.audio) == 16_000 + 300 * 16        # 300 ms of prefix padding kept


@pytest.mark.parametrize("noise", ["keyboard", "hum"])
def test_the_default_detector_decides_the_same_in_10_20_and_100_ms_chunks(noise):
    """The spectral detector's state (band rings, sub-window floors, transient guard) carries over
    exactly between chunks: same scores, same events, whether a Realtime client sends 10, 20 or 100 ms."""
    from labkit import speechsets

    mixture = speechsets.condition(speechsets.load("heldout"), noise, 10)[2][0]
    config = VADConfig(transient_ms=40)              # the guard's ring spans chunks too
    results = []
    for chunk_ms in (10, 20, 100, 60_000):
        vad, events, scores = VoiceActivityDetector(config), [], []
        for i in range(0, mixture.size, 16 * chunk_ms):
            events += vad.process(mixture[i:i + 16 * chunk_ms])
            scores += vad.last_scores
        results.append((summary(events + vad.flush()), scores))
    assert results[0][0], "no speech found"
    for other in results[1:]:
        assert other[0] == results[0][0]
        assert other[1] == results[0][1]


def test_the_transient_guard_ignores_clicks_and_keeps_the_onset():
    """A click train (5 ms bursts, 8 a second) over faint hiss: with the guard no utterance, without
    it the clicks read as speech; a tone's onset is still dated within a frame of its start."""
    rng = np.random.default_rng(1)
    hiss = rng.normal(0, 20, SR * 6)
    clicks = hiss.copy()
    for start in range(SR, SR * 5, SR // 8):
        clicks[start:start + 80] += rng.normal(0, 6000, 80)
    clicks = clicks.astype(np.int16)
    assert detect_segments(clicks, SR, VADConfig(transient_ms=20)), "without the guard clicks count"
    assert detect_segments(clicks, SR, VADConfig(transient_ms=40, transient_hz=0.0)) == []   # every band guarded
    signal = np.concatenate([silence(2.0), tone(1.0, 0.1, 2000.0), silence(1.0)])          # in a guarded band
    signal = (signal + rng.normal(0, 20, signal.size)).astype(np.int16)
    (start, _end), = detect_segments(signal, SR, VADConfig(transient_ms=60, transient_hz=0.0))
    assert abs(start - 2.0) <= 0.02                  # the guard's two frames of lag are dated back


def test_a_fresh_detector_does_not_learn_the_first_words_as_background():
    """A Realtime session opens, the user speaks after half a second: the noise floor has not seen a
    full sub-window yet, and must not learn the voice as background (it did: one utterance of six
    ended at 1.1 s, 1.6 s before its end, in chapter 04's clean speech)."""
    from labkit.audio.pcm import resample
    from labkit.speechdata import SAMPLE_RATE, load_clean

    clean, utterances = load_clean()
    config = VADConfig(min_speech_ms=200, min_silence_ms=500, prefix_padding_ms=300)
    for u in utterances[:6]:
        piece = clean[int((u.start_s - 0.5) * SAMPLE_RATE): int((u.end_s + 0.3) * SAMPLE_RATE)]
        audio = np.concatenate([resample(piece, SAMPLE_RATE, 24_000), np.zeros(48_000, np.int16)])
        (start, end), = detect_segments(audio, 24_000, config)
        assert abs(start - 0.5) <= 0.15 and abs(end - (0.5 + u.duration_s)) <= 0.15, (u.text, start, end)


# -- the onset's run survives a short dip (onset_dip_ms) -------------------------------------------

def segment(decisions, **config):
    """Events of a SpeechSegmenter fed 20 ms frames of decisions: 'S' starts, 'c' continues, '.' quiet."""
    cfg = VADConfig(frame_ms=20, min_speech_ms=200, min_silence_ms=500, prefix_padding_ms=300, **config)
    seg, events, frame = SpeechSegmenter(cfg), [], np.zeros(320, np.int16)
    for d in decisions:
        events += seg.step(frame, starts=d == "S", continues=d in "Sc") or []
    return events + seg.flush()


def test_the_onset_is_dated_from_before_a_short_dip():
    """A soft start, one quiet frame, then the loud part (babble's first syllables): the onset is the
    soft start, not the frame after the dip; with onset_dip_ms=0 one quiet frame ended the run."""
    decisions = "." * 25 + "ccc" + "." + "cc" + "S" * 20 + "." * 30
    start = segment(decisions, onset_dip_ms=20)[0]
    assert start.start_sample == 25 * 320
    assert segment(decisions, onset_dip_ms=0)[0].start_sample == 29 * 320
    assert segment(decisions)[0].start_sample == 25 * 320     # the default (100 ms, chosen on the tuning replica)


def test_a_dip_longer_than_onset_dip_ms_ends_the_run():
    decisions = "." * 25 + "ccc" + "..." + "cc" + "S" * 20 + "." * 30
    assert segment(decisions, onset_dip_ms=40)[0].start_sample == 31 * 320
    assert segment(decisions, onset_dip_ms=60)[0].start_sample == 25 * 320


def test_dips_do_not_add_up_to_min_speech():
    """Clicks with dips between them date the onset back, but their voiced time is not summed: the
    candidate needs min_speech_ms after the last dip, as without the rule (key clicks stay blips)."""
    clicks = "." * 20 + "cccc." * 3 + "S" + "." * 30            # 3 x 80 ms, then one loud frame
    assert segment(clicks, onset_dip_ms=100) == []
    assert segment(clicks, onset_dip_ms=0) == []
    held = "." * 20 + "cccc." * 2 + "cccc" + "S" * 7 + "." * 30  # the last run reaches 200 ms
    events = segment(held, onset_dip_ms=100)
    assert [e.type for e in events] == ["speech_start", "speech_end"]
    assert events[0].start_sample == 20 * 320 and events[0].detected_sample == (20 + 10 + 10) * 320   # 200 ms after the last dip


# -- after a pause, only a frame over the resume threshold continues (resume_snr_db) ----------------

def segment_resume(decisions, resume_after_ms=160, *, with_resumes=True, as_numpy=False):
    """Like ``segment``, with a third decision: 'S' starts, 'r' resumes, 'c' only continues, '.' quiet.
    ``with_resumes=False`` leaves it out (as the peers' decisions do); ``as_numpy`` passes numpy booleans."""
    cfg = VADConfig(frame_ms=20, min_speech_ms=200, min_silence_ms=500, prefix_padding_ms=300)
    seg = SpeechSegmenter(cfg, resume_after_samples=resume_after_ms * 16 if resume_after_ms is not None else None)
    events, frame, kind = [], np.zeros(320, np.int16), np.bool_ if as_numpy else bool
    for d in decisions:
        resumes = {"resumes": kind(d in "Sr")} if with_resumes else {}
        events += seg.step(frame, kind(d == "S"), kind(d in "Src"), **resumes) or []
    return events + seg.flush()


def test_a_weak_stretch_after_a_pause_neither_extends_nor_delays_the_turn():
    """Speech, 200 ms of pause, then 120 ms that only continues (a babble peak): the utterance ends
    where the voice did, and the silence wait runs from there; without the rule it ran on."""
    decisions = "." * 10 + "S" * 50 + "." * 10 + "c" * 6 + "." * 40
    end = [e for e in segment_resume(decisions) if e.type == "speech_end"][0]
    assert end.end_sample == 60 * 320 and end.detected_sample == (60 + 25) * 320       # 500 ms after the voice
    off = [e for e in segment_resume(decisions, None) if e.type == "speech_end"][0]
    assert off.end_sample == 76 * 320 and off.detected_sample == (76 + 25) * 320


def test_a_weak_stretch_within_the_pause_allowance_still_continues():
    """The same stretch after 140 ms (a word's own gap, under resume_after_ms): it is speech."""
    decisions = "." * 10 + "S" * 50 + "." * 7 + "c" * 6 + "." * 40
    end = [e for e in segment_resume(decisions) if e.type == "speech_end"][0]
    assert end.end_sample == 73 * 320


def test_a_frame_over_the_resume_threshold_continues_after_any_pause():
    """After 400 ms a frame that resumes (a voice going on, louder than the background's peaks)
    continues the utterance, and the weak frames after it count again (the pause is over)."""
    decisions = "." * 10 + "S" * 50 + "." * 20 + "r" + "c" * 5 + "." * 40
    ends = [e for e in segment_resume(decisions) if e.type == "speech_end"]
    assert len(ends) == 1 and ends[0].end_sample == 86 * 320


def test_the_resume_rule_belongs_to_the_spectral_detector():
    """Peers' decisions (webrtcvad, Silero) have no resume threshold: ``resumes`` left out means
    ``continues``; the RMS detector and a resume threshold at the stop threshold turn it off."""
    decisions = "." * 10 + "S" * 50 + "." * 10 + "c" * 6 + "." * 40
    assert segment_resume(decisions, with_resumes=False)[-1].end_sample == 76 * 320
    assert VoiceActivityDetector(VADConfig()).segmenter.resume_after == 160 * 16
    assert VoiceActivityDetector(VADConfig(resume_snr_db=6.0)).segmenter.resume_after is None
    assert VoiceActivityDetector(VADConfig(method="rms")).segmenter.resume_after is None
    vad = VoiceActivityDetector(VADConfig())
    vad.update(resume_snr_db=6.0)
    assert vad.segmenter.resume_after is None


def test_the_resume_threshold_lies_between_stop_and_start():
    """Retuning start or stop alone never makes a config invalid: the resume threshold is taken
    within them, and at the stop threshold the rule is off."""
    assert VADConfig().effective_resume_snr_db == 7.25
    assert VADConfig(stop_snr_db=8.0).effective_resume_snr_db == 8.0
    assert VoiceActivityDetector(VADConfig(stop_snr_db=8.0)).segmenter.resume_after is None
    assert VADConfig(start_snr_db=7.0).effective_resume_snr_db == 7.0
    with pytest.raises(ValueError, match="resume_after_ms"):
        VADConfig(resume_after_ms=-1)


def test_the_spectral_detector_applies_the_resume_threshold_to_scores():
    """Scores straight into the detector's own decision path: speech at 15 dB, a 200 ms pause at 2 dB,
    120 ms at 6.5 dB (over the stop, under the resume threshold), then 2 dB: the end is the voice's."""
    vad = VoiceActivityDetector(VADConfig(end_correction_ms=0, weak_tail_p=None))
    scores = [2.0] * 10 + [15.0] * 50 + [2.0] * 10 + [6.5] * 6 + [2.0] * 40
    class Fixed:                                    # a scorer that returns the scores given
        onset_lag_frames = 0
        def process(self, frames):
            return [scores.pop(0) for _ in range(len(frames))]
        def score_frame(self, frame):
            return scores.pop(0)
    vad.scorer = Fixed()
    events = []
    for _ in range(len(scores)):
        events += vad.process(np.zeros(320, np.int16))
    end = [e for e in events if e.type == "speech_end"][0]
    assert end.end_sample == 60 * 320


def test_numpy_decisions_drive_the_resume_rule_too():
    """Decisions may come as numpy booleans (a vectorised classifier): ``np.False_`` is not ``False``."""
    decisions = "." * 10 + "S" * 50 + "." * 10 + "c" * 6 + "." * 40
    assert segment_resume(decisions, as_numpy=True)[-1].end_sample == 60 * 320
