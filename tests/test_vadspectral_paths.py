"""The sub-band scorer's computation paths agree exactly: a one-frame chunk (``score_frame``), runs of
frames between floor changes, chunks that straddle sub-windows and half frames; for every guard and
envelope length, an odd frame length, with the trace on. And its folded DFT gives a frame's band
powers (checked against numpy's FFT), and the detector's utterance audio is the input's, as int16.

The frame-by-frame decisions are pinned by ``test_vad_decisions.py``; this file pins the paths
against each other, so a change to one of them cannot drift from the others."""

from functools import cache

import numpy as np
import pytest

from labkit import noises
from labkit.audio.pcm import resample
from labkit.speechdata import SAMPLE_RATE, load_clean, mix
from labkit.vad import SpeechEnd, VADConfig, VoiceActivityDetector
from labkit.vadspectral import SubbandSNR, spread_db

SEG = {"min_speech_ms": 200, "min_silence_ms": 500, "prefix_padding_ms": 300}


@cache
def noisy(seconds: float = 14.0) -> np.ndarray:
    """The committed recording's first seconds under held-out pink noise at 10 dB."""
    clean, utterances = load_clean()
    n = int(seconds * SAMPLE_RATE)
    clean = clean[:n]
    kept = [u for u in utterances if u.end_s * SAMPLE_RATE <= n]
    unit = noises.make("pink", n, SAMPLE_RATE, noises.HELDOUT_STYLE, 6001)
    return mix(clean, kept, unit, 10.0)[0]


def stream(config: VADConfig, samples: np.ndarray, chunk: int, trace: bool = False):
    vad, events, scores, levels = VoiceActivityDetector(config), [], [], []
    if trace and vad.scorer is not None:
        vad.scorer.keep_trace = True
    for i in range(0, samples.size, chunk):
        events += vad.process(samples[i:i + chunk])
        scores += vad.last_scores
        if trace:
            levels.append(vad.scorer.last_levels)
    events += vad.flush()
    summary = [(e.type, e.start_sample, getattr(e, "end_sample", None), e.detected_sample) for e in events]
    return summary, scores, events, (np.concatenate(levels) if trace else None)


CONFIGS = {
    "default": VADConfig(**SEG),
    "no guard, min floor": VADConfig(transient_ms=20, floor_statistic="min", **SEG),
    "3-frame guard, 1-frame envelope": VADConfig(transient_ms=60, envelope_ms=20, transient_hz=0.0, **SEG),
    "10 ms frames": VADConfig(frame_ms=10, **SEG),
    "short floor window": VADConfig(floor_window_ms=300, **SEG),        # 3-frame sub-windows: runs split often
    "fixed 1 s blocks, no steady blocks": VADConfig(floor_subwindows=5, floor_span=1, floor_steady_ratio=0, **SEG),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_chunking_gives_the_same_scores_and_events(name):
    config = CONFIGS[name]
    samples = noisy()
    frame = config.frame_samples
    reference, scores, _, _ = stream(config, samples, frame)          # the one-frame path throughout
    assert any(e[0] == "speech_end" for e in reference), "no speech found"   # (a min floor runs turns together)
    for chunk in (frame // 2, 3 * frame, 5 * frame, 777, 60 * frame, samples.size):
        got, got_scores, _, _ = stream(config, samples, chunk)
        assert got == reference, (name, chunk)
        assert got_scores == scores, (name, chunk)


def test_the_trace_does_not_change_the_scores_and_records_every_frame():
    config = CONFIGS["default"]
    _, scores, _, _ = stream(config, noisy(), 320)
    for chunk in (320, 1600):
        _, traced, _, levels = stream(config, noisy(), chunk, trace=True)
        assert traced == scores
        assert levels.shape == (len(scores), config.bands) and np.all(levels > 0)


@pytest.mark.parametrize("sample_rate,frame_samples", [(16_000, 320), (16_000, 160), (22_050, 441), (8_000, 160)])
def test_the_folded_dft_gives_each_bands_mean_bin_power(sample_rate, frame_samples):
    """Band powers from the frame folded about its centre equal those of the plain windowed FFT
    (to float32 rounding), for even and odd frame lengths."""
    scorer = SubbandSNR(sample_rate, frame_samples, transient_frames=2, transient_hz=1200.0)
    rng = np.random.default_rng(frame_samples)
    t = np.arange(frame_samples) / sample_rate
    for frame in (rng.normal(0, 3000, frame_samples), 8000 * np.sin(2 * np.pi * 700 * t) + rng.normal(0, 50, frame_samples)):
        frame = np.clip(frame, -32768, 32767).astype(np.int16)
        spectrum = np.abs(np.fft.rfft(frame * scorer.window, scorer.n_fft)) ** 2
        want = spectrum @ scorer.band_matrix
        got = scorer.band_levels(frame[None])[0]
        np.testing.assert_allclose(got, want, rtol=2e-5)


def test_an_odd_frame_length_streams_the_same_in_any_chunking():
    config = VADConfig(sample_rate=22_050, frame_ms=20, **SEG)        # 441 samples: a centre sample
    samples = resample(noisy(), SAMPLE_RATE, 22_050)
    reference, scores, _, _ = stream(config, samples, 441)
    assert sum(e[0] == "speech_end" for e in reference) >= 2
    for chunk in (200, 441 * 4, samples.size):
        got, got_scores, _, _ = stream(config, samples, chunk)
        assert (got, got_scores) == (reference, scores)


def test_utterance_audio_is_the_input_as_int16_whatever_the_chunking():
    """The spectral detector keeps its frames as float32; what it hands back is the input's int16 audio."""
    samples = noisy()
    for chunk in (320, 1600):
        _, _, events, _ = stream(CONFIGS["default"], samples, chunk)
        ends = [e for e in events if isinstance(e, SpeechEnd)]
        assert ends
        for e in ends:
            assert e.audio.dtype == np.int16
            assert np.array_equal(e.audio, samples[e.audio_start_sample:e.audio_start_sample + e.audio.size])
            assert e.audio_start_sample + e.audio.size == e.end_sample


def test_a_steady_sub_window_floors_a_pause_shorter_than_a_span():
    """Steady noise with a loud burst in every second sub-window: each span holds a burst, so the
    span means sit above the noise, but a steady sub-window between bursts is the noise alone."""
    rng = np.random.default_rng(3)
    frames = rng.normal(0, 300, (500, 320))          # 20 sub-windows: the ring holds no warm-up one
    for start in range(0, 500, 50):                      # 10 loud frames in every other 25-frame sub-window
        frames[start + 5:start + 15] *= 10
    kw = dict(floor_window_frames=250, subwindows=10, span=2)
    plain = SubbandSNR(16_000, 320, **kw)
    steady = SubbandSNR(16_000, 320, **kw, steady_ratio=1.6, steady_drop_db=8)
    floors = []
    for s in (plain, steady):
        s.keep_trace = True
        s.process(frames.astype(np.int16))
        floors.append(s.last_floors[-1])
    noise = plain.band_levels(rng.normal(0, 300, (400, 320)).astype(np.int16)).mean(axis=0)
    assert np.all(floors[0] > 10 * noise)                # the bursts lift every span mean
    assert np.allclose(floors[1], 10 ** -0.8 * floors[0])           # lowered to the noise, but by at most 8 dB


def test_the_band_spread_is_numpys_std_of_the_levels_in_db_to_the_bit():
    """``spread_db`` (the steady-block test's, written out for speed) against ``np.std`` itself, on
    levels as the scorer holds them (float32, rows running backwards in memory) and as arrays."""
    rng = np.random.default_rng(5)
    for frames, bands in ((25, 8), (10, 12), (3, 1)):
        levels = (10.0 ** rng.uniform(-9, 3, (frames, bands))).astype(np.float32)
        levels[0, 0] = 0.0                                   # digital silence: floored at 1e-30
        for view in (levels, levels[::-1], np.ascontiguousarray(levels, np.float64)):
            expected = (10 * np.log10(np.maximum(view, 1e-30, dtype=np.float64))).std(axis=0)
            assert np.array_equal(spread_db(view), expected)
