"""Offline text to speech with espeak-ng, bundled by the ``espeakng-loader`` wheel, through ctypes.

espeak-ng has no Python API in that wheel, so we call its C API: ``espeak_Initialize`` in
synchronous mode, a callback that collects the 22 050 Hz int16 samples, ``espeak_Synth`` and
``espeak_Synchronize``. The library keeps global state, so one lock serialises all use.
espeak-ng's pauses are exact digital silence and its output stops right where speech stops, which
is what makes exact ground-truth labels possible for the lab's speech set.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from typing import Hashable

import numpy as np

from .errors import TTSBusy, TTSUnavailable
from .pool import FairPool, QueueFull

__all__ = ["Speaker", "synthesize", "synthesize_words", "synthesize_words_async", "TTSUnavailable", "TTSBusy",
           "ESPEAK_RATE", "MAX_PENDING"]

ESPEAK_RATE = 22_050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_espeakRATE = 1


_EVENT_END_OF_LIST, _EVENT_WORD = 0, 1


class _EspeakEvent(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h: what happened, where in the text, and when in the audio."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class _Espeak:
    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise TTSUnavailable("speech synthesis needs the espeakng-loader package: pip install espeakng-loader") from None
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as e:
            raise TTSUnavailable(f"libespeak-ng could not be loaded: {e}") from None
        lib = self.lib
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.POINTER(_EspeakEvent))
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []          # (text position, length, audio ms)
        self._callback = callback_type(self._on_audio)       # keep a reference: C holds only a pointer
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise TTSUnavailable(f"espeak-ng failed to initialise (returned {rate})")
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()
        self._words_lock = threading.Lock()

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        k = 0
        while events and events[k].type != _EVENT_END_OF_LIST:
            if events[k].type == _EVENT_WORD:
                self._words.append((events[k].text_position, events[k].length, events[k].audio_position))
            k += 1
        return 0

    def synth(self, text: str, voice: str, words_per_minute: int) -> np.ndarray:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r} (try 'en-us', 'en', 'en-us+f3')")
            self.lib.espeak_SetParameter(_espeakRATE, int(words_per_minute), 0)
            self._chunks, self._words = [], []
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            self.lib.espeak_Synth(buf, len(buf), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def synth_words(self, text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, list[tuple[str, int]]]:
        with self._words_lock:                  # synth() takes self.lock; this keeps _words ours until read
            audio = self.synth(text, voice, words_per_minute)
            return audio, _word_pieces(text, list(self._words))


def _word_pieces(text: str, words: list[tuple[int, int, int]]) -> list[tuple[str, int]]:
    """Cut ``text`` at each word event: ``[(piece, start sample), ...]`` whose pieces join to ``text``.

    espeak-ng's text positions are 1-based character offsets into the text it was given."""
    starts = []
    for position, _length, audio_ms in words:
        index = max(0, min(len(text), position - 1))
        if not starts or index > starts[-1][0]:
            starts.append((index, audio_ms * ESPEAK_RATE // 1000))
    if not starts:
        return [(text, 0)] if text else []
    starts[0] = (0, starts[0][1])
    bounds = [i for i, _ in starts] + [len(text)]
    return [(text[bounds[k]:bounds[k + 1]], sample) for k, (_, sample) in enumerate(starts)]


_engine: _Espeak | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Espeak:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine


def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 175) -> np.ndarray:
    """Speech for ``text`` as int16 samples at :data:`ESPEAK_RATE` (22 050 Hz)."""
    return _get_engine().synth(text, voice, words_per_minute)


def synthesize_words(text: str, voice: str = "en-us", words_per_minute: int = 175) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Speech for ``text`` and where each word starts: ``(samples, [(piece, start sample), ...])``.

    The pieces join back to ``text`` exactly (each carries its trailing spaces and punctuation), so
    they can be sent as transcript deltas in step with the audio."""
    return _get_engine().synth_words(text, voice, words_per_minute)


#: Sentences pending synthesis across the process (one per speaking session at a time: the server
#: asks for the next sentence when the previous one is ready). More are refused (:class:`TTSBusy`).
MAX_PENDING = 64
# One thread: espeak-ng keeps global state (one synthesis at a time per process), and it is cheap
# (measured here: about 4 ms of CPU for a 2 s sentence, ~0.3% of real time), so one lane keeps up with
# a class; sentences take turns between sessions so one long answer never delays another's first.
# Its own thread, never the default executor's, which the model's tokenizing uses.
_pool = FairPool("labkit-tts", slots=1, max_pending=MAX_PENDING, max_per_session=2)


async def synthesize_words_async(text: str, voice: str = "en-us", words_per_minute: int = 175,
                                 session: Hashable = None) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """:func:`synthesize_words` on the synthesiser's own thread, taking turns with other sessions;
    raises :class:`TTSBusy` at once when :data:`MAX_PENDING` sentences are pending."""
    try:
        job = _pool.submit(session, _synthesize_words_now, text, voice, words_per_minute, max_pending=MAX_PENDING)
    except QueueFull as e:
        raise TTSBusy(f"speech synthesis is busy ({e.pending} sentences {e.scope} are waiting)") from None
    return await asyncio.wrap_future(job)


def _synthesize_words_now(text: str, voice: str, words_per_minute: int):
    return synthesize_words(text, voice, words_per_minute)        # looked up now: tests may replace it


class Speaker:
    """A voice: ``Speaker("en-us+f3").say("Hello")`` → int16 samples at 22 050 Hz."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 175):
        self.voice, self.words_per_minute = voice, words_per_minute

    def say(self, text: str) -> np.ndarray:
        return synthesize(text, self.voice, self.words_per_minute)
