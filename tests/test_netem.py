"""The network emulator: the pure link model exactly, and the proxy over real sockets."""

import asyncio
import time

import pytest

from labkit.clients import collect, sse_chat
from labkit.netem import PROFILES, Link, MarkerCut, NetemProxy, NetworkProfile


def test_link_delay_bandwidth_order_and_loss():
    assert Link(NetworkProfile("d", delay_ms=50)).release(10.0, 100) == pytest.approx(10.05)
    slow = Link(NetworkProfile("bw", bandwidth_kbps=1000))          # 1 Mbit/s: 125 kB takes 1 s
    assert slow.release(0.0, 125_000) == pytest.approx(1.0)
    assert slow.release(0.0, 125_000) == pytest.approx(2.0)          # queued behind the first
    jittery = Link(NetworkProfile("j", delay_ms=20, jitter_ms=30), seed=1)
    times = [jittery.release(k * 0.001, 10) for k in range(200)]
    assert times == sorted(times)                                     # never reordered
    assert min(t - k * 0.001 for k, t in enumerate(times)) >= 0.02 - 1e-9
    opened = Link(NetworkProfile("h", delay_ms=50))
    opened.open(0.0)
    assert opened.release(0.0, 10) == pytest.approx(0.15)           # SYN, SYN-ACK, then the byte itself
    lossy = Link(NetworkProfile("l", delay_ms=10, loss=1.0, rto_ms=200))
    assert lossy.release(0.0, 10) == pytest.approx(0.21)
    assert Link(PROFILES["3g"], seed=5).release(0, 10) == Link(PROFILES["3g"], seed=5).release(0, 10)


async def echo_server():
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_cut_before_the_nth_marker_is_exact_even_when_everything_arrived_at_once():
    whole = b"".join(b"<tok %d>" % i for i in range(50))

    async def send_all(reader, writer):          # the whole reply in one write, as a busy server sends it
        writer.write(whole)
        await writer.drain()
        await reader.read()                       # until the client (or the cut) closes
        writer.close()

    server = await asyncio.start_server(send_all, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with NetemProxy(port, chunk=7) as proxy:            # small reads: markers straddle them
        proxy.cut_before(b"<tok", 20)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        got = b""
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            while True:
                got += await asyncio.wait_for(reader.readexactly(1), 5)
        assert got == whole[:whole.index(b"<tok 19>")] and proxy.drops == 1     # tokens 0..18, nothing more
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)   # one cut: the next passes
        assert await asyncio.wait_for(reader.readexactly(len(whole)), 5) == whole
        writer.close()
    server.close()
    with pytest.raises(ValueError):
        NetemProxy(port).cut_before(b"", 1)


async def test_round_trip_gets_the_profile_delay():
    server = await echo_server()
    port = server.sockets[0].getsockname()[1]
    async with NetemProxy(port, NetworkProfile("test", delay_ms=40)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        rtts = []
        for _ in range(5):
            t0 = time.perf_counter()
            writer.write(b"ping")
            await writer.drain()
            assert await reader.readexactly(4) == b"ping"
            rtts.append(time.perf_counter() - t0)
        writer.close()
    server.close()
    # lower bounds only: the proxy sleeps until each chunk is due, so a busy machine can only add time
    assert rtts[0] >= 0.159                                           # handshake round trip + 2 x 40 ms
    assert min(rtts[1:]) >= 0.079                                     # then 2 x 40 ms


async def test_bandwidth_cap_holds():
    server = await echo_server()
    port = server.sockets[0].getsockname()[1]
    payload = b"x" * 100_000                                          # 800 kbit
    async with NetemProxy(port, NetworkProfile("narrow", bandwidth_kbps=2000)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        t0 = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        await reader.readexactly(len(payload))
        elapsed = time.perf_counter() - t0
        writer.close()
    server.close()
    assert elapsed >= 0.39                     # 0.4 s at 2 Mbit/s (the way back overlaps the way up)


async def test_drops_happen_on_demand_and_at_random():
    server = await echo_server()
    port = server.sockets[0].getsockname()[1]
    async with NetemProxy(port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        await reader.readexactly(1)
        assert proxy.drop_all() == 1                                  # the one connection (both of its ends)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            writer.write(b"b")
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(1), 2)
    async with NetemProxy(port, NetworkProfile("flaky", drop_per_s=20.0), seed=3) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            for _ in range(100):
                writer.write(b"c")
                await writer.drain()
                await asyncio.wait_for(reader.readexactly(1), 2)
                await asyncio.sleep(0.05)
        assert proxy.drops >= 1
    server.close()


async def test_sse_through_a_slow_network(server):
    direct = await collect(sse_chat(server.url, "hi", max_tokens=5, seed=1))
    async with NetemProxy(server.port, NetworkProfile("far", delay_ms=100)) as proxy:
        far = await collect(sse_chat(proxy.url, "hi", max_tokens=5, seed=1))
        proxy.set_profile("lan")
        near = await collect(sse_chat(proxy.url, "hi", max_tokens=5, seed=1))
    assert far.text == direct.text == near.text
    # TCP handshake, then the request up and the first token back: at least four one-way delays
    # (a lower bound: the proxy never delivers early; how much faster "lan" is, the latency lab measures)
    assert far.ttft_s >= 0.4 and proxy.profile.name == "lan"


def _split(pieces: list[bytes], marker: bytes, nth: int) -> tuple[bytes, bool]:
    """What MarkerCut lets through of ``pieces`` (all of it, held bytes released, if it never cuts)."""
    cut, passed = MarkerCut(marker, nth), b""
    for piece in pieces:
        data, reached = cut.feed(piece)
        passed += data
        if reached:
            return passed, True
    return passed + cut.release(), False


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 1000])
def test_marker_cut_passes_exactly_what_comes_before_the_nth_occurrence_however_the_stream_is_split(size):
    whole = b"".join(b"<tok %d>" % i for i in range(30)) + b"<to"       # ends with a marker's head
    pieces = [whole[i:i + size] for i in range(0, len(whole), size)]
    for nth in (1, 2, 17, 30):
        assert _split(pieces, b"<tok", nth) == (whole[:whole.index(b"<tok %d>" % (nth - 1))], True)
    assert _split(pieces, b"<tok", 31) == (whole, False)                # never reached: everything passes


def test_marker_cut_counts_several_occurrences_in_one_piece_and_holds_only_a_possible_marker():
    cut = MarkerCut(b"ab", 3)
    assert cut.feed(b"xxabab") == (b"xxabab", False) and cut.seen == 2
    assert cut.feed(b"ya") == (b"y", False)            # "a" may begin the third "ab": held
    assert cut.feed(b"b!") == (b"", True) and cut.found
    assert cut.feed(b"more") == (b"", True)
    assert cut.release() == b"ab!more"                  # the cut called off: nothing was lost


def test_marker_cut_refuses_an_empty_marker_or_a_zeroth_occurrence():
    for marker, nth in ((b"", 1), (b"x", 0)):
        with pytest.raises(ValueError):
            MarkerCut(marker, nth)
