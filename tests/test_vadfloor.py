"""The sub-band scorer's noise floor: the lowest mean of ``span`` consecutive sub-windows (a window
sliding a sub-window at a time), checked against a direct computation from the band levels; its
warm-up, which must not learn a voice that starts before the first full window; and why it slides
(a pause that fixed blocks miss)."""

import numpy as np
import pytest

from labkit.vad import VADConfig
from labkit.vadspectral import SubbandSNR

RATE, FRAME = 16_000, 320


def pink(n: int, seed: int, level: float = 300.0) -> np.ndarray:
    """1/f noise (int16-valued float32), spectrum shaped in the frequency domain."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    x = np.fft.irfft(spectrum, n)
    return np.round(level * x / x.std()).astype(np.float32)


def floors_by_frame(scorer: SubbandSNR, frames: np.ndarray) -> np.ndarray:
    scorer.keep_trace = True
    scorer.process(frames)
    return scorer.last_floors


def reference_floor(levels: np.ndarray, sub_len: int, subwindows: int, span: int, upto: int) -> np.ndarray:
    """The floor in force for frame ``upto`` (warm-up over): from the sub-windows completed before it."""
    done = upto // sub_len
    means = np.array([levels[k * sub_len:(k + 1) * sub_len].mean(axis=0) for k in range(done)])[-subwindows:]
    windows = np.array([means[k:k + span].mean(axis=0) for k in range(len(means) - span + 1)])
    return windows.min(axis=0)


@pytest.mark.parametrize("subwindows, span", [(10, 2), (10, 3), (5, 1), (8, 4)])
def test_the_floor_is_the_lowest_sliding_mean_of_the_band_levels(subwindows, span):
    # a background whose level steps through four values, so the lowest window moves
    frames = np.concatenate([pink(60 * FRAME, 1, level) for level in (300, 120, 500, 200)] * 2).reshape(-1, FRAME)
    scorer = SubbandSNR(RATE, FRAME, floor_window_frames=250, subwindows=subwindows, span=span, min_level_dbfs=-120)
    floors = floors_by_frame(scorer, frames)
    levels = scorer.band_levels(frames)
    sub_len = 250 // subwindows
    checked = 0
    for upto in range(span * sub_len, len(frames), 7):
        np.testing.assert_allclose(floors[upto], reference_floor(levels, sub_len, subwindows, span, upto), rtol=1e-5)
        checked += 1
    assert checked > 40


def test_warm_up_does_not_learn_a_voice_that_starts_before_the_first_window_completes():
    """Noise for 0.6 s, then a loud harmonic sound: the first sub-window (0.5 s) is noise, the
    second mostly the sound; the floor after them (the mean of both, a 1 s window) must still be
    the noise's: the warm-up's gate holds for the whole first window, not just its first block."""
    quiet = pink(30 * FRAME, 2)                                                # 0.6 s
    t = np.arange(40 * FRAME) / RATE
    harmonics = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 30))            # 150 Hz to 4.4 kHz
    voice = pink(40 * FRAME, 3) + (3000 * harmonics).astype(np.float32)
    frames = np.round(np.concatenate([quiet, voice])).reshape(-1, FRAME)
    scorer = SubbandSNR(RATE, FRAME, floor_window_frames=250, subwindows=10, span=2, min_level_dbfs=-120)
    floors = floors_by_frame(scorer, frames)
    noise_mean = scorer.band_levels(quiet.reshape(-1, FRAME)).mean(axis=0)
    after_warm_up = floors[55]                                                 # 1.1 s: both sub-windows complete
    assert np.all(np.abs(10 * np.log10(after_warm_up / noise_mean)) < 1.5), 10 * np.log10(after_warm_up / noise_mean)
    # without the gate it would have learnt the sound: its band levels are far above the noise's
    assert np.max(10 * np.log10(scorer.band_levels(frames[30:50]).mean(axis=0) / noise_mean)) > 15


def test_a_pause_between_fixed_blocks_is_found_by_the_sliding_window():
    """A 1 s pause that straddles two fixed 1 s blocks: the lowest of five fixed blocks contains the
    loud sound, the lowest 1 s window sliding by 0.5 s is the pause."""
    loud = lambda n, seed: pink(n * FRAME, seed) * 10                          # noqa: E731
    quiet = pink(50 * FRAME, 4)
    # blocks of 50 frames: loud 0-74, quiet 75-124 (straddles blocks 1 and 2), loud 125-250
    frames = np.concatenate([loud(75, 5), quiet, loud(126, 6)]).reshape(-1, FRAME)
    fixed = floors_by_frame(SubbandSNR(RATE, FRAME, subwindows=5, span=1, min_level_dbfs=-120), frames)[-1]
    sliding_scorer = SubbandSNR(RATE, FRAME, subwindows=10, span=2, min_level_dbfs=-120)
    sliding = floors_by_frame(sliding_scorer, frames)[-1]
    noise_mean = sliding_scorer.band_levels(quiet.reshape(-1, FRAME)).mean(axis=0)
    assert np.all(10 * np.log10(fixed / noise_mean) > 8)                       # half loud: raised by ~14 dB
    assert np.all(np.abs(10 * np.log10(sliding / noise_mean)) < 1.5)


def test_floor_span_is_checked():
    with pytest.raises(ValueError, match="floor_span"):
        VADConfig(floor_subwindows=10, floor_span=11)
    with pytest.raises(ValueError, match="floor_span"):
        VADConfig(floor_span=0)
