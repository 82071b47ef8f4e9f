"""Pure parts of the WebRTC transport: playout bookkeeping, the stall rule, the UDP link model and relay."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from labkit.latency.stalls import Piece, stall_report, timeline
from labkit.netem import DatagramLink, NetworkProfile, UdpRelay
from labkit.realtime.playout import OutputPlayout


def test_playout_notices_follow_what_is_played():
    p = OutputPlayout(rate=1000, frame_ms=10)                 # 10 samples a frame
    out, notices = p.next_frame()
    assert not out.any() and notices == []                    # nothing to play: silence, no notice
    p.push("r1", "i1", np.arange(1, 26, dtype=np.int16))      # 2.5 frames of answer
    out, notices = p.next_frame()
    assert list(out) == list(range(1, 11)) and notices == [("started", "r1")]
    out, notices = p.next_frame()
    assert notices == [] and p.played_ms("r1") == 20
    out, notices = p.next_frame()                             # half a frame left, answer not finished: wait
    assert list(out[:5]) == [21, 22, 23, 24, 25] and not out[5:].any() and notices == []
    p.push("r1", "i1", np.full(5, 7, np.int16))
    p.finish("r1")
    out, notices = p.next_frame()
    assert list(out[:5]) == [7] * 5 and notices == [("stopped", "r1")]
    assert p.playing is None and p.next_frame()[1] == []


def test_playout_clear_cuts_at_the_played_position_and_drops_the_rest():
    p = OutputPlayout(rate=1000, frame_ms=10)
    assert p.clear() is None
    p.push("r1", "i1", np.ones(100, np.int16))
    p.push("r2", "i2", np.ones(50, np.int16))                 # a later answer, queued behind
    for _ in range(3):
        p.next_frame()
    cut = p.clear()
    assert (cut.response_id, cut.item_id, cut.played_ms) == ("r1", "i1", 30)
    out, notices = p.next_frame()
    assert not out.any() and notices == []                    # nothing left, not even r2


def test_stall_rule_counts_runs_of_audio_not_there_in_time():
    on_time = [Piece(20 * k, 20, 1.0 + 0.02 * k) for k in range(10)]
    assert stall_report(on_time)["stalls"] == 0 and stall_report(on_time)["on_time_fraction"] == 1.0
    # UDP: pieces 3 and 4 lost, 7 late by 150 ms: two stalls, 40 ms and 20 ms
    udp = [Piece(20 * k, 20, None if k in (3, 4) else 1.0 + 0.02 * k + (0.25 if k == 7 else 0)) for k in range(10)]
    r = stall_report(udp, buffer_ms=100)
    assert (r["stalls"], r["stall_ms"], r["lost_ms"], r["late_ms"]) == (2, [40.0, 20.0], 40.0, 20.0)
    # TCP: one retransmission holds back 300 ms then everything comes in a burst
    tcp = [Piece(100 * k, 100, 1.0 + 0.1 * k if k < 3 else max(1.0 + 0.1 * k, 1.55)) for k in range(10)]
    r = stall_report(tcp, buffer_ms=100)
    assert r["lost_ms"] == 0 and r["stall_ms"] == [200.0] and r["worst_lateness_ms"] == pytest.approx(150)
    # anchored on the best-placed piece: a late *first* piece does not shift the schedule
    first_late = [Piece(0, 100, 1.3)] + [Piece(100 * k, 100, 1.0 + 0.1 * k) for k in range(1, 10)]
    assert stall_report(first_late, buffer_ms=100)["stall_ms"] == [100.0]


def test_datagram_link_loses_without_retransmitting_and_is_seeded():
    profile = NetworkProfile("t", delay_ms=10, jitter_ms=2, loss=0.2)
    one, two = DatagramLink(profile, seed=3), DatagramLink(profile, seed=3)
    a = [one.release(0.01 * k, 100) for k in range(1000)]
    b = [two.release(0.01 * k, 100) for k in range(1000)]
    assert a == b
    lost = sum(x is None for x in a)
    assert 150 < lost < 250
    assert all(x >= 0.01 * k + 0.010 for k, x in enumerate(a) if x is not None)   # never before the delay
    assert max(x - 0.01 * k for k, x in enumerate(a) if x is not None) < 0.010 + 0.002 * 6


async def test_udp_relay_forwards_both_ways_and_drops_what_the_link_loses():
    loop = asyncio.get_running_loop()
    echoed = asyncio.Queue()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t):
            self.t = t

        def datagram_received(self, data, addr):
            self.t.sendto(data.upper(), addr)

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            echoed.put_nowait((data, addr))

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    taps = []
    async with UdpRelay(server.get_extra_info("sockname"), NetworkProfile("clean"),
                        tap=lambda d, data, at: taps.append((d, data))) as relay:
        client, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
        for k in range(3):
            client.sendto(b"ping%d" % k, relay.address)
        got = [await asyncio.wait_for(echoed.get(), 5) for _ in range(3)]
        assert sorted(d for d, _ in got) == [b"PING0", b"PING1", b"PING2"]
        assert all(addr == relay.address for _, addr in got)            # replies come from the relay
        assert relay.delivered == {"up": 3, "down": 3} and relay.lost == {"up": 0, "down": 0}
        relay.set_profile(NetworkProfile("cut", loss=1.0))
        client.sendto(b"gone", relay.address)
        async with asyncio.timeout(5):
            while relay.lost["up"] < 1:
                await asyncio.sleep(0.01)
        assert echoed.empty() and relay.delivered["up"] == 3
        assert ("up", b"ping0") in taps and ("down", b"PING0") in taps
        client.close()
    server.close()


def test_timeline_labels_each_piece_as_the_report_counts_it():
    pieces = [Piece(20 * k, 20, None if k == 2 else 1.0 + 0.02 * k + (0.3 if k == 5 else 0)) for k in range(8)]
    line = timeline(pieces, buffer_ms=100)
    assert [s for _, _, s in line] == ["on time", "on time", "lost", "on time", "on time", "late", "on time", "on time"]
    r = stall_report(pieces, buffer_ms=100)
    assert r["lost_ms"] == 20 and r["late_ms"] == 20 and r["audible_stalls"] == 0
