"""Sub-band SNR against a per-band noise floor: the frame score behind labkit's default detector.

Energy alone cannot tell a voice at 10 dB SNR from pink noise or hum: both are loud, and a noise
floor on the *total* level only helps while speech is much louder than the noise. Speech is loud
in a few bands at a time (its formants and harmonics, which move), stationary noise is loud in the
same bands all the time. So, per frame:

1. the power spectrum (Hann window, FFT), summed into ``bands`` log-spaced bands between ``lo_hz``
   and ``hi_hz`` (the voice's range: mains hum below it and hiss above it carry no speech);
2. each band's level, smoothed over the last two frames (a click lasting one frame counts half);
3. each band's **noise floor**: the minimum of its level (averaged over ``floor_smoothing_frames``)
   over a trailing window
   (``floor_window_frames``), kept as the minima of ``subwindows`` sub-windows ("minimum
   statistics", Martin 2001): speech has pauses, so a band's minimum stays at the noise there even
   while someone talks, and a louder background is learnt within one window. The minimum of a
   fluctuating noise sits below its mean, so the floor is raised by ``bias_db``;
4. the **long-term spectral envelope** (Ramirez et al. 2004): each band's highest level over the
   last ``envelope_frames``; a voice keeps some bands high from frame to frame, noise's peaks do not
   line up. It makes a voiced run last ``envelope_frames - 1`` frames longer (:attr:`lag_frames`);
5. the score: the SNR, in dB, of the mean over bands of envelope / floor (0 dB or more).

Everything is vectorised over the frames of a chunk, and the result does not depend on how the
stream is chunked: the state (the last frame's levels, the sub-window minima) carries over exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SubbandSNR"]


class SubbandSNR:
    def __init__(self, sample_rate: int, frame_samples: int, *, bands: int = 12, lo_hz: float = 200.0,
                 hi_hz: float = 4000.0, floor_window_frames: int = 150, subwindows: int = 5, bias_db: float = 3.0,
                 min_level_dbfs: float = -80.0, floor_smoothing_frames: int = 6, envelope_frames: int = 6,
                 floor_statistic: str = "mean"):
        self.n_fft = 1 << max(0, frame_samples - 1).bit_length()
        self.window = np.hanning(frame_samples + 2)[1:-1]            # no zero end points
        freqs = np.fft.rfftfreq(self.n_fft, 1 / sample_rate)
        hi_hz = min(hi_hz, 0.95 * sample_rate / 2)
        edges = np.geomspace(lo_hz, hi_hz, bands + 1)
        matrix = np.zeros((freqs.size, bands))
        for b in range(bands):
            inside = (freqs >= edges[b]) & (freqs < edges[b + 1])
            if not inside.any():                                     # a narrow low band: its nearest bin
                inside = np.abs(freqs - np.sqrt(edges[b] * edges[b + 1])) == np.min(
                    np.abs(freqs - np.sqrt(edges[b] * edges[b + 1])))
            matrix[inside, b] = 1.0 / inside.sum()
        self.band_matrix = matrix
        self.band_matrix2 = np.repeat(matrix, 2, axis=0)    # for (re, im) pairs: power without a complex abs
        self.edges_hz = edges
        # white noise at min_level_dbfs gives this mean bin power: no band floor is set lower
        self.floor_min = 10 ** (min_level_dbfs / 10) * float(np.sum(self.window ** 2))
        self.bias = 10 ** (bias_db / 10)
        self.sub_len = max(1, floor_window_frames // subwindows)
        self.subwindows = subwindows
        self._ring = np.full((subwindows, bands), np.inf)   # minima of the last completed sub-windows
        self._ring_min = np.full(bands, np.inf)
        self._current = np.full(bands, np.inf)              # minimum of the sub-window being filled
        self._in_current = 0
        self._next_slot = 0
        self.floor_smoothing = floor_smoothing_frames
        self.floor_statistic = floor_statistic
        self._sum = np.zeros(bands)
        self.envelope_frames = envelope_frames
        self._keep = max(2, floor_smoothing_frames)         # raw levels kept from earlier chunks
        self._history: np.ndarray | None = None
        self._smooth_history: np.ndarray | None = None
        #: the last chunk's band levels and floors (frames x bands), for plots
        self.last_levels = np.zeros((0, bands))
        self.last_floors = np.zeros((0, bands))

    @property
    def lag_frames(self) -> int:
        """How many frames the score stays up after the voice stops (the envelope's memory)."""
        return self.envelope_frames - 1

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Scores (dB, one per frame) of ``frames`` (float, frames x samples, full scale 1.0)."""
        n = frames.shape[0]
        if n == 0:
            return np.zeros(0)
        spectrum = np.fft.rfft(frames * self.window, self.n_fft, axis=1)
        level = np.square(spectrum.view(np.float64)) @ self.band_matrix2          # frames x bands
        if self._history is None:                      # the first frame stands in for what came before
            self._history = np.repeat(level[:1], self._keep, axis=0)
            self._smooth_history = np.repeat(level[:1], max(1, self.envelope_frames - 1), axis=0)
        raw = np.concatenate([self._history, level])
        smooth = 0.5 * (raw[self._keep:] + raw[self._keep - 1:-1])
        # the long-term spectral envelope: each band's highest level over the last ``envelope_frames``
        past = np.concatenate([self._smooth_history, smooth])
        h = self._smooth_history.shape[0]
        envelope = smooth
        for j in range(1, self.envelope_frames):
            envelope = np.maximum(envelope, past[h - j: h - j + n])
        if self.floor_smoothing > 1:                   # the floor follows a moving average of the level
            k = self.floor_smoothing
            csum = np.cumsum(raw[self._keep - k + 1:], axis=0)
            averaged = np.concatenate([csum[k - 1:k], csum[k:] - csum[:-k]]) / k
        else:                                          # ... or the envelope itself (a max: low variance)
            averaged = envelope
        self._history = raw[-self._keep:]
        self._smooth_history = past[-self._smooth_history.shape[0]:]
        floors = self._floors(averaged)
        noise = np.maximum(self.bias * floors, self.floor_min)
        ratio = np.mean(envelope / noise, axis=1)
        ratio[~np.isfinite(floors[:, 0])] = 1.0                              # no floor yet: no decision
        self.last_levels, self.last_floors = envelope, noise
        return 10 * np.log10(np.maximum(ratio, 1.0))

    def _floors(self, smooth: np.ndarray) -> np.ndarray:
        """Each frame's floor, from the window *before* it (a frame never masks itself)."""
        if self.floor_statistic == "mean":
            return self._floors_of_means(smooth)
        out = np.empty_like(smooth)
        i = 0
        while i < smooth.shape[0]:
            take = min(self.sub_len - self._in_current, smooth.shape[0] - i)
            group = smooth[i:i + take]
            before = np.minimum.accumulate(np.vstack([self._current, group[:-1]]), axis=0)
            out[i:i + take] = np.minimum(before, self._ring_min)
            self._current = np.minimum(before[-1], group[-1])
            self._in_current += take
            i += take
            if self._in_current == self.sub_len:                          # a sub-window is complete
                self._complete(self._current)
        return out

    def _floors_of_means(self, smooth: np.ndarray) -> np.ndarray:
        """The lowest *mean* level of the completed sub-windows: near a steady noise's mean like the
        minimum, but also near the mean of babble or music, whose minima lie far below their mean."""
        out = np.empty_like(smooth)
        i = 0
        while i < smooth.shape[0]:
            take = min(self.sub_len - self._in_current, smooth.shape[0] - i)
            group = smooth[i:i + take]
            if np.isfinite(self._ring_min[0]):
                out[i:i + take] = self._ring_min
            else:                        # the first sub-window: the mean so far stands in
                sums = self._sum + np.cumsum(np.vstack([np.zeros_like(group[:1]), group[:-1]]), axis=0)
                counts = self._in_current + np.arange(take)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[i:i + take] = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.inf)
            self._sum = self._sum + group.sum(axis=0)
            self._in_current += take
            i += take
            if self._in_current == self.sub_len:
                self._complete(self._sum / self.sub_len)
                self._sum = np.zeros_like(self._sum)
        return out

    def _complete(self, value: np.ndarray) -> None:
        self._ring[self._next_slot] = value
        self._next_slot = (self._next_slot + 1) % self.subwindows
        self._ring_min = self._ring.min(axis=0)
        self._current = np.full_like(self._current, np.inf)
        self._in_current = 0
