"""When each chunk of a spoken reply is due (pure: the caller passes the time).

A reply streams at the pace of speech: chunk ``k`` is due when the audio before it has played,
counted from the first chunk. It is spoken sentence by sentence, and a sentence can come late (its
synthesis waited for a busy synthesiser): then the pace starts again from that moment rather than
sending the late audio in a burst to catch up (a client's jitter buffer has underrun already)."""

from __future__ import annotations

__all__ = ["SpeechPace"]


class SpeechPace:
    """Pace of ``rate`` samples a second, times ``time_scale`` (the server's: 0.02 = fifty times faster)."""

    def __init__(self, rate: int, time_scale: float = 1.0):
        self.rate, self.scale = rate, time_scale
        self.t0: float | None = None
        self.sent_samples = 0

    def due(self) -> float:
        """When the next chunk is due (after :meth:`resume`)."""
        return self.t0 + self.sent_samples / self.rate * self.scale

    def resume(self, now: float) -> None:
        """A sentence is ready at ``now``: on time, the pace goes on; late (or first), it restarts now."""
        if self.t0 is None or now > self.due():
            self.t0 = now - self.sent_samples / self.rate * self.scale

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before sending the next chunk."""
        return max(0.0, self.due() - now)

    def sent(self, samples: int) -> None:
        self.sent_samples += samples

    @property
    def sent_ms(self) -> int:
        """Audio sent so far, in milliseconds: where the next sentence starts in the reply."""
        return self.sent_samples * 1000 // self.rate
