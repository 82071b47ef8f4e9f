"""The recogniser's own process: ``python -I labkit/audio/asr_worker.py LM DICT`` (run by path).

It imports only numpy and pocketsphinx, never the ``labkit`` package (whose import pulls in the
server and the OpenAI SDK: seconds on a busy machine, per worker). The parent builds the language
model and dictionary files (:func:`labkit.audio._sphinx.model_files`) and prepares the audio (16 kHz,
dithered: :func:`labkit.audio._sphinx.prepare`).

Protocol on stdin/stdout: the parent writes an 8-byte header (sample rate, byte count, both
little-endian uint32) and that many bytes of PCM16 mono at 16 kHz; the worker answers with one
UTF-8 line, the transcript. It exits when stdin closes.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

RATE = 16_000

#: pocketsphinx's own search settings the lab changes (why, with the figures: :mod:`labkit.audio._sphinx`).
#: ``fwdflat`` off: no second, flat-lexicon pass over the whole utterance after the tree search.
DECODER_SETTINGS: dict = {"fwdflat": False}
#: pocketsphinx's defaults, kept to measure the lab's settings against (``bench realtime --concurrency``).
DEFAULT_SETTINGS: dict = {"fwdflat": True}


def make_decoder(lm_path: str, dict_path: str, settings: dict | None = None):
    """A decoder for the lab's language model; ``settings`` (default :data:`DECODER_SETTINGS`) are
    pocketsphinx configuration keys such as ``fwdflat``, ``bestpath``, ``ds`` or ``beam``."""
    from pocketsphinx import Decoder

    chosen = DECODER_SETTINGS if settings is None else settings
    return Decoder(samprate=RATE, lm=lm_path, dict=dict_path, loglevel="FATAL", **chosen)


def decode(decoder, pcm: np.ndarray) -> str:
    """The words in ``pcm`` (int16, 16 kHz, already prepared), the same whatever this decoder heard before.

    The feature extractor is reset first: pocketsphinx otherwise starts each utterance's cepstral mean
    from the previous utterance's, so a worker's transcript depended on what it (another session) had
    decoded before; the same audio came out as different words on a fresh and a used decoder."""
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(np.asarray(pcm, dtype="<i2").tobytes(), False, True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def main(lm_path: str, dict_path: str) -> None:
    decoder = make_decoder(lm_path, dict_path)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return
        rate, size = struct.unpack("<II", header)
        pcm = np.frombuffer(stdin.read(size), dtype="<i2")
        text = decode(decoder, pcm) if rate == RATE else ""
        stdout.write(text.replace("\n", " ").encode("utf-8") + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main(*sys.argv[1:3])
