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
4. each band's **noise floor**: the lowest *mean* level of ``span`` consecutive sub-windows of a
   trailing window (``floor_window_frames``, in ``subwindows`` parts; the mean window slides a
   sub-window at a time), or with ``floor_statistic="min"`` the lowest level ("minimum statistics",
   Martin 2001). Speech has pauses, so a band's floor stays at the noise there even while someone
   talks, and a louder background is learnt within one window. With ``steady_ratio``, a
   sub-window steady in every band (a pause in steady noise) may lower it by its own mean;
   stationary tones (hum and its harmonics, a fan's blade) are part of their bands' floors. The
   floor is raised by ``bias_db``;
5. the **long-term spectral envelope** (Ramirez et al. 2004): each band's highest guarded level over
   the last ``envelope_frames``; a voice keeps some bands high from frame to frame, noise's peaks
   do not line up. It makes a voiced run last ``envelope_frames - 1`` frames longer (:attr:`lag_frames`);
6. the score: the SNR, in dB, of the mean over bands of envelope / floor (0 dB or more).

How it runs: each frame's DFT (of the frame folded about its centre: two half-size float32
products) is its own call, whatever the chunk, so chunking never changes a bit. The tracking
state lives in fixed buffers over the current floor sub-window (:meth:`SubbandSNR._views`), and
the frames of a chunk up to the next sub-window boundary share one floor, so such a run is scored
with a fixed number of numpy calls on slices of them (guard, mean, envelope, score), one frame
or fifty. A one-frame chunk, what a Realtime client sends, has a path of its own
(:meth:`SubbandSNR.score_frame`): the same calls on prefetched views.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SubbandSNR", "WARMUP_GATE", "spread_db"]

#: While the floor warms up (its first ``span`` sub-windows), a frame this far above the floor so far (power ratio,
#: mean over bands; 100 = 20 dB) is taken for a voice, not for the background. High enough that the
#: peaks of babble, music or typing still count as their background (a 6 dB gate cost the tuning
#: set 0.03-0.09 F1 in babble), low enough that a voice over a quiet room never does.
WARMUP_GATE = 100.0

# the hot loop's functions, as module globals (cached lookups), called with their output as a
# positional argument (the keyword costs as much as the operation on 8 numbers). np.fmin is
# np.minimum but for NaN, which no level is, and takes its output positionally; np.positive(a, b)
# is an exact copy (float32 -> float64 widening included) at a ufunc's cost, half np.copyto's.
_FLOAT32, _square, _fmin, _add, _subtract, _copy, _max_reduce, _min_reduce, _matmul = (
    np.float32, np.square, np.fmin, np.add, np.subtract, np.positive, np.maximum.reduce, np.minimum.reduce, np.matmul)
_multiply = np.multiply                                  # (as positional-output calls, like those above)
_F32 = np.dtype(np.float32)
_log10 = math.log10
#: each band's spread (dB, standard deviation over frames) in white noise, per band analysis
_WHITE_SPREAD: dict[tuple, np.ndarray] = {}


def spread_db(levels: np.ndarray) -> np.ndarray:
    """Each band's spread over frames (``levels``: frames x bands, powers): the standard deviation
    of ``10 log10`` of its levels (floored at 1e-30), exactly ``np.std(..., axis=0)``: numpy's own
    steps, in place on one float64 copy, without ``np.std``'s Python wrapper (the detector runs it
    in its stream, once a floor sub-window)."""
    db = np.maximum(levels, 1e-30, dtype=np.float64)
    np.log10(db, db)
    np.multiply(db, 10, db)
    n = db.shape[0]
    mean = np.add.reduce(db, 0, None, None, True)
    np.true_divide(mean, n, mean)
    np.subtract(db, mean, db)
    np.square(db, db)
    spread = np.add.reduce(db, 0)
    np.true_divide(spread, n, spread)
    return np.sqrt(spread, spread)


class SubbandSNR:
    def __init__(self, sample_rate: int, frame_samples: int, *, bands: int = 8, lo_hz: float = 200.0,
                 hi_hz: float = 4000.0, floor_window_frames: int = 250, subwindows: int = 5, bias_db: float = 0.0,
                 min_level_dbfs: float = -75.0, envelope_frames: int = 5, transient_frames: int = 1,
                 transient_hz: float = 0.0, floor_statistic: str = "mean", span: int = 1,
                 steady_ratio: float = 0.0, steady_drop_db: float = 0.0, keep_frames: int = 0):
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
        # The DFT of only the bins the bands use, with the window (and int16 scaling) folded in. The
        # window is symmetric about the frame's centre and only each bin's power is wanted, so the
        # frame is folded about its centre: with x+ and x- the samples at the same distance after
        # and before it, a bin's power is (sum (x+ + x-) w cos)^2 + (sum (x+ - x-) w sin)^2 (the
        # phase of the centre drops out). Two products of half the size: the matrices are what a
        # frame's product reads, from cache, and that read is most of its time. Each frame is
        # transformed on its own (the same calls whatever the chunk), so chunking never changes a bit.
        used = np.flatnonzero(matrix.sum(axis=1) > 0)
        half = frame_samples // 2
        after = np.arange(frame_samples - half, frame_samples)       # x+; x- is the mirror image
        centre = (frame_samples - 1) / 2
        angle = 2 * np.pi * np.outer(after - centre, freqs[used]) / sample_rate
        cos = np.cos(angle) * self.window[after, None]
        if frame_samples % 2:                                        # an odd frame's centre sample: cos 0 = 1
            cos = np.vstack([cos, self.window[half] * np.ones(used.size)])
        self.fold_cos = cos.astype(np.float32)
        self.fold_sin = (np.sin(angle) * self.window[after, None]).astype(np.float32)
        self._after = slice(frame_samples - half, None)
        self._before = slice(half - 1, None, -1) if half else slice(0, 0)
        self._centre = half if frame_samples % 2 else None
        u, hi = self.unguarded, bands - self.unguarded
        # A frame's band powers come out twice, each copy with the guarded (high) bands first:
        # [hi, lo, hi, lo]. In a buffer whose rows run backwards in time, the natural-order levels
        # [lo, hi] of a frame are then one slice of its row, and [lo of this frame, hi of the frame
        # before] the slice just after it: the two-frame guard is one np.fmin of two fixed views,
        # for one frame or a whole run of them (see _views).
        order = list(range(u, bands)) + list(range(u))
        self.band_sum = np.concatenate([matrix[used], matrix[used]])[:, order + order].astype(np.float32)
        self._bins = used.size
        self._hi = hi
        self._mean = floor_statistic == "mean"
        # floor state
        self._ring = np.full((subwindows, bands), np.inf)   # the completed sub-windows' statistics
        self._acc = np.zeros(bands) if self._mean else np.full(bands, np.inf)
        self._in_current = 0                                # frames of the current sub-window so far
        self._next_slot = 0
        self._filled = 0                                    # completed sub-windows in the ring
        #: the floor is the lowest mean of this many consecutive sub-windows (a sliding window)
        self.span = max(1, min(span, subwindows)) if floor_statistic == "mean" else 1
        #: Steady sub-windows (``steady_ratio > 0``, with ``span > 1``): a completed sub-window whose
        #: frames' dB levels spread (standard deviation), in every band, less than ``steady_ratio``
        #: times that band's spread in white Gaussian noise (its bins' own chi-square scatter) is
        #: steady, and its own mean may be a band's floor, below the lowest span mean, by at most
        #: ``steady_drop_db``: a pause shorter than a span, in steady noise, then still shows the noise
        #: alone (a pause in steady noise is steady in every band; a quiet spell of music or typing
        #: seldom is).
        self._steady = np.zeros(subwindows, bool)
        self._steady_limit: np.ndarray | None = None
        self.steady_drop = 10 ** (-steady_drop_db / 10) if steady_drop_db > 0 else 0.0
        self._warm = False                                  # ``span`` sub-windows have completed
        self._warmup_sum = np.zeros(bands)                  # the frames the warm-up gate admitted
        self._warmup_count = 0
        #: with span > 1: the means of the windows of ``span`` sub-windows that lie wholly inside the ring
        self._windows_ring = np.full((subwindows - self.span + 1, bands), np.inf)
        self._next_window = 0
        #: a window's slots, newest first, by the slot of its newest sub-window
        self._span_slots = [(newest - np.arange(self.span)) % subwindows for newest in range(subwindows)]
        self._admitted = 0                                  # frames in the current sub-window's mean
        self._floor = np.full(bands, np.inf)                # the floor in force for the next frame
        self._weights = np.zeros(bands)                     # 1 / (bands * noise), from that floor
        self._half_weights: np.ndarray | None = None        # the same halved, for the doubled envelope
        self._started = False                               # the first frame has been seen
        self._views()
        if steady_ratio > 0 and self.span > 1:
            key = (sample_rate, frame_samples, bands, lo_hz, hi_hz)
            if key not in _WHITE_SPREAD:              # (once per analysis: 400 frames, about 10 ms)
                noise = np.random.default_rng(0).normal(0.0, 1000.0, (400, frame_samples))
                _WHITE_SPREAD[key] = spread_db(self.band_levels(noise))
            self._steady_limit = steady_ratio * _WHITE_SPREAD[key]
        self._last_levels: list[np.ndarray] = []
        self._last_floors: list[np.ndarray] = []
        self.keep_trace = False                             # record levels and floors for plots
        #: the scores and per-band SNRs of the last ``keep_frames`` frames are kept (:meth:`kept`): a
        #: turn's end is judged on its frames (:mod:`labkit.vadtail`)
        self.keep_frames = keep_frames
        self.frames_scored = 0
        self._kept_since = 0                                # frames before it were scored before the ring grew
        self._kept_scores = np.zeros(keep_frames)
        self._kept_ratios = np.zeros((keep_frames, bands), np.float32)   # each band's level / floor / bands

    def _views(self) -> None:
        """The per-frame state, as fixed buffers over the current sub-window plus the history the
        tracking looks back on, and fixed views of them: a run of frames inside one sub-window is
        scored with a fixed number of numpy calls on slices, whatever its length.

        * ``_levels`` (float32, rows backwards in time: frame ``i`` of the sub-window at row
          ``S - 1 - i``, the frames before it below): each frame's band powers as [hi, lo, hi, lo];
        * ``_av[i]``: frame ``i``'s levels, natural band order (what the floor averages);
          ``_bv[i]``: its low bands beside the high bands of frame ``i - 1`` (the two-frame guard);
        * ``_g[i + 1]``: frame ``i``'s guarded levels (``_g[0]`` the frame before the sub-window);
        * ``_d[K - 1 + i]``: twice frame ``i``'s two-frame mean, after the ``K - 1`` before it
          (``K`` = ``envelope_frames``); ``_windows[i]``: the ``K`` rows whose maximum is frame
          ``i``'s envelope.

        When a sub-window completes, its last rows are copied to the history rows (:meth:`_roll`)."""
        bands, hi, S, K = self.bands, self._hi, self.sub_len, self.envelope_frames
        width = 2 * bands
        H = max(1, self.transient_frames - 1)               # frames of level history the guard reads
        self._history = H
        self._levels = np.zeros((S + H, width), np.float32)
        back = self._levels[::-1]                           # frame order: back[H + i] is frame i
        self._back = back
        self._level_rows = [self._levels[S - 1 - i] for i in range(S)]     # contiguous: a product's out=
        self._av = back[H:, hi:hi + bands]
        flat = self._levels.reshape(-1)
        self._bv = flat[bands + hi: bands + hi + S * width].reshape(S, width)[::-1, :bands]
        self._hi_back = back[:, :hi]                        # the high bands, frame i at H + i (a longer guard)
        self._g = np.zeros((S + 1, bands), np.float32)
        self._d = np.zeros((S + K - 1, bands), np.float32)
        self._windows = np.lib.stride_tricks.sliding_window_view(self._d, K, axis=0)   # (S, bands, K)
        self._blocks = [self._d[i:i + K] for i in range(S)]
        self._e = np.empty((S, bands), np.float32)
        self._spectra = np.empty(2 * self._bins, np.float32)
        self._spectra_cos, self._spectra_sin = self._spectra[:self._bins], self._spectra[self._bins:]
        self._folded = np.empty(self.frame_samples, np.float32)          # one frame's x+ + x-, then x+ - x-
        plus = self.fold_cos.shape[0]
        self._plus, self._minus = self._folded[:plus], self._folded[plus:plus + self.fold_sin.shape[0]]
        #: one frame's views, by its place in the sub-window (the one-frame chunk's path)
        self._frame_views = [(self._level_rows[i], self._av[i], self._bv[i], self._g[i + 1], self._g[i],
                              self._d[K - 1 + i], self._blocks[i], self._e[i]) for i in range(S)]
        #: the common case (a two-frame guard and an envelope) has a path of its own for one frame
        self._one_frame_path = self.transient_frames == 2 and K > 1 and self.frame_samples % 2 == 0
        self._one_frame = (self._after, self._before, self._plus, self._minus, self.fold_cos, self.fold_sin,
                           self._spectra, self._spectra_cos, self._spectra_sin, self.band_sum)

    def _roll(self) -> None:
        """A sub-window is complete: its last frames become the history the next one looks back on."""
        S, H, K = self.sub_len, self._history, self.envelope_frames
        self._back[:H] = self._back[S:S + H]
        self._g[0] = self._g[S]
        if K > 1:
            self._d[:K - 1] = self._d[S:S + K - 1]

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
        plus, minus = self._fold(frame.astype(np.float32)[None])
        y = np.concatenate([plus[0] @ self.fold_cos, minus[0] @ self.fold_sin])
        np.square(y, out=y)
        both = y @ self.band_sum                        # [hi, lo, hi, lo], as process() computes it
        return both[self._hi:self._hi + self.bands].astype(np.float64)

    def _fold(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 frames (frames x samples) folded about their centre: (x+ + x-, x+ - x-), exact
        (sums of two int16 values are whole numbers below 2**17)."""
        after, before = x[:, self._after], x[:, self._before]
        plus = _add(after, before)
        if self._centre is not None:
            plus = np.hstack([plus, x[:, self._centre:self._centre + 1]])
        return plus, _subtract(after, before)

    def _one_frame_ready(self) -> bool:
        """Whether a one-frame chunk can take :meth:`score_frame`'s own path (else ``process``'s):
        past the first sub-window, a configuration it covers, and no trace to keep or clear."""
        return self._warm and self._one_frame_path and not (self.keep_trace or self._last_levels)

    def process(self, frames: np.ndarray) -> list[float]:
        """Scores (dB, one per frame) of ``frames`` (frames x samples): int16, or float32 holding int16 values."""
        m = frames.shape[0]
        if m == 1 and self._one_frame_ready():
            return [self.score_frame(frames[0])]
        if m == 0:
            return []
        plus, minus = self._fold(frames.astype(_FLOAT32, copy=False))      # one conversion per chunk
        cos, sin, band_sum, rows = self.fold_cos, self.fold_sin, self.band_sum, self._level_rows
        spectra, spectra_cos, spectra_sin = self._spectra, self._spectra_cos, self._spectra_sin
        if not self._started:                         # the first frame stands in for what came before
            self._started = True
            first = self._back[self._history - 1]
            plus[0].dot(cos, spectra_cos)
            minus[0].dot(sin, spectra_sin)
            _square(spectra, spectra)
            spectra.dot(band_sum, first)
            self._back[:self._history] = first
            level = first[self._hi:self._hi + self.bands]
            self._g[0] = level
            self._d[:self.envelope_frames - 1] = 2 * self._g[0]
        trace = self.keep_trace
        if trace or self._last_levels:
            self._last_levels, self._last_floors = [], []
        # A chunk is scored in runs: the frames up to the next sub-window boundary share one floor,
        # so each run is a fixed number of numpy calls on slices of the state buffers (see _views),
        # one frame or fifty. Before the first sub-window completes the floor moves with every
        # frame, so runs are one frame long there.
        S, K, k_guard = self.sub_len, self.envelope_frames, self.transient_frames
        av, bv, g, d, e = self._av, self._bv, self._g, self._d, self._e
        scores: list[float] = []
        append = scores.append
        i = 0
        while i < m:
            c = self._in_current
            warm = self._warm
            r = min(m - i, S - c) if warm else 1
            for j in range(r):                        # the DFT, frame by frame: the same call whatever the chunk
                plus[i + j].dot(cos, spectra_cos)
                minus[i + j].dot(sin, spectra_sin)
                _square(spectra, spectra)
                spectra.dot(band_sum, rows[c + j])
            level, guarded = av[c:c + r], g[c + 1:c + 1 + r]
            if k_guard >= 2:                          # each guarded band at its lowest level of k_guard frames
                _fmin(level, bv[c:c + r], guarded)
                if k_guard > 2:
                    high, H = guarded[:, self.unguarded:], self._history
                    for back in range(2, k_guard):
                        _fmin(high, self._hi_back[H + c - back:H + c - back + r], high)
            else:
                _copy(level, guarded)
            _add(guarded, g[c:c + r], d[K - 1 + c:K - 1 + c + r])      # twice the two-frame mean
            if K == 1:
                envelope = d[c:c + r]
            elif r == 1:
                envelope = e[c:c + 1]
                _max_reduce(self._blocks[c], 0, None, e[c])
            else:
                envelope = e[c:c + r]
                _max_reduce(self._windows[c:c + r], 2, None, envelope)
            weights = self._half_weights              # None: no floor yet, no decision
            if weights is None:
                scores.extend([0.0] * r)
            elif r == 1:
                ratio = float(envelope[0].dot(weights))
                append(10 * _log10(ratio) if ratio > 1.0 else 0.0)
            else:                                     # each row's own dot: the same sum as one frame's
                for ratio in _matmul(envelope[:, None, :], weights).ravel().tolist():
                    append(10 * _log10(ratio) if ratio > 1.0 else 0.0)
            if self.keep_frames:
                self._keep(envelope, scores[len(scores) - r:], weights)
            self.frames_scored += r
            if trace:
                floor = np.maximum(self.bias * self._floor, self.floor_min)     # one floor per run
                for k in range(r):
                    self._last_levels.append(0.5 * envelope[k])
                    self._last_floors.append(floor.copy())
            if warm:                                  # (every frame counts: the mean's count is S)
                self._in_current = c + r
                if c + r == S:
                    self._complete()
            else:
                self._track(level[0])
            i += r
        return scores

    def score_frame(self, frame: np.ndarray) -> float:
        """The score of one frame (``frame_samples`` int16 or float32 samples): ``process`` of a
        one-frame chunk, with less to do per call (a Realtime client sends a frame or two at a time):
        the same calls on the same views, fetched from two tuples instead of sliced."""
        if not self._one_frame_ready():
            return self.process(frame.reshape(1, -1))[0]
        c = self._in_current
        out, level, level_before, guarded, previous, doubled, block, envelope = self._frame_views[c]
        after, before, plus, minus, cos, sin, spectra, spectra_cos, spectra_sin, band_sum = self._one_frame
        if frame.dtype is not _F32:
            frame = frame.astype(_FLOAT32)
        after, before = frame[after], frame[before]
        _add(after, before, plus)
        _subtract(after, before, minus)
        plus.dot(cos, spectra_cos)
        minus.dot(sin, spectra_sin)
        _square(spectra, spectra)
        spectra.dot(band_sum, out)
        _fmin(level, level_before, guarded)
        _add(guarded, previous, doubled)
        _max_reduce(block, 0, None, envelope)
        ratio = float(envelope.dot(self._half_weights))
        score = 10 * _log10(ratio) if ratio > 1.0 else 0.0
        if self.keep_frames:
            k = self.frames_scored % self.keep_frames
            _multiply(envelope, self._half_weights, self._kept_ratios[k])
            self._kept_scores[k] = score
        self.frames_scored += 1
        self._in_current = c = c + 1
        if c == self.sub_len:
            self._complete()
        return score

    def _keep(self, envelope: np.ndarray, run_scores: list[float], weights: np.ndarray | None) -> None:
        slots = (self.frames_scored + np.arange(len(run_scores))) % self.keep_frames
        self._kept_scores[slots] = run_scores
        self._kept_ratios[slots] = 0.0 if weights is None else envelope * weights

    def keep_at_least(self, frames: int) -> None:
        """Keep at least the last ``frames`` frames from now on (what is kept stays): a chunk is scored
        whole before its frames are decided, so a long one needs room for itself and the turn before it."""
        if frames <= self.keep_frames:
            return
        held = np.arange(self._oldest_kept(), self.frames_scored)
        scores = self._kept_scores[held % self.keep_frames] if held.size else np.zeros(0)
        ratios = self._kept_ratios[held % self.keep_frames] if held.size else np.zeros((0, self.bands), np.float32)
        self.keep_frames = frames
        self._kept_scores = np.zeros(frames)
        self._kept_ratios = np.zeros((frames, self.bands), np.float32)
        self._kept_scores[held % frames] = scores
        self._kept_ratios[held % frames] = ratios
        self._kept_since = int(held[0]) if held.size else self.frames_scored

    def _oldest_kept(self) -> int:
        return max(self._kept_since, self.frames_scored - self.keep_frames, 0)

    def kept(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The scores (dB) and per-band SNRs (dB, frames x bands) of frames ``[first, stop)``, counted
        from this scorer's first frame; the frames no longer kept (overwritten, or scored before the
        ring grew to hold them) are left out."""
        stop = min(stop, self.frames_scored)
        first = max(first, self._oldest_kept())
        slots = np.arange(first, max(first, stop)) % max(1, self.keep_frames)
        ratios = self._kept_ratios[slots].astype(np.float64) * self.bands
        return self._kept_scores[slots].copy(), 10 * np.log10(np.maximum(ratios, 1e-12))

    def _track(self, level: np.ndarray) -> None:
        """While warming up (the first ``span`` sub-windows): account for a frame's level in the
        floor, which holds from the next frame on. The floor is the mean of the frames admitted so
        far, and a frame already :data:`WARMUP_GATE` above it is left out: a session that opens with
        half a second of silence and then speech must not learn the speech as its background (it
        would for a whole window, and end the turn in mid-sentence)."""
        self._in_current += 1
        if self._mean:
            if self._half_weights is None or float(level @ self._weights) < WARMUP_GATE:
                self._acc += level
                self._admitted += 1
                self._warmup_sum += level
                self._warmup_count += 1
        else:
            np.minimum(self._acc, level, out=self._acc)
        if self._in_current == self.sub_len:
            self._complete()
        else:                                         # the statistic so far stands in
            self._set_floor(self._warmup_sum / max(1, self._warmup_count) if self._mean else self._acc)

    def _complete(self) -> None:
        """A sub-window is complete: its statistic joins the ring, and the floor is the lowest mean
        of ``span`` consecutive sub-windows (the ring's lowest entry for ``span=1`` or ``"min"``).

        It runs once every ``sub_len`` frames, with about three frames' worth of numpy calls, so
        ``std`` and ``min`` are numpy's own steps without their Python wrappers (the same bits)."""
        slot = self._next_slot
        if self._warm:                                # every frame of it admitted, in order
            if self._mean:                            # (np.add.accumulate: a sequential float64 sum)
                self._acc = np.add.accumulate(self._av, axis=0, dtype=np.float64)[-1]
            else:
                self._acc = np.minimum.reduce(self._av, axis=0).astype(np.float64)
            entry = self._acc / self.sub_len if self._mean else self._acc
        elif self._mean:                              # warming up: the frames the gate admitted
            entry = (self._acc / self._admitted if self._admitted
                     else self._warmup_sum / max(1, self._warmup_count))      # all gated: the background so far
        else:
            entry = self._acc
        self._ring[slot] = entry
        if self._steady_limit is not None:            # (warming up: never steady)
            self._steady[slot] = self._warm and self._is_steady()
        self._admitted = 0
        self._next_slot = (slot + 1) % self.subwindows
        self._in_current = 0
        self._filled = min(self._filled + 1, self.subwindows)
        self._set_floor(self._ring_floor(slot))
        self._warm = self._filled >= self.span
        self._acc = np.zeros(self.bands) if self._mean else np.full(self.bands, np.inf)
        self._roll()

    def _is_steady(self) -> bool:
        """Whether the sub-window just completed is steady: in every band, its frames' levels (dB)
        spread less than ``_steady_limit``."""
        return bool(np.less(spread_db(self._av), self._steady_limit).all())

    def _ring_floor(self, newest: int) -> np.ndarray:
        """The lowest mean of ``span`` consecutive completed sub-windows, per band (while fewer are
        complete: their mean); ``newest`` is the slot just filled. A pause must hold a whole span
        for the floor to be the noise alone; sliding by one sub-window, it need not be aligned to them."""
        span, filled = self.span, self._filled
        if span == 1:
            return _min_reduce(self._ring, 0)
        if filled < span:
            return self._ring[:filled].mean(axis=0)
        # the window that ends with the sub-window just completed joins the ring of the windows that
        # lie wholly inside the last ``subwindows`` sub-windows (one per completion, so it cycles)
        np.multiply(np.add.reduce(self._ring[self._span_slots[newest]], axis=0), 1.0 / span,
                    out=self._windows_ring[self._next_window])
        self._next_window = (self._next_window + 1) % self._windows_ring.shape[0]
        floor = _min_reduce(self._windows_ring, 0)
        if self._steady_limit is not None:            # a steady sub-window's own mean, within the drop
            steady = self._ring[self._steady]
            if steady.size:
                floor = np.minimum(floor, np.maximum(_min_reduce(steady, 0), self.steady_drop * floor))
        return floor

    def _set_floor(self, floor: np.ndarray) -> None:
        self._floor = floor.copy()
        self._weights = 1.0 / (self.bands * np.maximum(self.bias * floor, self.floor_min))
        self._half_weights = (0.5 * self._weights).astype(np.float32)
