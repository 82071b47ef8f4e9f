"""Sub-band SNR against a per-band noise floor: the frame score behind labkit's default detector.

Energy alone cannot tell a voice at 10 dB SNR from pink noise or hum: both are loud, and a noise
floor on the *total* level only helps while speech is much louder than the noise. Speech is loud
in a few bands at a time (its formants and harmonics, which move), stationary noise is loud in the
same bands all the time. So, per frame:

1. the power spectrum (Hann window, FFT), summed into ``bands`` log-spaced bands between ``lo_hz``
   and ``hi_hz`` (the voice's range: mains hum below it and hiss above it carry no speech);
2. a **transient guard**: each band from ``transient_hz`` up counts at its lowest level over the
   last ``transient_frames`` frames (a morphological erosion). A key click lasts a few milliseconds and is gone by the next frame; a
   syllable holds its bands for tens of milliseconds, so it passes. The onset this delays
   (``transient_frames - 1`` frames, :attr:`onset_lag_frames`) is dated back by the detector;
3. each band's guarded level, smoothed over the last two frames;
4. each band's **noise floor**: the lowest *mean* level of the completed sub-windows of a trailing
   window (``floor_window_frames``, in ``subwindows`` parts), or with ``floor_statistic="min"`` the
   lowest level ("minimum statistics", Martin 2001). Speech has pauses, so a band's floor stays at
   the noise there even while someone talks, and a louder background is learnt within one window;
   stationary tones (hum and its harmonics, a fan's blade) are part of their bands' floors. The
   floor is raised by ``bias_db``;
5. the **long-term spectral envelope** (Ramirez et al. 2004): each band's highest guarded level over
   the last ``envelope_frames``; a voice keeps some bands high from frame to frame, noise's peaks
   do not line up. It makes a voiced run last ``envelope_frames - 1`` frames longer (:attr:`lag_frames`);
6. the score: the SNR, in dB, of the mean over bands of envelope / floor (0 dB or more).

The FFT and band sums run over all the frames of a chunk at once; the tracking is a short loop of
in-place operations on a dozen numbers per frame, on state kept in preallocated ring buffers, so
the result does not depend on how the stream is chunked and a 20 ms chunk costs a few calls.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SubbandSNR", "WARMUP_GATE"]

#: Before the first sub-window completes, a frame this far above the floor so far (power ratio,
#: mean over bands; 100 = 20 dB) is taken for a voice, not for the background. High enough that the
#: peaks of babble, music or typing still count as their background (a 6 dB gate cost the tuning
#: set 0.03-0.09 F1 in babble), low enough that a voice over a quiet room never does.
WARMUP_GATE = 100.0

# the hot loop's functions, as module globals (cached lookups); np.positive(a, out=b) is an exact
# copy (float32 -> float64 widening included) at a ufunc's cost, half np.copyto's
_FLOAT32, _square, _minimum, _add, _copy, _max_reduce = np.float32, np.square, np.minimum, np.add, np.positive, np.maximum.reduce
_log10 = math.log10


class SubbandSNR:
    def __init__(self, sample_rate: int, frame_samples: int, *, bands: int = 8, lo_hz: float = 200.0,
                 hi_hz: float = 4000.0, floor_window_frames: int = 250, subwindows: int = 5, bias_db: float = 0.0,
                 min_level_dbfs: float = -75.0, envelope_frames: int = 5, transient_frames: int = 1,
                 transient_hz: float = 0.0, floor_statistic: str = "mean"):
        if floor_statistic not in ("mean", "min"):
            raise ValueError("floor_statistic must be 'mean' or 'min'")
        self.frame_samples = frame_samples
        self.n_fft = 1 << max(0, frame_samples - 1).bit_length()
        window = np.hanning(frame_samples + 2)[1:-1]                 # no zero end points
        self.window = window / 32768.0                               # int16 in, full scale 1.0
        freqs = np.fft.rfftfreq(self.n_fft, 1 / sample_rate)
        hi_hz = min(hi_hz, 0.95 * sample_rate / 2)
        edges = np.geomspace(lo_hz, hi_hz, bands + 1)
        matrix = np.zeros((freqs.size, bands))
        for b in range(bands):
            inside = (freqs >= edges[b]) & (freqs < edges[b + 1])
            if not inside.any():                                     # a narrow low band: its nearest bin
                distance = np.abs(freqs - np.sqrt(edges[b] * edges[b + 1]))
                inside = distance == distance.min()
            matrix[inside, b] = 1.0 / inside.sum()
        self.bands = bands
        self.band_matrix = matrix
        # The DFT of only the bins the bands use, as one matrix with the window (and int16 scaling)
        # folded in: a frame's band powers are two small float32 matrix products, and each frame is
        # transformed on its own (the same call whatever the chunk), so chunking never changes a bit.
        used = np.flatnonzero(matrix.sum(axis=1) > 0)
        angle = 2 * np.pi * np.outer(np.arange(frame_samples), freqs[used]) / sample_rate
        self.dft = (np.concatenate([np.cos(angle), np.sin(angle)], axis=1) * self.window[:, None]).astype(np.float32)
        self.band_sum = np.concatenate([matrix[used], matrix[used]]).astype(np.float32)
        self.edges_hz = edges
        # white noise at min_level_dbfs gives this mean bin power: no band floor is set lower
        self.floor_min = 10 ** (min_level_dbfs / 10) * float(np.sum(window ** 2))
        self.bias = 10 ** (bias_db / 10)
        self.sub_len = max(1, floor_window_frames // subwindows)
        self.subwindows = subwindows
        self.floor_statistic = floor_statistic
        self.envelope_frames = max(1, envelope_frames)
        self.transient_frames = max(1, transient_frames)
        #: the guard covers the bands from ``transient_hz`` up (clicks are bright; below, a band's
        #: lowest of two noisy levels would only bias a quiet voice down)
        self.unguarded = int(np.searchsorted(edges[:-1], transient_hz, side="left"))
        # state, carried across chunks
        self._previous: np.ndarray | None = None            # the last frame's band levels
        self._guard = np.zeros((self.transient_frames, bands))   # ring: band levels, for the erosion
        self._guard_last = np.full(bands, np.inf)           # a two-frame guard: the last frame's guarded bands
        self._envelope = np.zeros((self.envelope_frames, bands))  # ring: smoothed levels (doubled), for the envelope
        self._frames = 0                                    # frames scored so far
        self._ring = np.full((subwindows, bands), np.inf)   # the completed sub-windows' statistics
        self._acc = np.zeros(bands) if floor_statistic == "mean" else np.full(bands, np.inf)
        self._in_current = 0
        self._next_slot = 0
        self._warm = False                                  # a sub-window has completed
        self._admitted = 0                                  # frames in the current sub-window's mean
        self._floor = np.full(bands, np.inf)                # the floor in force for the next frame
        self._weights = np.zeros(bands)                     # 1 / (bands * noise), from that floor
        self._half_weights: np.ndarray | None = None        # the same halved, for the doubled envelope
        self._mean = floor_statistic == "mean"
        self._scratch = np.empty(bands)
        # preallocated per-frame buffers, and fixed views of them, for process()
        self._spectrum = np.empty(self.dft.shape[1], np.float32)   # the used bins' cos and sin parts, squared
        # a frame's band powers, in the row of its place in the current sub-window: with a mean
        # floor, a warm sub-window's levels are summed when it completes (np.add.accumulate: the
        # same sequential float64 sum as adding each frame as it comes, one call instead of 50)
        self._sub_levels = np.empty((self.sub_len, bands), np.float32)
        self._level_rows = list(self._sub_levels)
        self._level_hi_rows = [row[self.unguarded:] for row in self._level_rows]
        self._guard_hi = self._guard_last[self.unguarded:]
        self._envelope_rows = list(self._envelope)                 # the ring's rows, as views
        #: what process() reads and never rebinds, fetched in one unpacking
        self._fixed = (self.dft, self.band_sum, self._spectrum, self._guard, self._guard_last, self._guard_hi,
                       self._envelope, self._envelope_rows, self._level_rows, self._level_hi_rows,
                       self.transient_frames, self.envelope_frames, self.unguarded, self.sub_len)
        self._last_levels: list[np.ndarray] = []
        self._last_floors: list[np.ndarray] = []
        self.keep_trace = False                             # record levels and floors for plots

    @property
    def lag_frames(self) -> int:
        """How many frames the score stays up after the voice stops (the envelope's memory)."""
        return self.envelope_frames - 1

    @property
    def onset_lag_frames(self) -> int:
        """How many frames late the score rises at a voice's onset (the transient guard's)."""
        return self.transient_frames - 1

    @property
    def last_levels(self) -> np.ndarray:
        """With ``keep_trace``: the last chunk's band envelopes (frames x bands), for plots."""
        return np.array(self._last_levels).reshape(-1, self.bands)

    @property
    def last_floors(self) -> np.ndarray:
        """With ``keep_trace``: the last chunk's noise floors (frames x bands), for plots."""
        return np.array(self._last_floors).reshape(-1, self.bands)

    def band_levels(self, frames: np.ndarray) -> np.ndarray:
        """Each frame's power per band (frames x bands) of int16 ``frames`` (frames x samples)."""
        return np.array([self._band_level(f) for f in frames]).reshape(-1, self.bands)

    def _band_level(self, frame: np.ndarray) -> np.ndarray:
        y = frame.astype(np.float32) @ self.dft
        np.square(y, out=y)
        return (y @ self.band_sum).astype(np.float64)   # as process() computes it, in float64

    def process(self, frames: np.ndarray) -> list[float]:
        """Scores (dB, one per frame) of int16 ``frames`` (frames x samples)."""
        if frames.shape[0] == 0:
            return []
        if self._previous is None:                   # the first frame stands in for what came before
            first = self._band_level(frames[0])
            self._previous = first.copy()
            self._guard[:] = first
            self._guard_last[self.unguarded:] = first[self.unguarded:]
            self._envelope[:] = 2 * first
        trace = self.keep_trace
        if trace or self._last_levels:
            self._last_levels, self._last_floors = [], []
        # Per frame this is a dozen numpy calls on 8-number arrays, so the call count is the cost:
        # the two-frame mean is kept doubled (its 0.5 is folded into the score's weights, an exact
        # power-of-two scaling, so the scores are bit for bit those of the plain mean), the
        # two-frame guard is one np.minimum against the last frame (its unguarded bands held at
        # +inf), and the buffers of the current and the previous guarded level are swapped, not copied.
        # Every result goes to a preallocated buffer (``out=``: the same BLAS and ufunc calls as the
        # plain operators, so the same bits, checked by tests/test_vad_decisions.py), and what the
        # loop touches (views, counters, the functions it calls) is held in locals, written back
        # once per call or around the floor's bookkeeping.
        (dft, band_sum, spectrum, guard, guard_last, guard_hi, envelope, rows, level_rows, level_hi_rows,
         k_guard, k_env, unguarded, sub_len) = self._fixed
        previous, scratch = self._previous, self._scratch
        n, in_current, admitted = self._frames, self._in_current, self._admitted
        quick = self._mean and self._warm             # a mean floor, past its first sub-window
        weights = self._half_weights                  # None: no floor yet, no decision
        scores: list[float] = []
        append = scores.append
        for frame in frames:
            level = level_rows[in_current]
            frame.astype(_FLOAT32).dot(dft, out=spectrum)
            _square(spectrum, out=spectrum)
            spectrum.dot(band_sum, out=level)         # float32; widened exactly where it meets float64
            if k_guard == 2:                          # the transient guard, then the two-frame mean
                _minimum(level, guard_last, out=scratch)
                _copy(level_hi_rows[in_current], out=guard_hi)
            elif k_guard > 2:
                guard[n % k_guard] = level
                np.minimum.reduce(guard, axis=0, out=scratch)
                scratch[:unguarded] = level[:unguarded]
            else:
                _copy(level, out=scratch)
            _add(scratch, previous, out=rows[n % k_env])   # twice the two-frame mean
            previous, scratch = scratch, previous
            if k_env > 1:
                _max_reduce(envelope, 0, None, scratch)
            else:
                _copy(rows[0], out=scratch)
            n += 1
            if weights is None:
                append(0.0)
            else:
                ratio = float(scratch.dot(weights))
                append(10 * _log10(ratio) if ratio > 1.0 else 0.0)
            if trace:
                self._last_levels.append(0.5 * scratch)
                self._last_floors.append(np.maximum(self.bias * self._floor, self.floor_min))
            if quick and in_current + 1 < sub_len:    # _track's common case, inline (summed at the sub-window's end)
                in_current += 1
                admitted += 1
            else:
                self._in_current, self._admitted = in_current, admitted
                self._track(level)
                in_current, admitted = self._in_current, self._admitted
                quick = self._mean and self._warm
                weights = self._half_weights
        self._frames, self._in_current, self._admitted = n, in_current, admitted
        self._previous, self._scratch = previous, scratch
        return scores

    def _track(self, level: np.ndarray) -> None:
        """Account for a frame's level in the floor; the new floor holds from the next frame on.

        Until the first sub-window completes, the floor is the mean of the frames so far, and a
        frame already :data:`WARMUP_GATE` above it is left out: a session that opens with half a
        second of silence and then speech must not learn the speech as its background (it would
        for a whole window, and end the turn in mid-sentence)."""
        mean, warm = self._mean, self._warm
        self._in_current += 1
        if mean and not warm and self._half_weights is not None and float(level @ self._weights) >= WARMUP_GATE:
            pass                                      # loud already: not background
        elif mean:
            if not warm:                              # (warm, the sub-window is summed when it completes)
                self._acc += level
            self._admitted += 1
        else:
            np.minimum(self._acc, level, out=self._acc)
        if self._in_current == self.sub_len:          # a sub-window is complete
            if mean and warm:                         # every frame of it admitted, in order
                self._acc = np.add.accumulate(self._sub_levels, axis=0, dtype=np.float64)[-1]
            self._ring[self._next_slot] = self._acc / max(1, self._admitted) if mean else self._acc
            self._admitted = 0
            self._next_slot = (self._next_slot + 1) % self.subwindows
            self._acc = np.zeros_like(self._acc) if mean else np.full_like(self._acc, np.inf)
            self._in_current = 0
            self._set_floor(self._ring.min(axis=0))
            self._warm = True
        elif not self._warm:                          # the first sub-window: the statistic so far stands in
            self._set_floor(self._acc / max(1, self._admitted) if mean else self._acc)

    def _set_floor(self, floor: np.ndarray) -> None:
        self._floor = floor.copy()
        self._weights = 1.0 / (self.bands * np.maximum(self.bias * floor, self.floor_min))
        self._half_weights = 0.5 * self._weights
