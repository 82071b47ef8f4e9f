"""Why speech could not be recognised or synthesized: the exceptions, apart from the engines.

They live here, not in :mod:`~labkit.audio.asr` / :mod:`~labkit.audio.tts`, so that code which only
*judges* a failure (:mod:`labkit.realtime.failures`, a pure table) need not import the engines, whose
worker pools are built at import.
"""

from __future__ import annotations

__all__ = ["ASRUnavailable", "ASRBusy", "TTSUnavailable", "TTSBusy"]


class ASRUnavailable(RuntimeError):
    """Offline recognition cannot run here; the message says why and how to fix it."""


class ASRBusy(ASRUnavailable):
    """Too many utterances are already waiting for the recogniser."""


class TTSUnavailable(RuntimeError):
    """espeak-ng could not be loaded (the reason says how to fix it)."""


class TTSBusy(TTSUnavailable):
    """Too many sentences are already waiting for the synthesiser."""
