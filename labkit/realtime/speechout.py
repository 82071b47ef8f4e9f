"""A spoken reply cut into audio chunks, each with the words it begins: pure.

The Realtime API streams a spoken reply as ``response.output_audio.delta`` events, with the
transcript as ``response.output_audio_transcript.delta``. A client that shows the words as they are
heard (and a ``conversation.item.truncate`` that cuts the transcript where playback stopped) needs
each word's text to arrive just before its sound. So the audio is cut into ``chunk_ms`` chunks, and
every word goes with the chunk in which it starts (whatever is left with the last chunk). Chunk
``k`` is due ``k * chunk_ms`` after the first, at the pace of speech (``pace``: the server's time
scale); the adapter only sleeps until each is due and sends it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SpeechChunk", "speech_chunks", "word_times_ms"]


@dataclass(frozen=True)
class SpeechChunk:
    index: int
    start: int                               # first sample (of the output rate)
    end: int                                 # one past the last sample
    due_s: float                             # after the first chunk was due
    words: tuple[tuple[str, int], ...]       # (text, start ms) of the words this chunk begins


def word_times_ms(words: list[tuple[str, int]], sample_rate: int) -> list[tuple[str, int]]:
    """(text, start sample at ``sample_rate``) → (text, start ms), as a synthesiser reports words."""
    return [(piece, sample * 1000 // sample_rate) for piece, sample in words]


def speech_chunks(n_samples: int, word_ms: list[tuple[str, int]], sample_rate: int, chunk_ms: int = 100,
                  pace: float = 1.0) -> list[SpeechChunk]:
    """The chunks of ``n_samples`` of audio, each with the words (from ``word_ms``, in order) that start
    before its end; the last chunk takes any word left (a synthesiser may place one at the very end)."""
    if chunk_ms <= 0:
        raise ValueError("chunk_ms must be positive")
    chunk = sample_rate * chunk_ms // 1000
    chunks, w = [], 0
    for k, start in enumerate(range(0, n_samples, chunk)):
        end_ms = (start + chunk) * 1000 // sample_rate
        last = start + chunk >= n_samples
        first_word = w
        while w < len(word_ms) and (word_ms[w][1] < end_ms or last):
            w += 1
        chunks.append(SpeechChunk(k, start, min(start + chunk, n_samples), k * chunk_ms / 1000 * pace,
                                  tuple(word_ms[first_word:w])))
    return chunks
