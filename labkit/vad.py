"""Voice activity detection, streaming and sans-I/O: by sub-band SNR (the default) or by frame energy (RMS).

Feed :class:`VoiceActivityDetector` audio in chunks of any size; it returns the events each chunk
completed. It never reads a clock, does no I/O and never sleeps: **time is the sample counter**, so
the same audio gives the same events to the sample, however it is chunked and however fast it is fed.

How it decides, frame by frame (``frame_ms`` of audio each):

* a frame is *loud* when its score reaches the start threshold; once a candidate utterance has begun,
  frames count as voiced down to the lower **stop threshold** (hysteresis: speech that dips a little
  does not flicker on and off);
* a candidate becomes speech once it holds ``min_speech_ms`` of voiced frames: ``SpeechStart`` is
  emitted then, dated at its onset: the first frame of the run of voiced frames (above the stop
  threshold) that led up to the loud one, looked for at most ``prefix_padding_ms`` back; the run
  survives a dip of up to ``onset_dip_ms`` (a soft first syllable, then a breath of quiet, then
  the loud part), but its voiced time counts from the last dip. A cough shorter than
  ``min_speech_ms`` never starts anything;
* speech ends after ``min_silence_ms`` of quiet frames: ``SpeechEnd`` is emitted then, with the end
  of the last voiced frame, and the utterance's audio from ``prefix_padding_ms`` before its start;
  spectral: if the turn ends with a *weak tail* (an island after a short pause, never loud enough to
  resume), :mod:`labkit.vadtail`'s model judges whether it is the speaker or a bump of the noise, and
  a tail judged the noise (``weak_tail_p``) is dated out: the end falls before its pause;
* ``method="spectral"`` (the default) decides on the frame's **sub-band SNR** instead of its RMS
  (:mod:`labkit.vadspectral`): each of a dozen bands of the voice's range is compared with its own
  noise floor, so stationary noise (pink, hum, fan, white), however loud, scores near 0 dB and a
  voice above it scores high. A frame starts an utterance at ``start_snr_db`` and continues it down
  to ``stop_snr_db``; no band's floor goes below ``min_level_dbfs``, so faint hiss never counts. A
  transient guard (``transient_ms``) counts each band at its lowest level over that span, so a key
  click or a tap, gone within a frame, does not start speech. Every parameter of it
  was chosen on a tuning set and scored on a held-out set that shares nothing with it
  (:mod:`labkit.speechsets`, ``python -m labkit bench vad``);
* ``method="rms"``: a frame is *loud* by its RMS (chapter 04's first steps). With ``adaptive=True``
  both thresholds rise above a running **noise floor**: the level of the
  quietest frame in the last ``floor_window_ms`` ("minimum statistics"). Speech has pauses, so that
  minimum stays at the background level even while someone talks, and when the background gets
  louder for good, the floor follows within one window. One setting then works in a quiet room and
  a noisy one. The fixed thresholds remain the lower bounds.

The source tutorial's detector (kept in :mod:`labkit.tutorial`) computed time from the length of a
buffer that only grows during speech, so its clock stopped in silence and speech never ended.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from .audio.pcm import to_int16
from .vadspectral import SubbandSNR
from .vadtail import TAIL_MODEL, WeakTail, is_weak_tail, tail_measures

__all__ = ["VADConfig", "SpeechStart", "SpeechEnd", "SpeechSegmenter", "VoiceActivityDetector", "detect_segments",
           "frame_rms"]


METHODS = ("spectral", "rms")


@dataclass(frozen=True)
class VADConfig:
    #: ``"spectral"``: sub-band SNR over per-band noise floors (the default, see the module doc);
    #: ``"rms"``: frame energy against ``threshold`` (fixed, or above a noise floor with ``adaptive``).
    method: str = "spectral"
    #: spectral: mean sub-band SNR (dB) that starts an utterance, and that continues one.
    start_snr_db: float = 9.0
    stop_snr_db: float = 6.0
    #: spectral: once an utterance has paused for ``resume_after_ms`` (frames under the stop
    #: threshold), a frame must reach this SNR to continue it. The peaks of a babbling background
    #: score 6-7.7 dB (the loudest 1% of 10 dB babble's frames outside speech: 6.6 dB and up), just
    #: over the stop threshold, and after a pause they would hold a finished turn open; a voice
    #: going on after a pause is louder. Chosen with ``resume_after_ms`` on the tuning set's replica
    #: of the noisy-room test over eight noise draws (:func:`labkit.vadtune.tune_resume`), on session
    #: 9's generation of the set (1,632 -> 1,660 of 1,752 turns exact); on the packaged generation,
    #: rule off -> on: 1,616 -> 1,649, babble 10 dB 166 -> 181 of 192, mean frame F1 0.9656 -> 0.9662.
    resume_snr_db: float = 7.25
    #: spectral: how long a pause lasts before ``resume_snr_db`` applies (0: from the first quiet
    #: frame). Shorter pauses are a word's own gaps. ``resume_snr_db`` is taken within
    #: [``stop_snr_db``, ``start_snr_db``] (:attr:`effective_resume_snr_db`); at or under the stop
    #: threshold the rule is off, so retuning start or stop alone never makes a config invalid.
    resume_after_ms: int = 160
    #: spectral: bands, log-spaced over the voice's range (6 kHz rather than 4 was chosen on the
    #: tuning set in session 8: mean frame F1 0.9622 -> 0.9649 on its own).
    bands: int = 8
    band_lo_hz: float = 200.0
    band_hi_hz: float = 6000.0
    #: spectral: how far the floor (a band's minimum over ``floor_window_ms``) is raised.
    floor_bias_db: float = 0.0
    #: spectral: each band's envelope is its highest level over this long (a voice's bands stay up).
    envelope_ms: int = 100
    #: spectral: the envelope keeps the score up for up to ``envelope_ms`` after a voice stops; an
    #: utterance's end is dated this much earlier, and the silence wait counts it as waited.
    end_correction_ms: int = 40
    #: spectral: the floor is built from each sub-window's ``"mean"`` level, or its lowest
    #: (``"min"``, minimum statistics), over ``floor_window_ms``.
    floor_statistic: str = "mean"
    #: spectral: the floor window is cut into this many sub-windows (blocks), and a band's floor is
    #: the lowest mean of ``floor_span`` consecutive blocks (a window of ``floor_window_ms *
    #: floor_span / floor_subwindows`` sliding a block at a time; with ``"min"``, the lowest block).
    #: A pause must hold such a window for the floor to be the noise alone: 1 s sliding by 0.5 s
    #: finds pauses of about a second that 1 s blocks fixed in time miss (speech a few dB above the
    #: noise at the end of a sentence was then under a floor raised by the speech around it), and is
    #: long enough that babble and music keep a floor at their typical level, not at their dips.
    floor_subwindows: int = 10
    floor_span: int = 2
    #: spectral, with ``floor_span > 1``: a block is **steady** when, in every band, its frames'
    #: levels (dB) spread less than this many times they do in white noise (the scatter of a band's
    #: own bins); a steady block's own mean may then be the floor, below the lowest span mean, but
    #: by at most ``floor_steady_drop_db``. A pause shorter than a span in steady noise (pink, hum,
    #: a fan) then still shows the noise alone, while music and typing, seldom steady in every band
    #: at once, keep their span floor. 0: off.
    floor_steady_ratio: float = 1.6
    floor_steady_drop_db: float = 8.0
    #: spectral: the transient guard: a band counts at its lowest level over this long, so a click
    #: shorter than that (a key, a tap) scores nothing; ``frame_ms`` (one frame) turns it off. The
    #: onset it delays is dated back.
    transient_ms: int = 40
    #: spectral: the guard applies to the bands from this frequency up (clicks are bright; below,
    #: the lower of two noisy levels would only bias a quiet voice down in pink or brown noise).
    transient_hz: float = 1200.0
    #: spectral: no band's floor is taken below that of white noise at this level, so digital
    #: silence and faint hiss never count as speech.
    min_level_dbfs: float = -75.0
    #: rms: RMS (full scale = 1.0) a frame must reach to start an utterance.
    threshold: float = 0.02
    #: RMS below which a frame counts as silence once speech has begun; None: ``0.5 * threshold``.
    stop_threshold: float | None = None
    #: Voiced time an utterance needs before it counts (shorter bursts are ignored).
    min_speech_ms: int = 200
    #: Quiet time that ends an utterance.
    min_silence_ms: int = 500
    #: Audio kept from before the first loud frame (so the first syllable is not clipped).
    prefix_padding_ms: int = 300
    sample_rate: int = 16_000
    #: Analysis frame length. 10-30 ms is usual for speech.
    frame_ms: int = 20
    #: Raise the thresholds above a running estimate of the background noise.
    adaptive: bool = False
    #: With ``adaptive``: start needs RMS >= floor x this, stop below floor x ``stop_ratio``.
    start_ratio: float = 4.0
    stop_ratio: float = 2.0
    #: With ``adaptive``: the floor is this quantile of frame levels in a trailing window of
    #: ``floor_window_ms`` (0.0: the quietest frame, "minimum statistics").
    floor_window_ms: int = 5000
    floor_quantile: float = 0.0
    #: Pre-emphasis ``y[n] = x[n] - a * x[n-1]`` before measuring energy (0.97 is the classic speech
    #: front end): a gentle high-pass that removes hum and rumble, which carry energy but no speech.
    pre_emphasis: float | None = None
    #: A single utterance is cut after this long, which bounds the memory it holds; None: never.
    max_speech_ms: int | None = 30_000
    #: Before a start: the run of voiced frames its onset is dated from survives a dip under the
    #: stop threshold this long (0: one quiet frame ends the run). Chosen on the tuning set's replica
    #: of the Realtime noisy-room test (:func:`labkit.vadtune.realtime_turns`).
    onset_dip_ms: int = 100
    #: spectral: a turn's weak last island (after a pause of 40 ms up to ``resume_after_ms``, no
    #: frame of it at ``resume_snr_db``) is dated out of the utterance when :mod:`labkit.vadtail`'s
    #: model gives it more than this probability of being the noise, not the speaker (None: never
    #: judged). The end then falls before the pause. Chosen on fresh draws of the tuning set's
    #: replica of the noisy-room test (0.3-0.6 within a turn of the most exact; ties to the higher).
    weak_tail_p: float | None = 0.6

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.frame_ms <= 0 or (self.sample_rate * self.frame_ms) % 1000:
            raise ValueError(f"frame_ms={self.frame_ms} must be a whole number of samples at {self.sample_rate} Hz")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.stop_snr_db > self.start_snr_db:
            raise ValueError("stop_snr_db must be <= start_snr_db")
        if self.bands < 1 or not 0 < self.band_lo_hz < self.band_hi_hz:
            raise ValueError("bands must be >= 1 and 0 < band_lo_hz < band_hi_hz")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0 <= self.floor_quantile < 1:
            raise ValueError("floor_quantile must be in [0, 1)")
        if self.pre_emphasis is not None and not 0 < self.pre_emphasis < 1:
            raise ValueError("pre_emphasis must be in (0, 1)")
        if self.stop_threshold is not None and not 0 < self.stop_threshold <= self.threshold:
            raise ValueError("stop_threshold must be in (0, threshold]")
        if not 1 <= self.floor_span <= self.floor_subwindows:
            raise ValueError("floor_span must be between 1 and floor_subwindows")
        if self.floor_statistic not in ("mean", "min"):
            raise ValueError("floor_statistic must be 'mean' or 'min'")
        if self.transient_ms < 0 or self.envelope_ms < 0 or self.end_correction_ms < 0:
            raise ValueError("transient_ms, envelope_ms and end_correction_ms must be >= 0")
        if self.weak_tail_p is not None and not 0 <= self.weak_tail_p <= 1:
            raise ValueError(f"weak_tail_p must be in [0, 1] or None, got {self.weak_tail_p}")
        for name in ("min_speech_ms", "min_silence_ms", "prefix_padding_ms", "onset_dip_ms", "resume_after_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    @property
    def effective_resume_snr_db(self) -> float:
        return min(max(self.resume_snr_db, self.stop_snr_db), self.start_snr_db)

    @property
    def effective_stop_threshold(self) -> float:
        return self.stop_threshold if self.stop_threshold is not None else 0.5 * self.threshold


@dataclass(frozen=True)
class SpeechStart:
    start_s: float          # the first loud frame's start, in the stream's own time
    start_sample: int
    detected_sample: int    # where in the stream the detector knew (start + min_speech, to a frame)

    type: str = field(default="speech_start", init=False)


@dataclass(frozen=True)
class SpeechEnd:
    start_s: float
    end_s: float            # the end of the last voiced frame
    start_sample: int
    end_sample: int
    detected_sample: int    # where the detector knew (end + min_silence, to a frame)
    audio: np.ndarray = field(repr=False)   # int16, from start - prefix_padding to end
    audio_start_sample: int = 0
    forced: bool = False    # cut at max_speech_ms: the speech goes on (a SpeechStart follows)
    #: the end of the last voiced frame (``end_sample`` is dated ``end_correction_ms`` earlier)
    voiced_until: int = 0
    #: where the turn's last island of voiced frames began, and the pause before it (the end of the
    #: voiced frame before it; None: the turn is one island)
    last_island_sample: int = 0
    last_pause_sample: int | None = None
    #: the turn's weak last island, as :mod:`labkit.vadtail` judged it (None: it had none)
    weak_tail: WeakTail | None = field(default=None, repr=False)
    #: set when the weak tail was dated out: the end is before its pause, and the audio a Realtime
    #: session commits ends here, the new end plus the silence wait (as ``audio_end_ms`` is defined);
    #: the tail lies within that wait, and the rest of the wait, to ``detected_sample``, stays in the
    #: input buffer
    commit_sample: int | None = None

    type: str = field(default="speech_end", init=False)

    @property
    def tail_dated_out(self) -> bool:
        return self.commit_sample is not None

    @property
    def committed_until(self) -> int:
        """Where the turn's committed audio ends: the detection, or the end plus the silence wait
        when a weak tail was dated out."""
        return self.commit_sample if self.commit_sample is not None else self.detected_sample

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def frame_rms(samples: np.ndarray) -> float:
    """Root-mean-square level of int16 samples, on a 0..1 scale (1.0 = a full-scale square wave)."""
    x = samples.astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


_EMPTY = np.zeros(0, np.int16)     # no partial frame waiting (shared: never written)
_INT16 = np.dtype(np.int16)
_SILENCE, _PENDING, _SPEECH = "silence", "pending", "speech"


class SpeechSegmenter:
    """Turns per-frame decisions into utterances: the timing half of a VAD, with no audio analysis.

    Each frame comes with two decisions: ``starts`` (loud enough to begin an utterance) and
    ``continues`` (loud enough to count as voiced once one has begun). An energy detector derives
    them from two thresholds; a classifier such as webrtcvad gives one answer for both. A third,
    ``resumes``, is what continues an utterance after a pause of ``resume_after`` samples (the
    spectral detector's ``resume_snr_db``); by default it is ``continues``. The rules
    for min speech, min silence, prefix padding and maximum length live here, once, so every
    detector in the lab's evaluation is segmented the same way.
    """

    def __init__(self, config: VADConfig, end_lag_samples: int = 0, onset_lag_samples: int = 0,
                 resume_after_samples: int | None = None):
        self.config = config
        #: after this long under ``continues`` (None: never), only ``resumes`` counts as voiced
        self.resume_after = resume_after_samples
        #: a feature that stays up this long after the voice stops (see ``VoiceActivityDetector``):
        #: the end is dated that much earlier, and the silence wait counts it as already waited
        self.end_lag = end_lag_samples
        #: a feature that rises this late at an onset (the spectral detector's transient guard):
        #: the start is dated that much earlier (within the audio kept for prefix padding)
        self.onset_lag = onset_lag_samples
        self.samples_seen = 0
        self.state = _SILENCE
        self._history: deque[np.ndarray] = deque()  # frames kept for prefix padding and the utterance
        self._history_start = 0                     # sample index of the first kept frame
        self._start = 0                             # first loud frame of the current candidate
        self._voiced = 0                            # voiced samples in the current candidate
        self._last_voiced_end = 0
        self._quiet_run = 0                         # samples since the last voiced frame
        self._rise_start: int | None = None         # in silence: where the current run of voiced frames began
        self._dip = 0                               # in silence: quiet samples since that run's last voiced frame
        self._run_start: int | None = None          # in silence: where that run's last stretch without a dip began
        self._pause_start: int | None = None        # in speech: where the pause before the last island began
        self._island_start = 0                      # ... and where that island (a run of voiced frames) began

    @property
    def config(self) -> VADConfig:
        return self._config

    @config.setter
    def config(self, config: VADConfig) -> None:
        """A new config (a retuned detector): what ``step`` derives from it is derived once, here."""
        self._config = config
        self._frame = config.frame_samples
        self._ms = 1000 / config.sample_rate
        self._prefix = config.prefix_padding_ms * config.sample_rate // 1000
        self._max_dip = config.onset_dip_ms * config.sample_rate // 1000

    def step(self, frame: np.ndarray, starts: bool, continues: bool, resumes: bool | None = None) -> list | None:
        """Account for one frame (``frame_samples`` samples); returns the events it completed."""
        cfg, n, ms = self._config, self._frame, self._ms
        frame_start = self.samples_seen
        self.samples_seen = frame_start + n
        self._history.append(frame)

        if self.state == _SILENCE:
            out = None
            if starts:
                # Hysteresis in time: the onset is where the level rose above the *stop* threshold
                # (the soft start of a word), looked for at most prefix_padding_ms back.
                rise = self._rise_start if self._rise_start is not None else frame_start
                run = self._run_start if self._run_start is not None else frame_start
                earliest = frame_start - self._prefix // n * n
                self._start = max(self._history_start, rise - self.onset_lag, earliest)
                # voiced time is counted from the last dip the run survived: a train of clicks with
                # dips between them does not add up to min_speech_ms
                voiced_from = max(self._history_start, run - self.onset_lag, earliest)
                self.state, self._rise_start, self._run_start, self._dip = _PENDING, None, None, 0
                self._voiced, self._quiet_run, self._last_voiced_end = self.samples_seen - voiced_from, 0, self.samples_seen
                self._pause_start, self._island_start = None, self._start
                if self._voiced * ms >= cfg.min_speech_ms:
                    out = [self._confirm()]
            else:
                if continues:
                    if self._rise_start is None:
                        self._rise_start = frame_start
                    if self._run_start is None:
                        self._run_start = frame_start
                    self._dip = 0
                else:
                    self._run_start = None
                    if self._rise_start is not None:
                        self._dip += n
                        if self._dip > self._max_dip:
                            self._rise_start, self._dip = None, 0
                keep_from = self.samples_seen - 2 * self._prefix
                if self._history_start + n <= keep_from:      # (checked here: a call per frame costs)
                    self._trim_history(keep_from)
            return out

        if (continues and resumes is not None and not resumes and self.resume_after is not None
                and self._quiet_run >= self.resume_after):
            continues = False                      # paused too long for a frame this weak to go on
        if continues:
            if self._quiet_run:                    # an island after a pause (what a weak tail is judged on)
                self._pause_start, self._island_start = self._last_voiced_end, frame_start
            self._voiced += n
            self._quiet_run = 0
            self._last_voiced_end = self.samples_seen
        else:
            self._quiet_run += n

        quiet_ms = (self._quiet_run + self.end_lag) * ms if self._quiet_run else 0
        if self.state == _PENDING:
            if continues and self._voiced * ms >= cfg.min_speech_ms:
                return [self._confirm()]
            if quiet_ms >= cfg.min_silence_ms:
                self._reset_to_silence()      # a blip, not speech: nothing is emitted
            return None

        # _SPEECH
        if quiet_ms >= cfg.min_silence_ms:
            return [self._end(detected=self.samples_seen)]
        # cut at the maximum length, on a voiced frame (cut in a pause, the rest would be a sliver)
        if cfg.max_speech_ms is not None and continues and (self.samples_seen - self._start) * ms >= cfg.max_speech_ms:
            end = self._end(detected=self.samples_seen, cut_at=self.samples_seen)
            return [end, self._begin_continuation()]
        return None

    def flush(self) -> list:
        if self.state == _SPEECH:
            return [self._end(detected=self.samples_seen)]
        self._reset_to_silence()
        return []

    @property
    def kept_samples(self) -> int:
        """Audio held right now (bounded by prefix + max utterance + min silence)."""
        return len(self._history) * self._frame

    def _confirm(self) -> SpeechStart:
        self.state = _SPEECH
        return SpeechStart(self._start / self.config.sample_rate, self._start, self.samples_seen)

    def _end(self, detected: int, cut_at: int | None = None) -> SpeechEnd:
        sr = self.config.sample_rate
        end = cut_at if cut_at is not None else max(self._start + self._frame, self._last_voiced_end - self.end_lag)
        audio_start = max(self._history_start, self._start - self._prefix)
        # (the spectral detector keeps its frames as float32, whole numbers: converted back here)
        kept = np.concatenate(self._history).astype(np.int16, copy=False) if self._history else np.zeros(0, np.int16)
        audio = kept[audio_start - self._history_start: end - self._history_start]
        event = SpeechEnd(self._start / sr, end / sr, self._start, end, detected, audio, audio_start,
                          forced=cut_at is not None, voiced_until=self._last_voiced_end,
                          last_pause_sample=self._pause_start, last_island_sample=self._island_start)
        self._reset_to_silence()
        return event

    def _begin_continuation(self) -> SpeechStart:
        """After a forced cut, the speech goes on as a new utterance starting right here."""
        self.state, self._start, self._voiced = _SPEECH, self.samples_seen, 0
        self._last_voiced_end, self._quiet_run = self.samples_seen, 0
        self._pause_start, self._island_start = None, self._start
        return SpeechStart(self._start / self.config.sample_rate, self._start, self.samples_seen)

    def _reset_to_silence(self) -> None:
        self.state, self._rise_start, self._run_start, self._dip = _SILENCE, None, None, 0
        self._voiced = self._quiet_run = 0
        self._trim_history(keep_from=self.samples_seen - 2 * self._prefix)

    def _trim_history(self, keep_from: int) -> None:
        n = self._frame
        while self._history and self._history_start + n <= keep_from:
            self._history.popleft()
            self._history_start += n


class VoiceActivityDetector:
    """Streaming energy VAD: ``events = vad.process(chunk)``; at end of stream, ``vad.flush()``."""

    def __init__(self, config: VADConfig | None = None):
        self.config = config or VADConfig()
        self._frame = self.config.frame_samples
        self._frame_shape = (self._frame,)
        self._partial = np.zeros(0, np.int16)       # samples waiting to fill a frame
        self.scorer = self._new_scorer()
        #: spectral: the SNRs (dB) that start, continue and resume an utterance, read once per frame
        self._snr_thresholds = self._thresholds()
        self.segmenter = SpeechSegmenter(self.config, end_lag_samples=self._end_lag(),
                                         onset_lag_samples=self._onset_lag(), resume_after_samples=self._resume_after())
        self.noise_floor: float | None = None       # adaptive only
        self._floor_window: deque[tuple[int, float]] = deque()   # (frame index, rms), rms increasing
        self._floor_levels: deque[float] = deque()               # for a quantile floor: the window's levels
        self._floor_sorted: list[float] = []
        self._last_sample = 0.0                                  # pre-emphasis state
        #: (first sample, frames, RMS levels or None) of the last ``process`` call
        self._last_chunk: tuple = (0, np.zeros((0, self._frame), np.int16), None)
        #: spectral: the sub-band SNR (dB) of each frame the last ``process`` call analysed.
        self.last_scores: list[float] = []

    def _end_lag(self) -> int:
        """spectral: the band envelope keeps the score up after the voice stops; ends are dated this much earlier."""
        cfg = self.config
        return cfg.end_correction_ms * cfg.sample_rate // 1000 if cfg.method == "spectral" else 0

    def _thresholds(self) -> tuple[float, float, float]:
        cfg = self.config
        return cfg.start_snr_db, cfg.stop_snr_db, cfg.effective_resume_snr_db

    def _resume_after(self) -> int | None:
        """spectral: the pause after which ``resume_snr_db`` applies (None: it never does)."""
        cfg = self.config
        if cfg.method != "spectral" or cfg.effective_resume_snr_db <= cfg.stop_snr_db:
            return None
        return cfg.resume_after_ms * cfg.sample_rate // 1000

    def _onset_lag(self) -> int:
        """spectral: the transient guard raises the score this late at an onset; starts are dated this much earlier."""
        return self.scorer.onset_lag_frames * self._frame if self.scorer is not None else 0

    @property
    def last_frames(self) -> list[tuple[float, float]]:
        """(time in s, RMS) of every frame the last ``process`` call analysed: for live plots."""
        t0, frames, levels = self._last_chunk
        if levels is None:             # spectral: the RMS is computed only when a plot asks for it
            levels = self._levels(frames.reshape(-1, self._frame), track=False)
        sr = self.config.sample_rate
        return [((t0 + k * self._frame) / sr, float(r)) for k, r in enumerate(levels)]

    def _tail_frames(self) -> int:
        """spectral: the frames kept to judge a turn's weak tail on (:meth:`_judge_tail`): the longest
        utterance (30 s when ``max_speech_ms`` is None; a longer one is judged on its last 30 s), its
        silence wait and the prefix its onset may be dated back into."""
        cfg = self.config
        return (self._tail_window_ms() + cfg.min_silence_ms + 2 * cfg.prefix_padding_ms) // cfg.frame_ms + 2

    def _tail_window_ms(self) -> int:
        """A turn is judged on its last this long: all of it, unless ``max_speech_ms`` is None."""
        return self.config.max_speech_ms or 30_000

    def _new_scorer(self) -> SubbandSNR | None:
        self._scorer_origin: int | None = None     # the segmenter's sample at the new scorer's first frame
        self._tail_keep = self._tail_frames()
        cfg = self.config
        if cfg.method != "spectral":
            return None
        return SubbandSNR(cfg.sample_rate, cfg.frame_samples, bands=cfg.bands, lo_hz=cfg.band_lo_hz,
                          hi_hz=cfg.band_hi_hz, floor_window_frames=cfg.floor_window_ms // cfg.frame_ms,
                          subwindows=cfg.floor_subwindows, span=cfg.floor_span,
                          steady_ratio=cfg.floor_steady_ratio, steady_drop_db=cfg.floor_steady_drop_db,
                          bias_db=cfg.floor_bias_db, min_level_dbfs=cfg.min_level_dbfs,
                          envelope_frames=max(1, cfg.envelope_ms // cfg.frame_ms), floor_statistic=cfg.floor_statistic,
                          transient_frames=max(1, cfg.transient_ms // cfg.frame_ms), transient_hz=cfg.transient_hz,
                          keep_frames=self._tail_keep + 1)

    # -- tuning a running detector -----------------------------------------------------------
    def update(self, **changes) -> None:
        """Retune thresholds and durations while running (sample rate and frame length are fixed)."""
        new = replace(self.config, **changes)
        if (new.sample_rate, new.frame_ms) != (self.config.sample_rate, self.config.frame_ms):
            raise ValueError("sample_rate and frame_ms cannot change on a running detector")
        if new.end_correction_ms != self.config.end_correction_ms:
            self.segmenter.end_lag = new.end_correction_ms * new.sample_rate // 1000
        features = ("method", "bands", "envelope_ms", "floor_statistic",
                    "transient_ms", "transient_hz", "band_lo_hz", "band_hi_hz", "floor_window_ms", "floor_subwindows", "floor_span", "floor_steady_ratio", "floor_steady_drop_db", "floor_bias_db", "min_level_dbfs")
        rebuild = any(getattr(new, k) != getattr(self.config, k) for k in features)
        self.config = self.segmenter.config = new
        self.segmenter.resume_after = self._resume_after()
        self._tail_keep = self._tail_frames()
        if self.scorer is not None:
            self.scorer.keep_at_least(self._tail_keep + 1)
        self._snr_thresholds = self._thresholds()
        if rebuild:                      # the band analysis changed: its floors are learnt again
            self.scorer = self._new_scorer()
            self.segmenter.end_lag = self._end_lag()
            self.segmenter.onset_lag = self._onset_lag()

    @property
    def start_threshold(self) -> float:
        cfg = self.config
        if cfg.adaptive and self.noise_floor is not None:
            return max(cfg.threshold, self.noise_floor * cfg.start_ratio)
        return cfg.threshold

    @property
    def stop_threshold(self) -> float:
        cfg = self.config
        if cfg.adaptive and self.noise_floor is not None:
            return max(cfg.effective_stop_threshold, self.noise_floor * cfg.stop_ratio)
        return cfg.effective_stop_threshold

    @property
    def samples_seen(self) -> int:
        """The clock: samples analysed so far (a partial frame is not counted until it fills)."""
        return self.segmenter.samples_seen

    @property
    def time_s(self) -> float:
        return self.samples_seen / self.config.sample_rate

    @property
    def in_speech(self) -> bool:
        return self.segmenter.state == _SPEECH

    # -- feeding -------------------------------------------------------------------------------
    def process(self, chunk: bytes | np.ndarray) -> list[SpeechStart | SpeechEnd]:
        # A Realtime client sends a frame or a few per chunk, so what is done once per chunk counts
        # as much as the analysis: int16 arrays skip the conversion, and one frame skips the loop.
        scorer = self.scorer
        if (type(chunk) is np.ndarray and chunk.dtype is _INT16 and chunk.shape == self._frame_shape
                and scorer is not None and not self._partial.size):       # one whole int16 frame, spectral
            frame = chunk.astype(np.float32)          # the copy kept (the caller may reuse its buffer)
            seg = self.segmenter
            if self._scorer_origin is None:
                self._scorer_origin = seg.samples_seen
            self._last_chunk = (seg.samples_seen, frame, None)
            score = scorer.score_frame(frame)
            self.last_scores = [score]
            start, stop, resume = self._snr_thresholds
            done = seg.step(frame, score >= start, score >= stop, score >= resume)
            return self._judged(done) if done else []
        if type(chunk) is np.ndarray and chunk.dtype is _INT16 and chunk.ndim == 1:   # (any other: to_int16)
            samples = chunk
        else:
            samples = to_int16(chunk)
        frame_len = self._frame
        if self._partial.size:
            samples = np.concatenate([self._partial, samples])
        n_frames = samples.size // frame_len
        whole = n_frames * frame_len
        if whole < samples.size:
            self._partial = samples[whole:].copy()
            samples = samples[:whole]
        else:
            self._partial = _EMPTY
        # one copy per chunk: the caller may reuse its buffer (sounddevice does), and we keep frames
        # (as float32 for the spectral scorer, which transforms float32)
        frames = samples.reshape(n_frames, frame_len)
        frames = frames.astype(np.float32) if scorer is not None else frames.copy()
        seg = self.segmenter
        self._last_chunk = (seg.samples_seen, frames, None)
        if not n_frames:
            self.last_scores = []
            return []
        if scorer is not None:
            if self._scorer_origin is None:
                self._scorer_origin = seg.samples_seen
            if self._tail_keep + n_frames > scorer.keep_frames:     # the turn's frames must survive the chunk's
                scorer.keep_at_least(self._tail_keep + n_frames)
            self.last_scores = scores = scorer.process(frames)
            (start, stop, resume), step = self._snr_thresholds, seg.step
            if n_frames == 1:
                score = scores[0]
                done = step(frames[0], score >= start, score >= stop, score >= resume)
                return self._judged(done) if done else []
            events: list[SpeechStart | SpeechEnd] = []
            for frame, score in zip(frames, scores):
                done = step(frame, score >= start, score >= stop, score >= resume)
                if done:
                    events.extend(self._judged(done))
            return events
        events = []
        levels = self._levels(frames)
        self._last_chunk = (self._last_chunk[0], frames, levels)
        for frame, rms in zip(frames, levels.tolist()):
            index = seg.samples_seen // self._frame
            # the stop threshold applies once a candidate has begun (hysteresis)
            done = seg.step(frame, starts=rms >= self.start_threshold, continues=rms >= self.stop_threshold)
            self._track_noise(index, rms)         # after deciding, so a frame never masks itself
            if done:
                events.extend(done)
        return events

    def _judged(self, events: list) -> list:
        """The segmenter's events, each turn's end judged for a weak tail (spectral, ``weak_tail_p``)."""
        if self.config.weak_tail_p is None or self.scorer is None:
            return events
        return [self._judge_tail(e) if type(e) is SpeechEnd and not e.forced else e for e in events]

    def _judge_tail(self, end: SpeechEnd) -> SpeechEnd:
        """``end``, with its weak tail (its last island, as the segmenter found it, judged by
        :mod:`labkit.vadtail` on the turn's kept frames) and, when the model finds the tail more likely
        the noise than ``weak_tail_p``, dated out: the end moves back to the start of the tail's pause."""
        if end.last_pause_sample is None:
            return end
        cfg, n, origin = self.config, self._frame, self._scorer_origin
        stop = (end.voiced_until - origin) // n                     # one past the last voiced frame
        # the same window whatever the chunking (a long chunk grows the ring beyond it)
        first = max((end.start_sample - origin) // n, stop - self._tail_window_ms() // cfg.frame_ms)
        scores, band_db = self.scorer.kept(first, stop)
        first = stop - len(scores)                                  # (what the ring still held)
        pause, island = (end.last_pause_sample - origin) // n - first, (end.last_island_sample - origin) // n - first
        if pause <= 0 or not is_weak_tail(scores, pause, island, resume_db=cfg.effective_resume_snr_db,
                                          frame_ms=cfg.frame_ms):
            return end
        measures = tail_measures(scores, band_db, pause, island, stop_db=cfg.stop_snr_db, frame_ms=cfg.frame_ms)
        cut = end.last_pause_sample - self.segmenter.end_lag
        too_short = (cut - end.start_sample) * 1000 < cfg.min_speech_ms * cfg.sample_rate
        tail = WeakTail(measures, TAIL_MODEL.probability(measures), None if too_short else cut)
        if tail.end_sample_dated_out is None or tail.p_noise <= cfg.weak_tail_p:
            return replace(end, weak_tail=tail)                     # the speaker's, or too little would be left
        return replace(end, end_s=cut / cfg.sample_rate, end_sample=cut, audio=end.audio[:cut - end.audio_start_sample],
                       weak_tail=tail, commit_sample=cut + end.detected_sample - end.end_sample)

    def flush(self) -> list[SpeechEnd]:
        """End of stream: close an utterance still open (ending at its last voiced frame, or before
        a weak tail judged the noise)."""
        return self._judged(self.segmenter.flush())

    def _levels(self, frames: np.ndarray, track: bool = True) -> np.ndarray:
        """RMS of each frame (0..1), after pre-emphasis if configured (its state spans chunks;
        ``track=False`` reads without advancing it, for a plot of frames already analysed)."""
        x = frames.astype(np.float64).ravel() / 32768.0
        a = self.config.pre_emphasis
        if a is not None and x.size:
            previous = np.concatenate([[self._last_sample], x[:-1]])
            if track:
                self._last_sample = x[-1]
            x = x - a * previous
        return np.sqrt(np.mean(x.reshape(frames.shape) ** 2, axis=1))

    def _track_noise(self, index: int, rms: float) -> None:
        """The floor: a low quantile of frame levels over a trailing window (the minimum by default)."""
        cfg = self.config
        if not cfg.adaptive:
            return
        size = cfg.floor_window_ms // cfg.frame_ms
        if cfg.floor_quantile == 0.0:                 # sliding minimum: a monotonic deque, O(1) per frame
            window = self._floor_window
            while window and window[-1][1] >= rms:
                window.pop()
            window.append((index, rms))
            while window[0][0] <= index - size:
                window.popleft()
            floor = window[0][1]
        else:                                         # sliding quantile: a sorted list, O(window) per frame
            self._floor_levels.append(rms)
            bisect.insort(self._floor_sorted, rms)
            if len(self._floor_levels) > size:
                del self._floor_sorted[bisect.bisect_left(self._floor_sorted, self._floor_levels.popleft())]
            floor = self._floor_sorted[int(cfg.floor_quantile * (len(self._floor_sorted) - 1))]
        self.noise_floor = max(floor, 1e-5)


def detect_segments(samples: np.ndarray | bytes, sample_rate: int = 16_000,
                    config: VADConfig | None = None) -> list[tuple[float, float]]:
    """Speech segments ``[(start_s, end_s), ...]`` in a whole recording (offline use)."""
    config = replace(config or VADConfig(), sample_rate=sample_rate)
    vad = VoiceActivityDetector(config)
    events = vad.process(samples) + vad.flush()
    return [(e.start_s, e.end_s) for e in events if isinstance(e, SpeechEnd)]
