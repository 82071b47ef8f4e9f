"""Is a turn's weak last island the speaker, or the noise? A small model that dates a babble tail out.

In babble, a finished sentence is often followed, after a word's gap, by a bump of the background
that scores just over the stop threshold: server VAD then ends the turn that much later (by 200 ms
and more: the noisy-room test's one late end of session 5). A speaker's own soft last syllable
after a gap scores the same, and no single measure tells the two apart (ten families of rules were
tried on the tuning set; ``tests/test_realtime_vad_noise.py`` lists them with their figures). This
module weighs them together: at a turn's end, if its last island of voiced frames follows a pause
of :data:`MIN_PAUSE_MS` to the resume rule's ``resume_after_ms`` and none of its frames reaches the
resume threshold (a *weak tail*), a logistic model of 13 measures of the island and the utterance
before it gives the probability that the island is not the speaker; over ``weak_tail_p``
(:class:`labkit.vad.VADConfig`) the end is dated before the pause, the tail left out of the turn.

The model was fitted on the tuning set only (:func:`labkit.vadtune.fit_tail_model`: 48 noise draws
of the replica's ten conditions, the default detector's weak tails labelled by where they fall
against the utterance's label; L2-regularised, lambda 1, on standardised measures), and the
threshold chosen on fresh tuning draws before the held-out set was scored once
(``tests/test_realtime_vad_noise.py`` has the figures). It is a teaching-sized model, 13 weights
and a bias; what it weighs is in :data:`MEASURES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MEASURES", "MIN_PAUSE_MS", "WeakTail", "is_weak_tail", "tail_measures", "TailModel", "TAIL_MODEL"]

#: A pause shorter than this is not one: the island is the word going on.
MIN_PAUSE_MS = 40

#: What the model weighs, in its order: the pause and the island (ms), the island's highest and mean
#: score (dB); its peak against the utterance's highest score and against its voiced frames' mean;
#: over the island's per-band peaks (dB), their spread, the band of the highest (and whether it is
#: the top band: a fricative's), their tilt (dB per band); the correlation of the island's first
#: frames' band shape with the utterance's voiced frames'; how sharply it rises (the largest step of:
#: the score of the last voiced frame before the pause, then the highest band SNR of the island's
#: first frame, then of its second); the highest score of the last 8 frames before the pause.
MEASURES = ("pause_ms", "tail_ms", "peak_db", "mean_db", "peak_vs_utterance_peak_db", "peak_vs_utterance_mean_db",
            "band_spread_db", "band_shape_correlation", "top_band", "is_top_band", "rise_db", "band_tilt_db",
            "peak_before_pause_db")


@dataclass(frozen=True)
class TailModel:
    """A logistic model on standardised measures: ``p = 1 / (1 + exp(-(w . (x - mean) / scale + bias)))``."""
    mean: tuple
    scale: tuple
    weights: tuple
    bias: float

    def probability(self, x: np.ndarray) -> float:
        z = (np.asarray(x, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias))))


#: Fitted by :func:`labkit.vadtune.fit_tail_model` on the tuning set (190 weak tails, 62 of them noise).
TAIL_MODEL = TailModel(
    mean=(72.9474, 96.2105, 6.5823, 6.4275, -11.0924, -5.9605, 3.6835, 0.0223, 4.6474, 0.4579, 4.0352, 0.2238,
          12.4953),
    scale=(34.7434, 42.3315, 0.3580, 0.2662, 4.4964, 3.4374, 0.8587, 0.4312, 2.5458, 0.4982, 2.1473, 0.8119,
           5.2024),
    weights=(+0.9818, -0.7591, -0.2485, -0.3723, -0.2947, -1.0304, +0.0418, +0.7060, +0.1358, -1.1325, +0.4764,
             +0.1490, -0.2804),
    bias=-1.3057,
)


@dataclass(frozen=True)
class WeakTail:
    """A turn's weak last island: what was measured, the model's probability that it is not the
    speaker, and where the turn would end if it were dated out: the start of its pause (None: it
    cannot be, as what is left would be shorter than ``min_speech_ms``)."""
    measures: tuple         # in :data:`MEASURES` order
    p_noise: float
    end_sample_dated_out: int | None


def is_weak_tail(scores: np.ndarray, pause: int, island: int, *, resume_db: float, frame_ms: int) -> bool:
    """Whether a turn's last island, frames ``[island, len(scores))`` after the pause ``[pause,
    island)``, is weak: the pause at least :data:`MIN_PAUSE_MS` and no frame of the island at
    ``resume_db``. (After a pause of ``resume_after_ms`` only a frame at ``resume_db`` continues a
    turn, so a weak island's pause is always shorter than that.)"""
    return (island - pause) * frame_ms >= MIN_PAUSE_MS and float(scores[island:].max()) < resume_db


def tail_measures(scores: np.ndarray, band_db: np.ndarray, pause: int, island: int, *,
                  stop_db: float, frame_ms: int) -> tuple:
    """:data:`MEASURES` of a turn's last island, frames ``[island, len(scores))``, after the pause
    ``[pause, island)``; ``scores`` (dB) and ``band_db`` (per-band SNRs, frames x bands) are the
    turn's frames from its start (or as far back as were kept)."""
    end = len(scores)
    tail, before = scores[island:end], scores[:pause]
    tail_bands, before_bands = band_db[island:end], band_db[:pause]
    voiced_before = before >= stop_db
    peak = float(tail.max())
    shape_tail = tail_bands[:3].mean(axis=0)
    shape_utterance = (before_bands[voiced_before] if voiced_before.any() else before_bands).mean(axis=0)
    a, b = shape_tail - shape_tail.mean(), shape_utterance - shape_utterance.mean()
    correlation = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
    band_peaks = tail_bands.max(axis=0)
    top = int(np.argmax(band_peaks))
    frame_peaks = tail_bands.max(axis=1)[:2]
    rise = float(np.max(np.diff(np.r_[before[-1], frame_peaks])))
    tilt = float(np.polyfit(np.arange(band_peaks.size), band_peaks, 1)[0])
    return ((island - pause) * frame_ms, (end - island) * frame_ms, peak, float(tail.mean()),
            peak - float(before.max()), peak - float(before[voiced_before].mean()) if voiced_before.any() else 0.0,
            float(band_peaks.std()), correlation, float(top), float(top == band_peaks.size - 1), rise, tilt,
            float(before[-8:].max()))
