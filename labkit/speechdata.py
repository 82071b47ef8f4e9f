"""The lab's labelled speech set: synthesized speech with exact ground truth, mixed with noises.

``python -m labkit data speech`` rebuilds ``labkit/data/speech/clean.wav`` and ``labels.json``
(committed, about 2 MB). Noisy versions are made on demand, in memory, deterministically from a seed:
white, pink, mains hum and babble noise at 20, 10, 5 and 0 dB SNR.

* **Speech**: espeak-ng (see :mod:`labkit.audio.tts`) in four voices reads sentences about the lab's
  own topics, one utterance at a time, separated by 0.7-1.5 s of silence.
* **Ground truth**: espeak-ng's output stops exactly where speech stops and its pauses are digital
  zeros, so an utterance runs from its first to its last non-zero sample. Pauses *inside* an
  utterance (at a comma) belong to it, as in most VAD benchmarks.
* **SNR**: the mean power of the clean signal over its labelled speech, over the noise's mean power.
* **Reproducibility**: the committed ``clean.wav`` is the reference. Every mix is made from it with a
  seeded noise (babble too: it is cut from the recording's own utterances), so every mix is the
  same on every machine. espeak-ng itself is not bit-exact from run to run (its output drifts by a
  few samples per utterance, depending on what it said before), so regenerating the set gives the
  same sentences, voices and layout with utterance times that may differ by up to tens of ms.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .audio.pcm import resample
from .audio.wav import read_wav, write_wav
from .corpus import SENTENCES
from .resources import cache_dir, data_file

__all__ = ["SENTENCES", "VOICES", "NOISES", "SNRS", "CONDITIONS", "SAMPLE_RATE", "DATA_DIR", "CLEAN_WAV", "LABELS_JSON",
           "Utterance", "build_clean", "generate", "load_clean", "make_noise", "mix", "condition_audio",
           "frame_labels", "ensure_condition_wav"]

SAMPLE_RATE = 16_000
DATA_DIR = data_file("speech")
CLEAN_WAV = DATA_DIR / "clean.wav"
LABELS_JSON = DATA_DIR / "labels.json"

#: espeak-ng voices: American and British English, male and female variants.
VOICES = ("en-us", "en-us+f3", "en", "en+f4")
UTTERANCES_PER_VOICE = 5
NOISES = ("white", "pink", "hum", "babble")
SNRS = (20, 10, 5, 0)
#: Evaluation conditions: ``(noise, snr_db)``; the clean signal is ``("clean", None)``.
CONDITIONS = (("clean", None),) + tuple((noise, snr) for noise in NOISES for snr in SNRS)


@dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _speech(text: str, voice: str) -> np.ndarray:
    """One utterance at 16 kHz, trimmed to its first and last non-zero sample (before resampling)."""
    from .audio.tts import ESPEAK_RATE, synthesize

    pcm = synthesize(text, voice)
    nonzero = np.flatnonzero(pcm)
    if nonzero.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} in voice {voice!r}")
    trimmed = pcm[nonzero[0]: nonzero[-1] + 1]
    return resample(trimmed, ESPEAK_RATE, SAMPLE_RATE)


def build_clean(seed: int = 0) -> tuple[np.ndarray, list[Utterance]]:
    """The clean recording and its labels: every voice reads its share of the sentences, shuffled."""
    rng = random.Random(seed)
    order = [(SENTENCES[i * len(VOICES) + v], voice) for v, voice in enumerate(VOICES)
             for i in range(UTTERANCES_PER_VOICE)]
    rng.shuffle(order)
    pieces, utterances, pos = [np.zeros(SAMPLE_RATE, np.int16)], [], SAMPLE_RATE        # 1 s lead-in
    for text, voice in order:
        audio = _speech(text, voice)
        utterances.append(Utterance(text, voice, pos / SAMPLE_RATE, (pos + audio.size) / SAMPLE_RATE))
        gap = np.zeros(int(rng.uniform(0.7, 1.5) * SAMPLE_RATE), np.int16)
        pieces += [audio, gap]
        pos += audio.size + gap.size
    return np.concatenate(pieces), utterances


def generate(directory: Path = DATA_DIR, seed: int = 0) -> tuple[Path, Path]:
    """Write ``clean.wav`` and ``labels.json`` (what ``python -m labkit data speech`` does)."""
    samples, utterances = build_clean(seed)
    wav = write_wav(Path(directory) / CLEAN_WAV.name, samples, SAMPLE_RATE)
    labels = Path(directory) / LABELS_JSON.name
    labels.write_text(json.dumps({
        "sample_rate": SAMPLE_RATE, "seed": seed, "duration_s": samples.size / SAMPLE_RATE,
        "about": "Ground-truth utterances of clean.wav (espeak-ng speech; see labkit/speechdata.py).",
        "utterances": [asdict(u) for u in utterances],
    }, indent=1) + "\n")
    return wav, labels


def load_clean() -> tuple[np.ndarray, list[Utterance]]:
    """The committed clean recording (16 kHz int16) and its labels (read once, then shared: don't modify)."""
    samples, utterances = _load_clean()
    return samples, list(utterances)


@lru_cache(maxsize=1)
def _load_clean() -> tuple[np.ndarray, tuple[Utterance, ...]]:
    if not CLEAN_WAV.exists() or not LABELS_JSON.exists():
        raise FileNotFoundError(f"{CLEAN_WAV} is missing: rebuild it with `python -m labkit data speech`")
    samples, _ = read_wav(CLEAN_WAV)
    samples.setflags(write=False)
    raw = json.loads(LABELS_JSON.read_text())
    return samples, tuple(Utterance(**u) for u in raw["utterances"])


def speech_mask(utterances: list[Utterance], n_samples: int) -> np.ndarray:
    mask = np.zeros(n_samples, bool)
    for u in utterances:
        mask[round(u.start_s * SAMPLE_RATE): round(u.end_s * SAMPLE_RATE)] = True
    return mask


def frame_labels(utterances: list[Utterance], n_samples: int, frame_ms: int = 10) -> np.ndarray:
    """Per ``frame_ms`` frame: True where the frame overlaps labelled speech by at least half."""
    n = SAMPLE_RATE * frame_ms // 1000
    mask = speech_mask(utterances, n_samples)[: n_samples // n * n].reshape(-1, n)
    return mask.mean(axis=1) >= 0.5


def make_noise(kind: str, n_samples: int, seed: int = 0) -> np.ndarray:
    """``n_samples`` of noise with unit RMS (float64). Deterministic under ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == "white":
        noise = rng.standard_normal(n_samples)
    elif kind == "pink":                              # 1/f power from 20 Hz up (no microphone records drift)
        spectrum = np.fft.rfft(rng.standard_normal(n_samples))
        freqs = np.fft.rfftfreq(n_samples, 1 / SAMPLE_RATE)
        audible = freqs >= 20
        spectrum[audible] /= np.sqrt(freqs[audible])
        spectrum[~audible] = 0
        noise = np.fft.irfft(spectrum, n_samples)
    elif kind == "hum":                               # 50 Hz mains and its harmonics, slightly wandering
        t = np.arange(n_samples) / SAMPLE_RATE
        wobble = 0.2 * np.sin(2 * np.pi * 0.1 * t)
        noise = sum(np.sin(2 * np.pi * 50 * k * t + wobble * k) / k for k in range(1, 9))
        noise = noise + 0.05 * rng.standard_normal(n_samples)
    elif kind == "babble":                            # six talkers at once, cut from the recording's own speech
        samples, utterances = load_clean()
        voices = [samples[round(u.start_s * SAMPLE_RATE): round(u.end_s * SAMPLE_RATE)].astype(np.float64)
                  for u in utterances]
        noise = np.zeros(n_samples)
        for _talker in range(6):
            stream, total = [], 0
            while total < n_samples:
                piece = voices[rng.integers(len(voices))]
                stream.append(piece)
                total += piece.size
            track = np.concatenate(stream)
            offset = int(rng.integers(track.size - n_samples + 1))
            noise += track[offset: offset + n_samples]
    else:
        raise ValueError(f"unknown noise {kind!r}; choose from {NOISES}")
    return noise / np.sqrt(np.mean(noise ** 2))


def mix(clean: np.ndarray, utterances: list[Utterance], noise_unit: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mixture, noise_only)``, both int16: the noise scaled so speech power / noise power = ``snr_db``."""
    speech = clean.astype(np.float64)
    p_speech = np.mean(speech[speech_mask(utterances, clean.size)] ** 2)
    noise = noise_unit[: clean.size] * np.sqrt(p_speech / 10 ** (snr_db / 10))
    as_int16 = lambda x: np.clip(np.round(x), -32768, 32767).astype(np.int16)  # noqa: E731
    return as_int16(speech + noise), as_int16(noise)


def condition_audio(noise: str, snr_db: float | None, clean: np.ndarray | None = None,
                    utterances: list[Utterance] | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """The recording under one condition, and the same noise alone (``None`` for clean)."""
    if clean is None or utterances is None:
        clean, utterances = load_clean()
    if noise == "clean":
        return clean, None
    return mix(clean, utterances, make_noise(noise, clean.size, seed + NOISES.index(noise)), snr_db)


def ensure_condition_wav(noise: str, snr_db: float | None) -> Path:
    """A WAV of one condition in the cache (``~/.cache/labkit/generated``; made once, then reused): for the file source."""
    if noise == "clean":
        return CLEAN_WAV
    path = cache_dir() / "generated" / f"speech_{noise}_{snr_db:g}dB.wav"
    if not path.exists():
        write_wav(path, condition_audio(noise, snr_db)[0], SAMPLE_RATE)
    return path
