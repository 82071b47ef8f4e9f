"""A labelled WAV for Chromium's fake microphone, and where its labels fall in what a page captured.

Chromium can replace the microphone with a file (``--use-fake-device-for-media-stream
--use-fake-ui-for-media-stream --use-file-for-fake-audio-capture=<wav>``): the page's
``getUserMedia`` then "hears" the file, at real-time pace, through the same audio processing
(echo cancellation, noise suppression) as a real microphone. To check a voice page against the
truth, :func:`fake_mic_wav` cuts utterances of the lab's labelled speech (``labkit/data/speech``) into a
short script — lead-in silence, speech, a gap, more speech — and says where each one is.

The capture does not necessarily begin at the file's first sample (the device starts when the
page opens it), so :func:`locate` finds the file's offset in the captured audio by
cross-correlation; the labels then map onto the input stream's clock, the clock the Realtime API's
``audio_start_ms``/``audio_end_ms`` count in.

One offset is not enough on a busy machine: when Chromium's audio thread misses a deadline, the
capture gains (or loses) whole 10 ms buffers, and everything after the glitch moves (six CPU
burners beside a page here: 10 ms gained inside a line in 2 of 8 captures; a CI run once put a line's
end ~100 ms later than usual, its start on time). So
:func:`locate_lines` finds each line's first and last moments on their own, near the global offset;
the VAD's edges are then judged against where the speech really is in what the server received.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio.pcm import resample
from .audio.wav import write_wav
from .speechdata import SAMPLE_RATE, load_clean

__all__ = ["Line", "FakeMicScript", "fake_mic_wav", "locate", "locate_lines", "LineInCapture", "chromium_fake_mic_args",
           "CHROMIUM_RATE"]

#: The rate the WAV is written at (Chromium resamples whatever it reads; 48 kHz is its native capture rate).
CHROMIUM_RATE = 48_000


@dataclass(frozen=True)
class Line:
    """One utterance in the script: its text and where it is, in seconds from the file's start."""
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class FakeMicScript:
    path: Path
    lines: tuple[Line, ...]
    duration_s: float
    samples: np.ndarray            # the script at SAMPLE_RATE (16 kHz), for alignment

    def at_rate(self, rate: int) -> np.ndarray:
        return resample(self.samples, SAMPLE_RATE, rate)


def fake_mic_wav(path: str | Path, utterance_indices: list[int], *, lead_s: float = 1.0, gaps_s: list[float] | None = None,
                 tail_s: float = 6.0) -> FakeMicScript:
    """Write ``lead_s`` of silence, then each chosen utterance of ``clean.wav`` separated by ``gaps_s``,
    then ``tail_s`` of silence, as a 48 kHz mono PCM16 WAV at ``path``; return where each one is."""
    audio, utterances = load_clean()
    gaps = list(gaps_s) if gaps_s is not None else [2.0] * (len(utterance_indices) - 1)
    if len(gaps) != len(utterance_indices) - 1:
        raise ValueError("one gap between each pair of utterances")
    rate = SAMPLE_RATE
    pieces, lines, t = [np.zeros(int(lead_s * rate), np.int16)], [], lead_s
    for k, i in enumerate(utterance_indices):
        u = utterances[i]
        speech = audio[int(u.start_s * rate): int(u.end_s * rate)]
        lines.append(Line(u.text, t, t + speech.size / rate))
        pieces.append(speech)
        t += speech.size / rate
        pause = gaps[k] if k < len(gaps) else tail_s
        pieces.append(np.zeros(int(pause * rate), np.int16))
        t += int(pause * rate) / rate
    samples = np.concatenate(pieces)
    path = Path(path)
    write_wav(path, resample(samples, rate, CHROMIUM_RATE), CHROMIUM_RATE)
    return FakeMicScript(path, tuple(lines), samples.size / rate, samples)


def _cross_correlation(x: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """``sum(x[k + i] * piece[i])`` for every lag k, by FFT, zero-padded so nothing wraps: lags
    0 .. x.size - 1 first, then the negative ones (piece before x's start) from the end."""
    n = 1 << int(np.ceil(np.log2(x.size + piece.size)))
    return np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(piece, n)), n)


def locate(captured: np.ndarray, script: FakeMicScript, rate: int) -> float:
    """Seconds into ``captured`` (int16 at ``rate``) where the script's first sample is (may be negative
    if the capture began after the file did). Found by FFT cross-correlation of the waveforms."""
    corr = _cross_correlation(np.asarray(captured, dtype=np.float64), script.at_rate(rate).astype(np.float64))
    n = corr.size
    lag = int(np.argmax(corr))
    if lag > n // 2:
        lag -= n
    return lag / rate


@dataclass(frozen=True)
class LineInCapture:
    """Where one line begins and ends in the captured audio (s), as matched, and by how much the
    capture's glitches moved its end (``drift_s``: end minus start, less the line's own length).
    Without glitches ``drift_s`` is a few ms: voiced speech repeats every pitch period, and a piece
    can fit one period off (22 captures of the barge-in script here: 0-6.6 ms). The JupyterLab
    microphone's line shows 12 ms: that capture runs about 0.14% long against the file (4 ms over
    the line), and the rest is the fit. A gained buffer is 10 ms; the glitch that failed CI about
    100 ms."""
    start_s: float
    end_s: float
    drift_s: float


#: A line's first and last :data:`EDGE_MATCH_S` are each found within :data:`MAX_DRIFT_S` of where the
#: global offset puts them.
EDGE_MATCH_S, MAX_DRIFT_S = 0.3, 0.5


def _best_at(captured: np.ndarray, piece: np.ndarray, guess: int, reach: int) -> int:
    """The index in ``captured`` within ``reach`` of ``guess`` where ``piece`` fits best, by normalised
    cross-correlation: a window's correlation over its own energy, so that louder audio near the
    match (or the processing's gain changing along the capture) does not outscore it."""
    lo, hi = max(0, guess - reach), min(captured.size - piece.size, guess + reach)
    if hi < lo:
        raise ValueError("the capture does not hold this part of the script: nothing to match it against")
    window = captured[lo: hi + piece.size]
    corr = _cross_correlation(window, piece)[: hi - lo + 1]
    power = np.concatenate(([0.0], np.cumsum(window * window)))
    energy = power[piece.size:] - power[: hi - lo + 1]
    return lo + int(np.argmax(corr / np.sqrt(np.maximum(energy, 1e-9))))


def locate_lines(captured: np.ndarray, script: FakeMicScript, rate: int, offset_s: float | None = None) -> list[LineInCapture]:
    """Each line's start and end in ``captured`` (int16 at ``rate``), each matched on its own: the
    line's first and last :data:`EDGE_MATCH_S` against the capture within :data:`MAX_DRIFT_S` of where
    ``offset_s`` (default :func:`locate`'s) puts them. A glitch inside a line shows as drift, except
    inside a matched piece itself: the piece then fits on whichever side of the glitch holds more of
    it (in the tests, 100 ms gained in a soft last 250 ms of a line goes unseen; in a loud last
    300 ms, only in its last 100). Shorter pieces at the ends were tried and dropped: the browser's
    noise suppression leaves a soft last syllable too faint to fit (a JupyterLab capture's last
    100 ms fitted 99 ms early). A line the global offset does not put wholly inside the capture is
    an error (a capture cut short, or the wrong script), not a guess."""
    offset = locate(captured, script, rate) if offset_s is None else offset_s
    ref = script.at_rate(rate).astype(np.float64)
    cap = np.asarray(captured, dtype=np.float64)
    shift = round(offset * rate)
    n, reach = int(EDGE_MATCH_S * rate), int(MAX_DRIFT_S * rate)
    found = []
    for k, line in enumerate(script.lines):
        a, b = round(line.start_s * rate), round(line.end_s * rate)
        if a + shift < 0 or b + shift > cap.size:
            raise ValueError(f"line {k} ({line.text!r}) is not wholly in the capture: by the offset found it is at "
                             f"{(a + shift) / rate:.2f}-{(b + shift) / rate:.2f} s of {cap.size / rate:.2f} s")
        start = _best_at(cap, ref[a: a + n], a + shift, reach)
        end = _best_at(cap, ref[b - n: b], b - n + shift, reach) + n
        found.append(LineInCapture(start / rate, end / rate, (end - start - (b - a)) / rate))
    return found


def chromium_fake_mic_args(wav: str | Path, *, loop: bool = False) -> list[str]:
    """Chromium flags that make ``wav`` the microphone and grant it without a prompt."""
    file = f"{wav}" if loop else f"{wav}%noloop"
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={file}", "--autoplay-policy=no-user-gesture-required"]
