"""The recogniser's own process: ``python -I labkit/audio/asr_worker.py LM DICT`` (run by path).

It imports only numpy, soxr and pocketsphinx, never the ``labkit`` package (whose import pulls in the
server and the OpenAI SDK: seconds on a busy machine, per worker). The parent builds the language
model and dictionary files (:func:`labkit.audio._sphinx.model_files`).

**Every utterance is decoded incrementally** (:class:`Utterance`): audio is resampled to 16 kHz by a
streaming resampler, dithered from a per-utterance seeded generator and fed to pocketsphinx as it
comes (``full_utt=False``: a live cepstral mean starting from :data:`CMNINIT`). Decoding a whole
utterance at once is the same code fed one chunk, so a transcript never depends on whether the
utterance was streamed while the user spoke or decoded at commit (the fallback), nor on chunk sizes.

Protocol on stdin: messages of a 9-byte header (op: uint8, utterance id: uint32, payload bytes: uint32,
little-endian) and the payload. ``BEGIN`` (payload: sample rate, uint32) opens an utterance on a decoder
from the worker's pool, ``AUDIO`` (PCM16 mono at that rate) feeds it, ``END`` finishes it and the worker
answers one UTF-8 line on stdout, ``"<id> <transcript>"`` (or ``"<id>!<error>"``), ``CANCEL`` drops it
(no answer). Decoders are reused: at most :data:`KEEP_IDLE` idle ones are kept. It exits when stdin closes.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

RATE = 16_000
BEGIN, AUDIO, END, CANCEL = 1, 2, 3, 4
HEADER = struct.Struct("<BII")

#: The starting cepstral mean of every utterance: the tuning speech set's mean cepstrum (labkit.speechsets,
#: no session audio used). With pocketsphinx's own start (``40,3,-1``) incremental decoding's WER on the
#: sessions' utterances was 0.353; with this, 0.224 (see :mod:`labkit.audio._sphinx`).
CMNINIT = "50.33,-13.26,-2.27,0.01,-3.78,-4.60,-5.35,-6.21,-4.33,-2.45,-1.62,-1.14,-0.20"
#: pocketsphinx's own search settings the lab changes (why, with the figures: :mod:`labkit.audio._sphinx`).
#: ``fwdflat`` off: no second, flat-lexicon pass over the whole utterance after the tree search.
DECODER_SETTINGS: dict = {"fwdflat": False, "cmninit": CMNINIT}
#: pocketsphinx's defaults, kept to measure the lab's settings against (``bench realtime --concurrency``):
#: its second pass, its starting mean, and (``batch``, not a pocketsphinx key) its whole-utterance mode,
#: whose cepstral mean is the whole utterance's (it cannot stream).
DEFAULT_SETTINGS: dict = {"fwdflat": True, "batch": True}
#: Idle decoders a worker keeps for the next utterances (building one takes a fraction of a second).
KEEP_IDLE = 24
DITHER_SEED = 0


def make_decoder(lm_path: str, dict_path: str, settings: dict | None = None):
    """A decoder for the lab's language model; ``settings`` (default :data:`DECODER_SETTINGS`) are
    pocketsphinx configuration keys such as ``fwdflat``, ``bestpath``, ``ds``, ``beam`` or ``cmninit``."""
    from pocketsphinx import Decoder

    chosen = {k: v for k, v in (DECODER_SETTINGS if settings is None else settings).items() if k != "batch"}
    return Decoder(samprate=RATE, lm=lm_path, dict=dict_path, loglevel="FATAL", **chosen)


class Utterance:
    """One utterance being decoded as its audio arrives: ``feed`` PCM16 (any chunks), then ``finish()``.

    The decoder's feature extractor is reset first: pocketsphinx otherwise starts each utterance's
    cepstral mean from the previous utterance's, so a worker's transcript depended on what it (another
    session) had decoded before."""

    def __init__(self, decoder, sample_rate: int, batch: bool = False):
        import soxr

        self.decoder, self.batch, self._held = decoder, batch, []
        self.finished = False
        self.resampler = None if sample_rate == RATE else soxr.ResampleStream(sample_rate, RATE, 1, dtype="float32",
                                                                                quality="HQ")
        # espeak's exact digital silence upsets the recogniser's features: a whisper of dither, seeded
        self.dither = np.random.default_rng(DITHER_SEED)
        decoder.reinit_feat()
        decoder.start_utt()

    def feed(self, pcm, last: bool = False) -> None:
        x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else np.asarray(pcm)
        if self.resampler is not None:
            y = self.resampler.resample_chunk(x.astype(np.float32) / 32768.0, last=last)
            x = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
        if x.size:
            noisy = np.clip(x + self.dither.normal(0, 100, x.size), -32768, 32767).astype("<i2")
            if self.batch:
                self._held.append(noisy)
            else:
                self.decoder.process_raw(noisy.tobytes(), False, False)

    def finish(self) -> str:
        self.feed(np.zeros(0, np.int16), last=True)
        if self.batch:
            self.decoder.process_raw(np.concatenate([np.zeros(0, "<i2"), *self._held]).tobytes(), False, True)
        self.finished = True
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def decode(decoder, pcm: np.ndarray, sample_rate: int = RATE, batch: bool = False) -> str:
    """The words in ``pcm`` (int16 at ``sample_rate``), decoded whole: the same words the utterance
    streamed in any chunks gives, whatever this decoder heard before. ``batch``: pocketsphinx's
    whole-utterance mode instead (measurements only; the lab never decodes that way)."""
    utterance = Utterance(decoder, sample_rate, batch)
    utterance.feed(pcm)
    return utterance.finish()


class Worker:
    """The worker's state: open utterances by id, and a pool of idle decoders (pure of I/O)."""

    def __init__(self, new_decoder):
        self.new_decoder = new_decoder
        self.idle: list = []
        self.open: dict[int, Utterance] = {}

    def handle(self, op: int, uid: int, payload: bytes) -> str | None:
        """One message; returns the answer line (without newline) for ``END``, else None."""
        try:
            if op == BEGIN:
                self._drop(uid)
                decoder = self.idle.pop() if self.idle else self.new_decoder()
                self.open[uid] = Utterance(decoder, struct.unpack("<I", payload[:4])[0])
            elif op == AUDIO:
                if uid in self.open:
                    self.open[uid].feed(payload)
            elif op == END:
                utterance = self.open.get(uid)
                if utterance is None:
                    return f"{uid}!no such utterance"
                text = utterance.finish()
                self._drop(uid)
                return f"{uid} {text}".replace("\n", " ")
            elif op == CANCEL:
                self._drop(uid)
        except Exception as e:                     # a bad utterance fails alone; the worker goes on
            self.open.pop(uid, None)
            return f"{uid}!{type(e).__name__}: {e}".replace("\n", " ") if op == END else None
        return None

    def _drop(self, uid: int) -> None:
        utterance = self.open.pop(uid, None)
        if utterance is None:
            return
        if not utterance.finished:                 # cancelled: close its utterance before the decoder is reused
            try:
                utterance.decoder.end_utt()
            except Exception:                      # a decoder in an unknown state is not reused
                return
        if len(self.idle) < KEEP_IDLE:
            self.idle.append(utterance.decoder)


def main(lm_path: str, dict_path: str) -> None:
    worker = Worker(lambda: make_decoder(lm_path, dict_path))
    worker.idle.append(worker.new_decoder())            # built now: the first utterance does not wait for it
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        op, uid, size = HEADER.unpack(header)
        payload = stdin.read(size) if size else b""
        if len(payload) < size:
            return
        answer = worker.handle(op, uid, payload)
        if answer is not None:
            stdout.write(answer.encode("utf-8") + b"\n")
            stdout.flush()


if __name__ == "__main__":
    main(*sys.argv[1:3])
