"""Background noises for VAD evaluation, synthesized deterministically: each is unit RMS (float64).

Every generator takes a :class:`NoiseStyle`, the parameters that make one "recording" of that kind
of noise differ from another (the hum's mains frequency, the fan's cutoff and blade tone, the
music's scale and tempo, the typing rhythm), plus a seed. The tuning and held-out speech sets of
:mod:`labkit.speechsets` use different styles and seeds, so they share no noise recording.

Kinds: ``white``; ``pink`` (1/f power) and ``brown`` (1/f^2), both from 20 Hz; ``hum`` (mains and its
harmonics, wandering slightly, with faint hiss); ``fan`` (low-passed broadband noise with a
blade-pass tone, HVAC-like); ``keyboard`` (bursts of short clicks in typing spells, over faint hiss);
``music`` (tonal: notes of a scale with harmonics, two voices, note changes every few hundred ms);
``babble`` (six talkers at once, from speech the caller supplies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NOISE_KINDS", "STATIONARY", "NoiseStyle", "TUNING_STYLE", "HELDOUT_STYLE", "make"]

NOISE_KINDS = ("white", "pink", "brown", "hum", "fan", "babble", "keyboard", "music")
#: Noises whose spectrum does not change over time (a noise-floor tracker can learn them).
STATIONARY = ("white", "pink", "brown", "hum", "fan")


@dataclass(frozen=True)
class NoiseStyle:
    mains_hz: float
    hum_harmonics: int
    fan_cutoff_hz: float
    fan_blade_hz: float
    keys_per_s: float
    music_root_hz: float
    music_scale: tuple[int, ...]        # semitones above the root
    note_s: tuple[float, float]         # note lengths, min and max


TUNING_STYLE = NoiseStyle(mains_hz=50.0, hum_harmonics=8, fan_cutoff_hz=400.0, fan_blade_hz=90.0, keys_per_s=6.0,
                          music_root_hz=220.0, music_scale=(0, 2, 4, 7, 9), note_s=(0.2, 0.5))
HELDOUT_STYLE = NoiseStyle(mains_hz=60.0, hum_harmonics=11, fan_cutoff_hz=650.0, fan_blade_hz=137.0, keys_per_s=8.0,
                           music_root_hz=196.0, music_scale=(0, 3, 5, 7, 10), note_s=(0.15, 0.7))


def _shaped(rng: np.random.Generator, n: int, sample_rate: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power ~ 1/f^exponent from 20 Hz up."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    audible = freqs >= 20
    spectrum[audible] /= freqs[audible] ** (exponent / 2)
    spectrum[~audible] = 0
    return np.fft.irfft(spectrum, n)


def _lowpassed(rng: np.random.Generator, n: int, sample_rate: int, cutoff: float, order: int = 2) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum /= np.sqrt(1 + (freqs / cutoff) ** (2 * order))      # Butterworth-like magnitude
    spectrum[freqs < 20] = 0
    return np.fft.irfft(spectrum, n)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x ** 2))


def make(kind: str, n: int, sample_rate: int, style: NoiseStyle, seed: int,
         speech_pool: list[np.ndarray] | None = None) -> np.ndarray:
    """``n`` samples of ``kind`` noise, unit RMS, deterministic under ``(style, seed)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _shaped(rng, n, sample_rate, 1.0)
    elif kind == "brown":
        x = _shaped(rng, n, sample_rate, 2.0)
    elif kind == "hum":
        wobble = 0.2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t)
        amps = rng.uniform(0.3, 1.0, style.hum_harmonics) / np.arange(1, style.hum_harmonics + 1) ** 0.7
        phases = rng.uniform(0, 2 * np.pi, style.hum_harmonics)
        x = sum(a * np.sin(2 * np.pi * style.mains_hz * k * t + k * wobble + p)
                for k, (a, p) in enumerate(zip(amps, phases), start=1))
        x = _unit(x) + 0.03 * rng.standard_normal(n)
    elif kind == "fan":
        rumble = _unit(_lowpassed(rng, n, sample_rate, style.fan_cutoff_hz))
        swirl = 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t)       # slow turbulence
        blade = np.sin(2 * np.pi * style.fan_blade_hz * t) + 0.4 * np.sin(4 * np.pi * style.fan_blade_hz * t)
        x = rumble * swirl + 0.35 * blade + 0.05 * rng.standard_normal(n)
    elif kind == "keyboard":
        x = _keyboard(rng, n, sample_rate, style.keys_per_s)
    elif kind == "music":
        x = _music(rng, n, sample_rate, style)
    elif kind == "babble":
        if not speech_pool:
            raise ValueError("babble needs a pool of speech to mix from")
        x = np.zeros(n)
        for _talker in range(6):
            stream, total = [], 0
            while total < n:
                piece = speech_pool[rng.integers(len(speech_pool))].astype(np.float64)
                stream.append(_unit(piece))
                total += piece.size
            track = np.concatenate(stream)
            offset = int(rng.integers(track.size - n + 1))
            x += track[offset: offset + n]
    else:
        raise ValueError(f"unknown noise {kind!r}; choose from {NOISE_KINDS}")
    return _unit(x)


def _keyboard(rng: np.random.Generator, n: int, sample_rate: int, keys_per_s: float) -> np.ndarray:
    """Typing spells of 1.5-4 s separated by 0.5-2.5 s pauses; each key a 4-12 ms decaying click."""
    x = 0.002 * rng.standard_normal(n)                       # the room's faint hiss
    pos = int(rng.uniform(0, 1) * sample_rate)
    while pos < n:
        spell_end = pos + int(rng.uniform(1.5, 4.0) * sample_rate)
        while pos < min(spell_end, n):
            length = int(rng.uniform(0.004, 0.012) * sample_rate)
            click = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
            click = np.diff(click, prepend=0.0)              # clicks are bright: a first difference
            end = min(n, pos + length)
            x[pos:end] += rng.uniform(0.3, 1.0) * click[: end - pos]
            pos += int(rng.exponential(1 / keys_per_s) * sample_rate) + length
        pos = spell_end + int(rng.uniform(0.5, 2.5) * sample_rate)
    return x


def _music(rng: np.random.Generator, n: int, sample_rate: int, style: NoiseStyle) -> np.ndarray:
    """Two voices playing notes of a pentatonic-like scale, with harmonics and soft attacks."""
    x = np.zeros(n)
    for voice, octave in enumerate((1.0, 2.0)):
        pos = 0
        while pos < n:
            length = min(n - pos, int(rng.uniform(*style.note_s) * sample_rate))
            semis = style.music_scale[rng.integers(len(style.music_scale))] + 12 * rng.integers(0, 2)
            f0 = style.music_root_hz * octave * 2 ** (semis / 12)
            tt = np.arange(length) / sample_rate
            env = np.minimum(1, tt / 0.02) * np.exp(-tt / rng.uniform(0.3, 1.0))
            note = sum(np.sin(2 * np.pi * f0 * k * tt) / k ** 1.5 for k in range(1, 6) if f0 * k < sample_rate / 2)
            x[pos: pos + length] += (0.6 if voice else 1.0) * env * note
            pos += length
    return x + 0.003 * rng.standard_normal(n)
