"""A token bucket, pure: the caller passes the time, so tests need no clock and no sleeping.

``rate`` tokens are added per second up to ``capacity``; a request takes one. When the bucket is
empty, ``take`` says how long until the next token: that is the ``retry-after`` to send.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket", "KeyedBuckets"]


@dataclass
class TokenBucket:
    rate: float                 # tokens added per second
    capacity: float             # burst size
    tokens: float = -1.0        # starts full
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, now: float, cost: float = 1.0) -> tuple[bool, float]:
        """Take ``cost`` tokens at time ``now``: ``(True, 0.0)``, or ``(False, seconds_to_wait)``."""
        if self.updated is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True, 0.0
        return False, (cost - self.tokens) / self.rate


class KeyedBuckets:
    """One bucket per key (an API key, a user), made on first use; at most ``max_keys`` are kept."""

    def __init__(self, rate: float, capacity: float, max_keys: int = 10_000):
        self.rate, self.capacity, self.max_keys = rate, capacity, max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> tuple[bool, float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.pop(next(iter(self._buckets)))     # forget the oldest key
            bucket = self._buckets[key] = TokenBucket(self.rate, self.capacity)
        return bucket.take(now)
