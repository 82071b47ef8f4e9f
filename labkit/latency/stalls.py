"""Stalls, late audio and lost audio of a real-time stream, from when each piece arrived (pure).

A player needs each piece at a fixed time: ``start + buffer_ms + its position in the stream``, where
``start`` is the earliest the network made possible: ``min(arrival - position)`` over the pieces (the
schedule of the luckiest piece; anchoring on the *first* piece instead would let a loss of that
one piece delay the whole schedule, and hide every later stall behind the slack it creates). A piece that is not there by then
is *late* (it arrived after its time) or *lost* (it never arrived). A *stall* is a maximal run of
consecutive audio that was not there in time; its length is the run's duration.

The same rule for both transports of the lab's loss experiment: over TCP (WebSocket) nothing is
lost, but one retransmission holds back everything behind it (head-of-line blocking), so a loss
becomes a long run of late audio followed by a burst; over UDP (WebRTC) a lost 20 ms packet is a
20 ms gap, which Opus' packet-loss concealment fills, and the packets behind it are on time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Piece", "stall_report", "timeline", "CONCEALABLE_MS"]

#: Gaps up to this long are what packet-loss concealment (Opus' PLC, a browser's NetEQ) fills without
#: an audible break; longer ones are counted apart as ``audible_stalls``.
CONCEALABLE_MS = 40.0


@dataclass(frozen=True)
class Piece:
    start_ms: float            # position in the stream
    duration_ms: float
    arrival_s: float | None    # None: never arrived


def _start(pieces: list[Piece]) -> float:
    base = pieces[0].start_ms
    return min(p.arrival_s - (p.start_ms - base) / 1000 for p in pieces if p.arrival_s is not None)


def timeline(pieces: list[Piece], buffer_ms: float = 100.0) -> list[tuple[float, float, str]]:
    """(start ms, duration ms, "on time" | "late" | "lost") per piece, in stream order (for plots)."""
    pieces = sorted(pieces, key=lambda p: p.start_ms)
    if not any(p.arrival_s is not None for p in pieces):
        return [(p.start_ms, p.duration_ms, "lost") for p in pieces]
    t0, base = _start(pieces), pieces[0].start_ms
    out = []
    for p in pieces:
        due = t0 + (buffer_ms + p.start_ms - base) / 1000
        status = "lost" if p.arrival_s is None else "late" if p.arrival_s > due else "on time"
        out.append((round(p.start_ms - base, 1), p.duration_ms, status))
    return out


def stall_report(pieces: list[Piece], buffer_ms: float = 100.0) -> dict:
    """Counts and lengths (ms) for ``pieces`` (any order) played from a ``buffer_ms`` jitter buffer."""
    pieces = sorted(pieces, key=lambda p: p.start_ms)
    arrived = [p.arrival_s for p in pieces if p.arrival_s is not None]
    total = sum(p.duration_ms for p in pieces)
    if not arrived:
        return {"audio_ms": total, "stalls": 0, "audible_stalls": 0, "stall_ms": [], "late_ms": 0.0, "lost_ms": total,
                "on_time_fraction": 0.0, "buffer_ms": buffer_ms}
    base = pieces[0].start_ms
    t0 = min(p.arrival_s - (p.start_ms - base) / 1000 for p in pieces if p.arrival_s is not None)
    stalls, run, late, lost = [], 0.0, 0.0, 0.0
    lateness = []
    for p in pieces:
        due = t0 + (buffer_ms + p.start_ms - base) / 1000
        if p.arrival_s is None:
            lost += p.duration_ms
            run += p.duration_ms
        elif p.arrival_s > due:
            late += p.duration_ms
            run += p.duration_ms
            lateness.append(1000 * (p.arrival_s - due))
        else:
            if run:
                stalls.append(run)
            run = 0.0
    if run:
        stalls.append(run)
    return {"audio_ms": round(total, 1), "stalls": len(stalls),
            "audible_stalls": sum(s > CONCEALABLE_MS for s in stalls), "stall_ms": [round(s, 1) for s in stalls],
            "longest_stall_ms": round(max(stalls), 1) if stalls else 0.0,
            "late_ms": round(late, 1), "lost_ms": round(lost, 1),
            "worst_lateness_ms": round(max(lateness), 1) if lateness else 0.0,
            "on_time_fraction": round(1 - (late + lost) / total, 4) if total else 1.0,
            "mean_stall_ms": round(float(np.mean(stalls)), 1) if stalls else 0.0, "buffer_ms": buffer_ms}
