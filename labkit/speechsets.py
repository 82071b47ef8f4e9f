"""A tuning set and a held-out set of labelled speech for VAD evaluation that share nothing.

Chapter 04's committed recording (:mod:`labkit.speechdata`) is small, and tuning a detector and
scoring it on the same audio flatters it. These two sets are made apart:

* **Sentences**: the tuning set reads :data:`labkit.speechdata.SENTENCES`; the held-out set reads
  :data:`HELDOUT_SENTENCES`, which share no sentence with them (a test checks it).
* **Voices**: espeak-ng voices built from a base accent and a variant; the two sets use different
  bases *and* different variants (:data:`TUNING_VOICES`, :data:`HELDOUT_VOICES`).
* **Delivery**: each utterance has its own speaking rate (130-220 words a minute) and a speed
  perturbation of 0.9-1.1 (resampling, which moves pitch and formants with it).
* **Levels**: the set is cut into sessions (recordings) of four utterances; each session peaks at
  its own level, from -35 to -6 dBFS (its active RMS is 15-20 dB lower: about -53 to -22 dBFS).
* **Noise**: the same eight kinds in both (:mod:`labkit.noises`) but different recordings: other
  styles (60 Hz mains vs 50 Hz, other fan, music and typing), other seeds, and babble made of
  the set's own voices. SNR = the session's speech power over its labelled speech / noise power.

**One recording of each, on every machine.** espeak-ng is not bit-exact from run to run (its output
drifts by a few samples per utterance, see :mod:`labkit.speechdata`), and a detector's figures move
with it: two generations of the tuning set gave the server VAD's replica 1,660 and 1,649 exact
turns of 1,752, and one generation of the held-out set in twelve had babble's 24th turn. So the
sets are packaged (``labkit/data/speech/speechset-<name>-<key>.npz``, 1.4 MB each; the generation
a fresh CI-style run made in session 9, not one chosen by its scores), and every figure, test and
chapter reads the same audio. The key is a hash of everything that defines a set; a recipe with no
packaged file (one changed here) is built on first use, in about 2 s, and cached under
``$XDG_CACHE_HOME/labkit`` (``~/.cache/labkit``), never in the source tree. :func:`package`
writes a fresh generation where ``load`` looks first.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import noises
from .audio.pcm import resample
from .resources import cache_dir, data_file
from .speechdata import SAMPLE_RATE, SENTENCES, Utterance, speech_mask

__all__ = ["HELDOUT_SENTENCES", "TUNING_VOICES", "HELDOUT_VOICES", "LEVELS_DBFS", "SNRS", "CONDITIONS",
           "Session", "SpeechSet", "load", "condition", "cache_dir", "package", "packaged_path", "PACKAGED_DIR",
           "DRAW_SEED_STEP"]

HELDOUT_SENTENCES = (
    "Could you book a table for four people tomorrow evening?",
    "The train to the airport leaves from platform nine.",
    "My sister planted tomatoes and beans in the garden.",
    "Turn left at the bakery and walk two more blocks.",
    "The library closes early on public holidays.",
    "He forgot his umbrella, so he waited under the bridge.",
    "Remind me to call the dentist on Thursday morning.",
    "The orchestra played until almost midnight.",
    "A cold wind blew across the empty harbour.",
    "Please read the last paragraph once more, slowly.",
    "We painted the kitchen a pale shade of green.",
    "The children built a castle out of cardboard boxes.",
    "How much does a return ticket to the coast cost?",
    "Our neighbour keeps three chickens and a goat.",
    "The recipe needs two eggs, some flour and a pinch of salt.",
    "She finished the marathon in just under four hours.",
    "Set an alarm for half past six, not seven.",
    "The museum has a new exhibition about old maps.",
    "Rain is expected over the hills later this afternoon.",
    "I left my glasses somewhere near the piano.",
    "The bus driver smiled and waved at everyone.",
    "Could you spell your family name for me, please?",
    "Fresh bread smells wonderful early in the morning.",
    "The river flooded the fields after the storm.",
)
#: base accent + variant; no base and no variant appears in both lists.
TUNING_VOICES = ("en-us", "en-us+f3", "en", "en+f4", "en-gb-scotland+m3", "en-029+f1", "en-us-nyc+m6", "en+klatt2")
HELDOUT_VOICES = ("en-gb-x-rp+m2", "en-gb-x-gbclan+f2", "en-gb-x-gbcwmd+m4", "en-gb-x-rp+f5",
                  "en-gb-x-gbclan+m7", "en-gb-x-gbcwmd+klatt4", "en-gb-x-rp+Andy", "en-gb-x-gbclan+belinda")
#: One peak level per session, spread over -35..-6 dBFS.
LEVELS_DBFS = (-35, -29, -23, -17, -11, -6)
UTTERANCES_PER_SESSION = 4
SNRS = (20, 10, 5, 0)
#: ``(noise, snr_db)``; clean is ``("clean", None)``.
CONDITIONS = (("clean", None),) + tuple((kind, snr) for kind in noises.NOISE_KINDS for snr in SNRS)
_VERSION = 1


@dataclass(frozen=True)
class _Recipe:
    name: str
    sentences: tuple[str, ...]
    voices: tuple[str, ...]
    seed: int
    style: noises.NoiseStyle


_RECIPES = {
    "tuning": _Recipe("tuning", SENTENCES, TUNING_VOICES, seed=101, style=noises.TUNING_STYLE),
    "heldout": _Recipe("heldout", HELDOUT_SENTENCES, HELDOUT_VOICES, seed=202, style=noises.HELDOUT_STYLE),
}


@dataclass(frozen=True)
class Session:
    audio: np.ndarray                 # clean speech, int16 at 16 kHz
    utterances: tuple[Utterance, ...]
    level_dbfs: float


@dataclass(frozen=True)
class SpeechSet:
    name: str
    sessions: tuple[Session, ...]
    seed: int
    style: noises.NoiseStyle

    @property
    def duration_s(self) -> float:
        return sum(s.audio.size for s in self.sessions) / SAMPLE_RATE

    @property
    def utterances(self) -> list[Utterance]:
        return [u for s in self.sessions for u in s.utterances]


def _key(recipe: _Recipe) -> str:
    text = json.dumps([_VERSION, recipe.sentences, recipe.voices, recipe.seed, LEVELS_DBFS, UTTERANCES_PER_SESSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _utterance_audio(text: str, voice: str, rng: random.Random) -> np.ndarray:
    """One utterance at 16 kHz (float), trimmed to its non-zero span, at a random rate and speed."""
    from .audio.tts import ESPEAK_RATE, synthesize

    pcm = synthesize(text, voice, rng.randint(130, 220))
    nonzero = np.flatnonzero(pcm)
    if nonzero.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} in voice {voice!r}")
    trimmed = pcm[nonzero[0]: nonzero[-1] + 1].astype(np.float32) / 32768
    speed = rng.uniform(0.9, 1.1)                 # played back faster or slower: pitch and formants move
    return resample(trimmed, round(ESPEAK_RATE * speed), SAMPLE_RATE).astype(np.float64)


def _build(recipe: _Recipe) -> tuple[list[np.ndarray], list[list[dict]]]:
    rng = random.Random(recipe.seed)
    order = list(recipe.sentences)
    rng.shuffle(order)
    audios, labels = [], []
    for k, level in enumerate(LEVELS_DBFS):
        pieces, utts, pos = [np.zeros(SAMPLE_RATE)], [], SAMPLE_RATE        # 1 s lead-in
        for j in range(UTTERANCES_PER_SESSION):
            index = k * UTTERANCES_PER_SESSION + j
            text, voice = order[index % len(order)], recipe.voices[(index * 3 + k) % len(recipe.voices)]
            speech = _utterance_audio(text, voice, rng)
            peak_db = level + rng.uniform(-2, 2)  # utterances of one session differ a little too
            speech *= 10 ** (peak_db / 20) * 32767 / np.max(np.abs(speech))
            utts.append({"text": text, "voice": voice, "start_s": pos / SAMPLE_RATE,
                         "end_s": (pos + speech.size) / SAMPLE_RATE})
            gap = np.zeros(int(rng.uniform(0.8, 2.0) * SAMPLE_RATE))
            pieces += [speech, gap]
            pos += speech.size + gap.size
        audios.append(np.clip(np.round(np.concatenate(pieces)), -32768, 32767).astype(np.int16))
        labels.append(utts)
    return audios, labels


#: where the packaged generations are (what :func:`load` reads first)
PACKAGED_DIR = data_file("speech")


def _file_name(name: str) -> str:
    return f"speechset-{name}-{_key(_RECIPES[name])}.npz"


def packaged_path(name: str) -> Path:
    """The packaged generation of set ``name`` for its current recipe (it may not exist)."""
    return PACKAGED_DIR / _file_name(name)


def _write(path: Path, audios: list[np.ndarray], labels: list[list[dict]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")     # one per process: test workers may race
    try:
        np.savez_compressed(tmp, labels=json.dumps(labels), **{f"s{k}": a for k, a in enumerate(audios)})
        os.replace(tmp, path)                 # atomic: parallel test workers never see half a file
    finally:
        tmp.unlink(missing_ok=True)


def package(name: str, *, overwrite: bool = False) -> Path:
    """Generate set ``name`` afresh and write it where :func:`load` looks first, removing the
    packaged generations of its older recipes: a maintainer's step after a recipe change, after
    which every figure measured on the old generation must be measured again. The generation of
    the current recipe is replaced only with ``overwrite`` (it is what the figures were measured on)."""
    if name not in _RECIPES:
        raise ValueError(f"unknown speech set {name!r}; choose 'tuning' or 'heldout'")
    path = packaged_path(name)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path.name} is packaged already, and every figure was measured on it; "
                              "pass overwrite=True to replace it")
    _write(path, *_build(_RECIPES[name]))
    for older in path.parent.glob(f"speechset-{name}-*.npz"):
        if older != path:
            older.unlink()
    load.cache_clear()
    return path


@lru_cache(maxsize=4)
def load(name: str) -> SpeechSet:
    """The ``"tuning"`` or ``"heldout"`` set: the packaged generation, else the cached one (built on first use)."""
    if name not in _RECIPES:
        raise ValueError(f"unknown speech set {name!r}; choose 'tuning' or 'heldout'")
    recipe = _RECIPES[name]
    packaged, cached = packaged_path(name), cache_dir() / _file_name(name)
    path = packaged if packaged.exists() else cached
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            audios = [data[f"s{k}"] for k in range(len(LEVELS_DBFS))]
            labels = json.loads(str(data["labels"]))
    else:
        audios, labels = _build(recipe)
        _write(cached, audios, labels)
    sessions = []
    for audio, utts, level in zip(audios, labels, LEVELS_DBFS):
        audio.setflags(write=False)
        sessions.append(Session(audio, tuple(Utterance(**u) for u in utts), level))
    return SpeechSet(name, tuple(sessions), recipe.seed, recipe.style)


#: how far apart the noise seeds of two draws of a condition are (:func:`condition`'s ``draw``)
DRAW_SEED_STEP = 7919


def condition(speech: SpeechSet, noise: str, snr_db: float | None,
              draw: int = 0) -> list[tuple[np.ndarray, np.ndarray | None, list]]:
    """Every session under one condition: ``[(mixture, noise_only or None, utterances), ...]`` (int16).

    ``draw`` picks another recording of the same noise (same style, another seed; babble the same
    talkers' utterances in another order): 0 is the set's own, what the tests report."""
    out = []
    for k, session in enumerate(speech.sessions):
        utts = list(session.utterances)
        if noise == "clean":
            out.append((session.audio, None, utts))
            continue
        pool = None
        if noise == "babble":             # the set's own voices, from the other sessions
            pool = [s.audio[round(u.start_s * SAMPLE_RATE): round(u.end_s * SAMPLE_RATE)]
                    for j, s in enumerate(speech.sessions) if j != k for u in s.utterances]
        seed = speech.seed * 1000 + 37 * k + noises.NOISE_KINDS.index(noise) + DRAW_SEED_STEP * draw
        unit = noises.make(noise, session.audio.size, SAMPLE_RATE, speech.style, seed, pool)
        clean = session.audio.astype(np.float64)
        p_speech = np.mean(clean[speech_mask(utts, clean.size)] ** 2)
        scaled = unit * np.sqrt(p_speech / 10 ** (snr_db / 10))
        as_int16 = lambda x: np.clip(np.round(x), -32768, 32767).astype(np.int16)  # noqa: E731
        out.append((as_int16(clean + scaled), as_int16(scaled), utts))
    return out


def describe(speech: SpeechSet) -> dict:
    """What the set holds (for a benchmark's JSON)."""
    return {"name": speech.name, "duration_s": round(speech.duration_s, 1), "sessions": len(speech.sessions),
            "utterances": len(speech.utterances), "voices": sorted({u.voice for u in speech.utterances}),
            "levels_dbfs": list(LEVELS_DBFS), "noise_style": asdict(speech.style), "seed": speech.seed}
