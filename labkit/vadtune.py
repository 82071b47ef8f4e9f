"""How labkit's default detector was tuned: a coordinate search on the *tuning* set only.

``python -m labkit bench vad --tune`` reruns it and prints the chosen parameters; the held-out set
(:mod:`labkit.speechsets`) is never read here. The objective is the mean frame F1 over the tuning
conditions at 5 dB SNR or more (clean included); each step tries every value of one parameter with
the others fixed, keeps the best if it gains at least :data:`MIN_GAIN` (smaller differences are
a few frames of this set, and a longer envelope or window costs turn-ending latency), and the
search stops when a full pass changes nothing. Then :func:`tune_end_correction` dates the ends.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from . import speechsets
from .vad import VADConfig
from .vadeval import DEFAULT_SEGMENTATION, LabkitDetector, detection_counts, pooled

__all__ = ["SEARCH_SPACE", "MIN_GAIN", "tune", "tune_end_correction", "objective"]

#: A parameter changes only for at least this much mean F1.
MIN_GAIN = 0.001

#: The values tried for each parameter of the spectral detector.
SEARCH_SPACE = {
    "start_snr_db": (6.0, 8.0, 9.0, 10.0, 11.0, 12.0, 14.0),
    "stop_snr_db": (3.0, 4.0, 5.0, 6.0, 7.0, 8.0),
    "floor_statistic": ("mean", "min"),
    "floor_bias_db": (-1.0, 0.0, 1.0, 3.0),
    "envelope_ms": (60, 100, 140, 200),
    "floor_window_ms": (2000, 3000, 4000, 5000),
    "bands": (8, 12, 16),
    "min_level_dbfs": (-90.0, -75.0),
    "transient_ms": (20, 40, 60, 80),
    "transient_hz": (0.0, 600.0, 1200.0, 1800.0),
}


def _conditions(min_snr: float = 5):
    return [c for c in speechsets.CONDITIONS if c[1] is None or c[1] >= min_snr]


def objective(config: VADConfig, runs: dict) -> tuple[float, dict]:
    """Mean F1 over the conditions in ``runs`` (``{condition: speechsets.condition(...)}``)."""
    detector = LabkitDetector(config, chunk_ms=60_000)
    f1 = {}
    for cond, recordings in runs.items():
        parts = [detection_counts(detector.run(mix), utts, mix.size) for mix, _noise, utts in recordings]
        f1[cond] = pooled(parts)["f1"]
    return float(np.mean(list(f1.values()))), f1


def tune(start: VADConfig | None = None, *, max_passes: int = 3, log=sys.stderr) -> tuple[VADConfig, float]:
    tuning = speechsets.load("tuning")
    runs = {c: speechsets.condition(tuning, *c) for c in _conditions()}
    best = start or VADConfig(**DEFAULT_SEGMENTATION)
    best_score, _ = objective(best, runs)
    print(f"start: mean F1 {best_score:.4f}", file=log, flush=True)
    for _pass in range(max_passes):
        changed = False
        for name, values in SEARCH_SPACE.items():
            for value in values:
                if getattr(best, name) == value:
                    continue
                try:
                    candidate = replace(best, **{name: value})
                except ValueError:                  # e.g. stop above start
                    continue
                score, _ = objective(candidate, runs)
                if score >= best_score + MIN_GAIN:
                    best, best_score, changed = candidate, score, True
                    print(f"  {name}={value}: mean F1 {score:.4f}", file=log, flush=True)
        if not changed:
            break
    return best, best_score


#: The end-date corrections tried once the other parameters are chosen (ms).
END_CORRECTIONS = (0, 40, 80, 120, 160, 180)


def tune_end_correction(config: VADConfig, *, tolerance_ms: float = 150.0, log=sys.stderr) -> tuple[VADConfig, float]:
    """The correction that dates utterance ends best on the tuning set: the largest share of ends
    within ``tolerance_ms`` of the truth, over the tuning conditions at 5 dB SNR or more (what a
    turn-taking server needs: each turn's end in the right place, not a good average)."""
    tuning = speechsets.load("tuning")
    runs = {c: speechsets.condition(tuning, *c) for c in _conditions()}
    best = None
    for ms in END_CORRECTIONS:
        candidate = replace(config, end_correction_ms=ms)
        detector = LabkitDetector(candidate, chunk_ms=60_000)
        offsets = [x for recordings in runs.values() for mix, _noise, utts in recordings
                   for x in detection_counts(detector.run(mix), utts, mix.size)["offsets"]]
        share = float(np.mean(np.abs(offsets) <= tolerance_ms))
        print(f"  end_correction_ms={ms}: {share:.3f} of ends within {tolerance_ms:g} ms", file=log, flush=True)
        if best is None or share > best[1]:
            best = (candidate, share)
    return best
