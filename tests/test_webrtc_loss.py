"""The loss experiment at a small size: one answer per transport, unimpaired and at 10 % packet loss.

What is asserted is what the two transports do to packets, whatever the machine's load: TCP never
loses audio (a lost segment is retransmitted, and everything behind it waits); UDP does (the relay's
drops are gaps in the RTP sequence, each a 20 ms packet). Timings (stalls, late audio) are printed,
not asserted: the full-size figures are the benchmark's (``python -m labkit bench realtime --transport``).
"""

from __future__ import annotations

import asyncio

import pytest

from labkit.bench.realtime_loss import loss_series
from labkit.server.process import ServerProcess


@pytest.mark.timeout(150)
def test_under_loss_tcp_loses_no_audio_and_udp_loses_packets():
    with ServerProcess(["serve", "--port", "0"]) as proc:           # real-time pace, its own process
        port = int(proc.url.rsplit(":", 1)[1])
        rows = asyncio.run(loss_series(proc.url, port, ("websocket", "webrtc"), (0.0, 0.10), tokens=8, log=print))
    by = {(r["transport"], r["loss"]): r for r in rows}
    for r in rows:
        assert r["audio_ms"] >= 1000                                # an answer of a second or more was measured
    ws0, ws10, rtc0, rtc10 = (by[k] for k in [("websocket", 0.0), ("websocket", 0.10), ("webrtc", 0.0), ("webrtc", 0.10)])
    assert ws0["lost_ms"] == ws10["lost_ms"] == 0                   # TCP loses nothing ...
    assert rtc0["lost_ms"] == 0 and rtc0["relay_lost"] == {"up": 0, "down": 0}
    assert rtc10["relay_lost"]["down"] > 0 and rtc10["lost_ms"] > 0  # ... UDP does, packet by packet
    assert rtc10["lost_ms"] / 20 <= rtc10["relay_lost"]["down"]     # every missing packet was dropped by the relay
    assert rtc10["relay_delivered"]["down"] > 50                    # the call really went through the relay
