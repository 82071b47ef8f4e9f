"""What a WebRTC server has played out of its answers, frame by frame (pure: no clock, no socket).

Over a WebSocket the *client* plays the audio deltas and must tell the server where it stopped
(``conversation.item.truncate``). Over WebRTC the server sends the audio itself, on a media track
paced in real time, so it knows what has been played: it says so with ``output_audio_buffer.started``
/ ``stopped`` / ``cleared``, and an interruption truncates the answer where playback really was.

:class:`OutputPlayout` is that bookkeeping. The adapter pushes each answer's PCM as it is generated
(``push``), marks the answer complete (``finish``), and asks for one frame per 20 ms tick
(``next_frame``): it gets the samples to send (silence when there is nothing) and the
``("started" | "stopped", response_id)`` notices that frame causes. ``clear`` drops what is queued and
says which item was cut, and after how many milliseconds of it had been played.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OutputPlayout", "Cut"]


@dataclass(frozen=True)
class Cut:
    """An answer stopped by ``clear``: its response and item, and how much of it was played."""
    response_id: str
    item_id: str
    played_ms: int


@dataclass
class _Answer:
    response_id: str
    item_id: str
    chunks: deque = field(default_factory=deque)   # int16 arrays not yet played
    offset: int = 0                                 # samples of chunks[0] already played
    played: int = 0                                 # samples of this answer played so far
    finished: bool = False                          # no more audio will be pushed
    started: bool = False


class OutputPlayout:
    def __init__(self, rate: int = 24_000, frame_ms: int = 20):
        self.rate, self.frame = rate, rate * frame_ms // 1000
        self._answers: deque[_Answer] = deque()

    def _answer(self, response_id: str, item_id: str) -> _Answer:
        for a in self._answers:
            if a.response_id == response_id:
                return a
        a = _Answer(response_id, item_id)
        self._answers.append(a)
        return a

    def push(self, response_id: str, item_id: str, pcm: np.ndarray) -> None:
        """Queue more of an answer (int16 at ``rate``), after what is already queued."""
        a = self._answer(response_id, item_id)
        if not a.finished and pcm.size:
            a.chunks.append(np.asarray(pcm, dtype=np.int16))

    def finish(self, response_id: str) -> None:
        """No more audio for this answer (done, cancelled or failed): it stops when its queue is played."""
        for a in self._answers:
            if a.response_id == response_id:
                a.finished = True

    @property
    def playing(self) -> _Answer | None:
        """The answer whose sound is going out (started and not yet stopped), if any."""
        return self._answers[0] if self._answers and self._answers[0].started else None

    def played_ms(self, response_id: str) -> int:
        a = next((a for a in self._answers if a.response_id == response_id), None)
        return 0 if a is None else a.played * 1000 // self.rate

    def next_frame(self) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """The next ``frame`` samples to send, and the notices they cause."""
        out = np.zeros(self.frame, np.int16)
        notices: list[tuple[str, str]] = []
        filled = 0
        while filled < self.frame and self._answers:
            a = self._answers[0]
            if not a.chunks:
                if a.finished:                      # played to its end
                    if a.started:
                        notices.append(("stopped", a.response_id))
                    self._answers.popleft()
                    continue
                break                               # the answer is not fully generated yet: silence for now
            if not a.started:
                a.started = True
                notices.append(("started", a.response_id))
            chunk = a.chunks[0]
            take = min(self.frame - filled, chunk.size - a.offset)
            out[filled:filled + take] = chunk[a.offset:a.offset + take]
            filled += take
            a.offset += take
            a.played += take
            if a.offset == chunk.size:
                a.chunks.popleft()
                a.offset = 0
        if self._answers and self._answers[0].finished and not self._answers[0].chunks and self._answers[0].started:
            notices.append(("stopped", self._answers.popleft().response_id))   # ended exactly on this frame
        return out, notices

    def clear(self) -> Cut | None:
        """Drop everything queued; the answer that was playing (if one was), cut where it was."""
        playing = self.playing
        self._answers.clear()
        if playing is None:
            return None
        return Cut(playing.response_id, playing.item_id, playing.played * 1000 // self.rate)
