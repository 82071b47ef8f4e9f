"""pocketsphinx with a lab-vocabulary language model (built once per process, in a temporary folder).

The bundled general English model recognises the lab's synthetic speech poorly (word error rates of
0.4-0.9 were measured). A small trigram model built from the lab's own sentences (``data/``) and the
pronunciation dictionary trimmed to their words recognises them far better (WER about 0.2 on the
sessions' utterances, below) and starts in well under a second (the full 134k-word dictionary takes
several seconds to load).

**Search settings** (:data:`DECODER_SETTINGS`, chosen for issue 18's transcript target: recognition is
CPU-bound when a class stops talking together). pocketsphinx's default search is a tree pass, then a
second flat-lexicon pass over the whole utterance (``fwdflat``), then a lattice best path. The lab turns
the second pass off. Measured in one run, each setting taking turns utterance by utterance (2 cores,
under load ~5; ``bench realtime --concurrency`` repeats this in its JSON's ``cost`` section):

- the sessions' 20 utterances (speechdata, 66 s of speech): defaults 0.295 CPU s per utterance, WER
  0.218; the lab's 0.189 CPU s, WER 0.192;
- the tuning speech set, clean (speechsets: 24 utterances, 84 s, other voices, rates and levels):
  defaults 0.401 CPU s, WER 0.556; the lab's 0.261 CPU s, WER 0.556.

No audio was used to build anything (the language model is built from the sentences' text).
So 1.55x less CPU per utterance and the same words. Rejected, same run, with the second pass off: ``ds=2`` (every other
frame) 0.136 / 0.207 CPU s but WER 0.250 / 0.546 (+0.06 on the sessions' set); ``bestpath`` off 0.186 /
0.230 CPU s, WER 0.276 / 0.652; narrower beams (``beam`` 1e-30, ``wbeam`` 1e-20) doubled the WER. (The
tuning set's high WER is its quiet sessions and other accents, alike for every setting; the held-out
set's sentences are not in the vocabulary, so it cannot score a recogniser built for the lab's.)

**Recognising while the user speaks** (issue 18's other lever; built: :mod:`labkit.audio.asr`). Every
utterance is decoded incrementally (:class:`labkit.audio.asr_worker.Utterance`: ``full_utt=False``, a live
cepstral mean starting from :data:`CMNINIT`, a streaming resampler and seeded dither), so a transcript is
the same whatever the chunk size and whether it was streamed while spoken or decoded whole at commit
(the fallback). Measured, same settings, the sessions' 20 utterances: 100 ms and 30 ms chunks and one
call gave 10/10 identical transcripts; 0.031 CPU s is left for the last 0.5 s and the end of the
utterance, against 0.197 CPU s for the whole utterance at once. The price is accuracy: WER 0.224
(``cmninit`` = the tuning set's mean cepstrum, no session audio used; with pocketsphinx's own start
0.353) against 0.192 for the whole-utterance (batch) mean; the two never gave the same transcript
(0/10), which is why the fallback decodes incrementally too. ``bench realtime --concurrency`` reports
the CPU left at the end (``cost.recognition_cpu_s_left_at_end``). The batch mode is kept for
measurements only (``DEFAULT_SETTINGS``' ``batch``).
"""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from .asr_worker import CMNINIT, DECODER_SETTINGS, DEFAULT_SETTINGS, decode, make_decoder
from .pcm import resample

__all__ = ["recognise", "lab_corpus", "normalise", "model_files", "prepare", "CMNINIT", "DECODER_SETTINGS",
           "DEFAULT_SETTINGS"]

_lock = threading.Lock()
_decoders: dict[tuple, object] = {}


def normalise(text: str) -> str:
    """Lower case, words only: how transcripts are compared (and how the language model is built)."""
    text = text.lower().replace("-", " ")
    return " ".join(re.findall(r"[a-z']+", text))


def lab_corpus() -> list[str]:
    """The sentences the recogniser should expect: the speech set's and the simulated model's."""
    from ..corpus import SENTENCES, knowledge

    sentences = list(SENTENCES)
    for topic in knowledge()["topics"]:
        for answer in topic["answers"]:
            sentences += re.split(r"(?<=[.!?])\s+", answer)
    return [s for s in (normalise(x) for x in sentences) if s]


_files: tuple[str, str] | None = None
_files_lock = threading.Lock()


def model_files() -> tuple[str, str]:
    """``(language model path, dictionary path)``, written once per process into a temporary folder."""
    global _files
    with _files_lock:
        if _files is None:
            _files = _write_model_files()
        return _files


def _write_model_files() -> tuple[str, str]:
    from pocketsphinx import get_model_path
    from pocketsphinx.lm import ArpaBoLM

    folder = Path(tempfile.mkdtemp(prefix="labkit-asr-"))
    corpus = lab_corpus()
    model = ArpaBoLM(text="\n".join(corpus) + "\n", add_start=True)
    model.compute()
    with open(folder / "lab.arpa", "w") as f:
        model.write(f)
    words = {w for line in corpus for w in line.split()}
    keep = []
    with open(Path(get_model_path()) / "en-us" / "cmudict-en-us.dict") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if re.sub(r"\(\d+\)$", "", head) in words:
                keep.append(line)
    (folder / "lab.dict").write_text("".join(keep))
    return str(folder / "lab.arpa"), str(folder / "lab.dict")


def prepare(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """16 kHz int16, with a whisper of dither (espeak's exact digital silence upsets the recogniser's
    features), for a decoder fed directly. The lab's own decoding (:class:`labkit.audio.asr_worker.Utterance`)
    resamples and dithers as the audio streams in, so it takes the audio as it is."""
    pcm = resample(np.asarray(audio, dtype=np.int16), sample_rate, 16_000) if sample_rate != 16_000 else audio
    dither = np.random.default_rng(0).normal(0, 100, pcm.size)
    return np.clip(pcm + dither, -32768, 32767).astype(np.int16)


def recognise(audio: np.ndarray, sample_rate: int, settings: dict | None = None) -> str:
    """The words in ``audio`` (int16 mono), using the lab-vocabulary model, in this process.

    ``settings``: pocketsphinx search settings (default :data:`DECODER_SETTINGS`, what the server's
    recognisers use); one decoder is kept per distinct settings."""
    chosen = DECODER_SETTINGS if settings is None else settings
    key = tuple(sorted(chosen.items()))
    with _lock:
        if key not in _decoders:
            _decoders[key] = make_decoder(*model_files(), chosen)
        return decode(_decoders[key], np.asarray(audio, dtype=np.int16), sample_rate, bool(chosen.get("batch")))
