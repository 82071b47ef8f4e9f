"""Who is in the class and how their replies feel: per-user counters for the instructor's dashboard.

Bounded like everything a server keeps per user: at most ``max_users`` users (the oldest forgotten
first) and the last ``keep`` TTFTs each, so a long class cannot grow it without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["Participants"]


@dataclass
class _Participant:
    user: str
    connections: int = 0
    requests: int = 0
    room_messages: int = 0
    tokens: int = 0
    ttfts_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    last_seen: float = field(default_factory=time.time)


class Participants:
    def __init__(self, max_users: int = 1_000, keep: int = 200):
        self.max_users, self.keep = max_users, keep
        self._users: OrderedDict[str, _Participant] = OrderedDict()
        self.recent_ttfts_ms: deque = deque(maxlen=2_000)      # everyone's, for the class histogram

    def _get(self, user: str) -> _Participant:
        p = self._users.get(user)
        if p is None:
            if len(self._users) >= self.max_users:
                self._users.popitem(last=False)
            p = self._users[user] = _Participant(user, ttfts_ms=deque(maxlen=self.keep))
        p.last_seen = time.time()
        self._users.move_to_end(user)
        return p

    def connected(self, user: str, delta: int) -> None:
        p = self._get(user)
        p.connections = max(0, p.connections + delta)

    def request(self, user: str) -> None:
        self._get(user).requests += 1

    def room_message(self, user: str) -> None:
        self._get(user).room_messages += 1

    def reply(self, user: str, ttft_s: float | None, tokens: int) -> None:
        p = self._get(user)
        p.tokens += tokens
        if ttft_s is not None:
            p.ttfts_ms.append(ttft_s * 1000)
            self.recent_ttfts_ms.append(ttft_s * 1000)

    def snapshot(self) -> dict:
        rows = []
        for p in self._users.values():
            ttfts = sorted(p.ttfts_ms)
            rows.append({"user": p.user, "connections": p.connections, "requests": p.requests,
                         "room_messages": p.room_messages, "tokens": p.tokens,
                         "ttft_ms_last": round(p.ttfts_ms[-1], 1) if p.ttfts_ms else None,
                         "ttft_ms_p50": round(ttfts[len(ttfts) // 2], 1) if ttfts else None,
                         "seen_s_ago": round(time.time() - p.last_seen, 1)})
        return {"participants": rows, "ttfts_ms": [round(t, 1) for t in self.recent_ttfts_ms]}
