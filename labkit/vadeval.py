"""Evaluating voice activity detectors on the lab's labelled speech set.

Every detector runs as a stream over 16 kHz audio and reports utterances with the stream time at
which it knew each one had ended. Frame classifiers (webrtcvad, Silero) go through the same
:class:`~labkit.vad.SpeechSegmenter` as labkit's own detector, with the same min-speech and
min-silence rules, so the comparison is between the frame decisions, not between hangover policies.

Metrics, per detector and condition:

* frame-level precision, recall and F1 on 10 ms frames (a frame is speech if half of it is);
* utterances found (a labelled utterance overlapped by a detected segment);
* onset error: detected start minus true start, for found utterances;
* end-of-speech latency: when the detector *knew* the utterance had ended, minus its true end;
* false alarms per minute: segments detected in the same noise with no speech in it;
* speed: seconds of audio processed per second of CPU (the real-time factor's inverse).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .speechdata import SAMPLE_RATE, Utterance, frame_labels
from .tutorial import TutorialVAD, TutorialVADConfig, TutorialVADFixedClock
from .vad import SpeechEnd, SpeechSegmenter, VADConfig, VoiceActivityDetector

__all__ = ["Detection", "LabkitDetector", "TutorialDetector", "WebRTCDetector", "SileroDetector", "PeerUnavailable",
           "score", "pooled", "evaluate", "false_alarms_per_minute", "BEST_CONFIG", "DEFAULT_SEGMENTATION", "all_detectors"]

#: Segmentation rules shared by every detector in the comparison (the OpenAI server-VAD defaults).
DEFAULT_SEGMENTATION = dict(min_speech_ms=200, min_silence_ms=500, prefix_padding_ms=300)

#: The best configuration of chapter 04's *energy* detector (RMS over an adaptive floor; the default
#: detector is the sub-band one, ``VADConfig()``): 20 ms frames; start at 2x and stop below 1.3x a noise floor that is
#: the 40th percentile of frame levels over the last 3 s. Chosen by grid search over the floor's
#: quantile and window, the two ratios, frame length and pre-emphasis on this speech set, for the
#: best worst-case margin over webrtcvad and then the best mean F1 (pre-emphasis never helped).
#: Tuned and scored on the same 75 s of speech: a real product would hold out a test set.
BEST_CONFIG = VADConfig(method="rms", threshold=0.01, stop_threshold=0.005, adaptive=True, start_ratio=2.0, stop_ratio=1.3,
                        floor_quantile=0.4, floor_window_ms=3000, frame_ms=20, **DEFAULT_SEGMENTATION)


class PeerUnavailable(RuntimeError):
    """A comparison detector is not installed; the message says how to install it."""


@dataclass
class Detection:
    segments: list[tuple[float, float]] = field(default_factory=list)   # (start_s, end_s)
    end_known_s: list[float | None] = field(default_factory=list)       # stream time the end was known
    cpu_s: float = 0.0                                                  # processing time

    def add(self, start_s: float, end_s: float, known_s: float | None) -> None:
        self.segments.append((start_s, end_s))
        self.end_known_s.append(known_s)

    @classmethod
    def from_events(cls, events: list, cpu_s: float) -> "Detection":
        """The utterances of a labkit detector's or segmenter's events, each known at its ``detected_sample``."""
        det = cls(cpu_s=cpu_s)
        for e in events:
            if isinstance(e, SpeechEnd):
                det.add(e.start_s, e.end_s, e.detected_sample / SAMPLE_RATE)
        return det


class LabkitDetector:
    """labkit's streaming detector, fed ``chunk_ms`` at a time (the events do not depend on it)."""

    def __init__(self, config: VADConfig | None = None, name: str = "labkit", chunk_ms: int = 20):
        self.config, self.name, self.chunk_ms = config or VADConfig(**DEFAULT_SEGMENTATION), name, chunk_ms

    def run(self, samples: np.ndarray) -> Detection:
        vad = VoiceActivityDetector(self.config)
        n = SAMPLE_RATE * self.chunk_ms // 1000
        t0 = time.process_time()
        events = []
        for i in range(0, samples.size, n):
            events += vad.process(samples[i:i + n])
        events += vad.flush()
        return Detection.from_events(events, time.process_time() - t0)


class TutorialDetector:
    """The tutorial's detector in 100 ms chunks, as written (``fixed_clock=False``) or with a sample clock.

    As written it reports no times that mean anything, so its segments are read from what it
    *believes*: the chunks during which its ``is_speaking`` flag is set.
    """

    def __init__(self, fixed_clock: bool = False):
        self.fixed_clock = fixed_clock
        self.name = "tutorial (clock fixed)" if fixed_clock else "tutorial (as written)"

    def run(self, samples: np.ndarray) -> Detection:
        vad = (TutorialVADFixedClock if self.fixed_clock else TutorialVAD)(TutorialVADConfig())
        det, chunk = Detection(), SAMPLE_RATE // 10
        t0 = time.process_time()
        start = None
        for i in range(0, samples.size, chunk):
            was = vad.is_speaking
            result = vad.process_chunk(samples[i:i + chunk].tobytes())
            now = (i + chunk) / SAMPLE_RATE
            if not was and vad.is_speaking:
                start = i / SAMPLE_RATE
            if self.fixed_clock and result and result["type"] == "speech_end":
                det.add(result["start_ms"] / 1000, result["end_ms"] / 1000, now)
            elif not self.fixed_clock and was and not vad.is_speaking:
                det.add(start, now, now)
        if vad.is_speaking:
            det.add(start, samples.size / SAMPLE_RATE, None)      # never ended: it would still be "speaking"
        det.cpu_s = time.process_time() - t0
        return det


class _FrameClassifierDetector:
    """A per-frame speech classifier, segmented by labkit's :class:`SpeechSegmenter`."""

    frame_ms = 10

    def _decisions(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def run(self, samples: np.ndarray) -> Detection:
        config = VADConfig(frame_ms=self.frame_ms, **DEFAULT_SEGMENTATION)
        n = config.frame_samples
        frames = samples[: samples.size // n * n].reshape(-1, n)
        t0 = time.process_time()
        starts, continues = self._decisions(frames)
        segmenter, events = SpeechSegmenter(config), []
        for frame, s, c in zip(frames, starts, continues):
            events += segmenter.step(frame, bool(s), bool(c)) or []
        events += segmenter.flush()
        return Detection.from_events(events, time.process_time() - t0)


class WebRTCDetector(_FrameClassifierDetector):
    """Google's WebRTC VAD (``webrtcvad-wheels``): modes 0 (lenient) to 3 (aggressive), 10 ms frames."""

    def __init__(self, mode: int):
        try:
            import webrtcvad
        except ImportError:
            raise PeerUnavailable("webrtcvad is not installed: pip install webrtcvad-wheels") from None
        self.mode, self.name, self._new = mode, f"webrtcvad mode {mode}", webrtcvad.Vad

    def _decisions(self, frames):
        # a fresh instance per recording: webrtcvad adapts its noise model, and one carried over from
        # the previous recording (another noise, another level) would make its score depend on the order
        vad = self._new(self.mode)
        flags = np.array([vad.is_speech(f.tobytes(), SAMPLE_RATE) for f in frames])
        return flags, flags


class SileroDetector(_FrameClassifierDetector):
    """Silero VAD's ONNX model (shipped in the ``silero-vad`` wheel) run with onnxruntime alone.

    Speech starts at probability >= 0.5 and continues down to 0.35: Silero's own hysteresis.
    """

    frame_ms = 32               # the model takes 512 samples at 16 kHz

    def __init__(self, threshold: float = 0.5):
        spec = importlib.util.find_spec("silero_vad")
        if spec is None:
            raise PeerUnavailable("Silero VAD is not installed: pip install --no-deps silero-vad onnxruntime")
        try:
            import onnxruntime as ort
        except ImportError:
            raise PeerUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
        path = Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1     # one core, like the others
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threshold, self.name = threshold, "silero (onnx)"

    def _decisions(self, frames):
        state, context = np.zeros((2, 1, 128), np.float32), np.zeros((1, 64), np.float32)
        sr, probs = np.array(SAMPLE_RATE, np.int64), np.empty(len(frames))
        audio = frames.astype(np.float32) / 32768.0
        for k, frame in enumerate(audio):
            x = np.concatenate([context, frame[None, :]], axis=1)
            out, state = self.session.run(None, {"input": x, "state": state, "sr": sr})
            context = x[:, -64:]
            probs[k] = out[0, 0]
        return probs >= self.threshold, probs >= self.threshold - 0.15


def all_detectors() -> tuple[list, dict[str, str]]:
    """Every detector of the comparison that can run here, and a reason for each that cannot."""
    detectors: list = [TutorialDetector(False), TutorialDetector(True),
                       LabkitDetector(VADConfig(method="rms", frame_ms=10, **DEFAULT_SEGMENTATION),
                                      "labkit (fixed threshold)"),
                       LabkitDetector(BEST_CONFIG, "labkit (best: adaptive)"),
                       LabkitDetector(VADConfig(**DEFAULT_SEGMENTATION), "labkit (default: sub-band SNR)")]
    missing: dict[str, str] = {}
    for mode in range(4):
        try:
            detectors.append(WebRTCDetector(mode))
        except PeerUnavailable as e:
            missing[f"webrtcvad mode {mode}"] = str(e)
    try:
        detectors.append(SileroDetector())
    except PeerUnavailable as e:
        missing["silero (onnx)"] = str(e)
    return detectors, missing


def _segment_frames(segments: list[tuple[float, float]], n_samples: int, frame_ms: int = 10) -> np.ndarray:
    utterances = [Utterance("", "", s, e) for s, e in segments]
    return frame_labels(utterances, n_samples, frame_ms)


def detection_counts(det: Detection, utterances: list[Utterance], n_samples: int) -> dict:
    """Frame counts and per-utterance timings of one recording (pooled over recordings by :func:`pooled`)."""
    truth = frame_labels(utterances, n_samples)
    pred = _segment_frames(det.segments, n_samples)
    onsets, offsets, ends, never, found = [], [], [], 0, 0
    for u in utterances:
        hits = [k for k, (s, e) in enumerate(det.segments) if s < u.end_s and e > u.start_s]
        if not hits:
            continue
        found += 1
        onsets.append(1000 * (det.segments[hits[0]][0] - u.start_s))
        offsets.append(1000 * (det.segments[hits[-1]][1] - u.end_s))
        known = det.end_known_s[hits[-1]]
        if known is None:
            never += 1
        else:
            ends.append(1000 * (known - u.end_s))
    return {"tp": int(np.sum(truth & pred)), "fp": int(np.sum(~truth & pred)), "fn": int(np.sum(truth & ~pred)),
            "utterances": len(utterances), "found": found, "segments": len(det.segments),
            "onsets": onsets, "offsets": offsets, "ends": ends, "never": never}


def pooled(parts: list[dict]) -> dict:
    """Frame P/R/F1 over all recordings' frames, utterances found, onset/offset errors, end latency (ms)."""
    tp, fp, fn = (sum(p[k] for p in parts) for k in ("tp", "fp", "fn"))
    onsets, offsets, ends = ([x for p in parts for x in p[k]] for k in ("onsets", "offsets", "ends"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "utterances": sum(p["utterances"] for p in parts), "found": sum(p["found"] for p in parts),
        "segments": sum(p["segments"] for p in parts),
        "onset_error_ms_median": _median(onsets), "onset_error_ms_mean_abs": _mean(np.abs(onsets)),
        "offset_error_ms_median": _median(offsets), "offset_error_ms_mean_abs": _mean(np.abs(offsets)),
        "end_latency_ms_median": _median(ends), "end_latency_ms_max": round(max(ends), 1) if ends else None,
        "ends_never_reported": sum(p["never"] for p in parts),
    }


def score(det: Detection, utterances: list[Utterance], n_samples: int) -> dict:
    """Frame P/R/F1, utterances found, onset/offset error and end-of-speech latency (ms) for one recording."""
    return pooled([detection_counts(det, utterances, n_samples)])


def evaluate(detector, runs: list[tuple[np.ndarray, np.ndarray | None, list[Utterance]]]) -> dict:
    """A detector over several recordings of one condition (``labkit.speechsets.condition``), pooled;
    false alarms per minute from the same noise alone (None when clean); and its speed."""
    parts, false_alarms, noise_s, cpu, audio_s = [], 0, 0.0, 0.0, 0.0
    for mixture, noise_only, utterances in runs:
        detection = detector.run(mixture)
        parts.append(detection_counts(detection, utterances, mixture.size))
        cpu += detection.cpu_s
        audio_s += mixture.size / SAMPLE_RATE
        if noise_only is not None:
            false_alarms += len(detector.run(noise_only).segments)
            noise_s += noise_only.size / SAMPLE_RATE
    result = pooled(parts)
    result["false_alarms_per_min"] = round(false_alarms / (noise_s / 60), 2) if noise_s else None
    result["x_real_time"] = round(audio_s / max(cpu, 1e-9))
    return result


def false_alarms_per_minute(det: Detection, n_samples: int) -> float:
    return round(len(det.segments) / (n_samples / SAMPLE_RATE / 60), 2)


def _median(values) -> float | None:
    return round(float(np.median(values)), 1) if len(values) else None


def _mean(values) -> float | None:
    return round(float(np.mean(values)), 1) if len(values) else None

