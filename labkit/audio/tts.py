"""Offline text to speech with espeak-ng, bundled by the ``espeakng-loader`` wheel, through ctypes.

espeak-ng has no Python API in that wheel, so we call its C API: ``espeak_Initialize`` in
synchronous mode, a callback that collects the 22 050 Hz int16 samples, ``espeak_Synth`` and
``espeak_Synchronize``. The library keeps global state, so one lock serialises all use.
espeak-ng's pauses are exact digital silence and its output stops right where speech stops, which
is what makes exact ground-truth labels possible for the lab's speech set.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

__all__ = ["Speaker", "synthesize", "TTSUnavailable", "ESPEAK_RATE"]

ESPEAK_RATE = 22_050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_espeakRATE = 1


class TTSUnavailable(RuntimeError):
    """espeak-ng could not be loaded (the reason says how to fix it)."""


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
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._chunks: list[np.ndarray] = []
        self._callback = callback_type(self._on_audio)       # keep a reference: C holds only a pointer
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise TTSUnavailable(f"espeak-ng failed to initialise (returned {rate})")
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        return 0

    def synth(self, text: str, voice: str, words_per_minute: int) -> np.ndarray:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r} (try 'en-us', 'en', 'en-us+f3')")
            self.lib.espeak_SetParameter(_espeakRATE, int(words_per_minute), 0)
            self._chunks = []
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            self.lib.espeak_Synth(buf, len(buf), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


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


class Speaker:
    """A voice: ``Speaker("en-us+f3").say("Hello")`` → int16 samples at 22 050 Hz."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 175):
        self.voice, self.words_per_minute = voice, words_per_minute

    def say(self, text: str) -> np.ndarray:
        return synthesize(text, self.voice, self.words_per_minute)
