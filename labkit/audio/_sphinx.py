"""pocketsphinx with a lab-vocabulary language model (built once per process, in a temporary folder).

The bundled general English model recognises the lab's synthetic speech poorly (word error rates of
0.4-0.9 were measured). A small trigram model built from the lab's own sentences (``data/``) and the
pronunciation dictionary trimmed to their words recognises them almost perfectly and starts in well
under a second (the full 134k-word dictionary takes several seconds to load).
"""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from .pcm import resample

__all__ = ["recognise", "lab_corpus", "normalise"]

_lock = threading.Lock()
_decoder = None


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


def _build_decoder():
    from pocketsphinx import Decoder, get_model_path
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
    return Decoder(samprate=16_000, lm=str(folder / "lab.arpa"), dict=str(folder / "lab.dict"), loglevel="FATAL")


def recognise(audio: np.ndarray, sample_rate: int) -> str:
    """The words in ``audio`` (int16 mono), using the lab-vocabulary model."""
    global _decoder
    pcm = resample(np.asarray(audio, dtype=np.int16), sample_rate, 16_000) if sample_rate != 16_000 else audio
    # espeak's exact digital silence upsets the recogniser's features: a whisper of dither fixes it
    dither = np.random.default_rng(0).normal(0, 100, pcm.size)
    pcm = np.clip(pcm + dither, -32768, 32767).astype(np.int16)
    with _lock:
        if _decoder is None:
            _decoder = _build_decoder()
        _decoder.start_utt()
        _decoder.process_raw(pcm.tobytes(), False, True)
        _decoder.end_utt()
        hyp = _decoder.hyp()
    return hyp.hypstr if hyp is not None else ""
