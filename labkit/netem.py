"""A network emulator: a TCP proxy that adds delay, jitter, a bandwidth limit, loss and dropped connections.

Put it between a client and a server (``NetemProxy(target_port, PROFILES["4g"])``, then connect to
``proxy.port``) to see how a transport behaves on Wi-Fi, 4G or a bad train connection, on one laptop.

Two parts, as everywhere in the lab. :class:`Link` is pure: given when a chunk of bytes entered one
direction of the link and how big it is, it says when it comes out, keeping TCP's order (a chunk
never overtakes the one before it). The delay is ``delay_ms`` plus jitter, the serialisation time at
``bandwidth_kbps``, and, with probability ``loss``, one retransmission timeout (TCP hides a lost
packet but not the time it costs). :class:`NetemProxy` is the asyncio adapter that sleeps until each
chunk is due, and cuts connections: randomly (``drop_per_s``), on demand (:meth:`NetemProxy.drop_all`), or
at an exact place in what the server sends (:meth:`NetemProxy.cut_before`: "after the third token"
means the same on a busy machine, where a client may already hold the whole reply when it reacts).
Where that place is, in a stream read in pieces of any size, is :class:`MarkerCut`'s job, pure too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

__all__ = ["NetworkProfile", "PROFILES", "Link", "MarkerCut", "NetemProxy", "DatagramLink", "UdpRelay"]


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    delay_ms: float = 0.0            # one way
    jitter_ms: float = 0.0           # standard deviation of the extra delay
    bandwidth_kbps: float | None = None
    loss: float = 0.0                # chance that a chunk needs a retransmission
    rto_ms: float = 200.0            # what a retransmission costs
    drop_per_s: float = 0.0          # chance per second that a connection is cut


PROFILES = {p.name: p for p in (
    NetworkProfile("lan", delay_ms=0.2),
    NetworkProfile("wifi", delay_ms=4, jitter_ms=3, bandwidth_kbps=50_000, loss=0.002),
    NetworkProfile("4g", delay_ms=35, jitter_ms=12, bandwidth_kbps=10_000, loss=0.005),
    NetworkProfile("3g", delay_ms=120, jitter_ms=40, bandwidth_kbps=1_000, loss=0.01),
    NetworkProfile("lossy", delay_ms=30, jitter_ms=20, bandwidth_kbps=5_000, loss=0.05, drop_per_s=0.05),
)}


class Link:
    """One direction of a link: ``release(now_s, nbytes) -> when the chunk arrives`` (pure, seeded)."""

    def __init__(self, profile: NetworkProfile, seed: int | None = None):
        self.profile = profile
        self.rng = random.Random(seed)
        self._last_release = 0.0        # order: nothing arrives before what was sent earlier
        self._wire_free = 0.0           # bandwidth: when the "wire" has finished the previous chunk

    def open(self, now_s: float) -> None:
        """A new connection: SYN and SYN-ACK take a round trip before the first byte can leave, and then
        it travels too, so it arrives no sooner than three one-way delays after connecting."""
        self._last_release = max(self._last_release, now_s + 3 * self.profile.delay_ms / 1000)

    def release(self, now_s: float, nbytes: int) -> float:
        p = self.profile
        start = max(now_s, self._wire_free)
        serialise = 0.0 if not p.bandwidth_kbps else nbytes * 8 / (p.bandwidth_kbps * 1000)
        self._wire_free = start + serialise
        delay = p.delay_ms / 1000
        if p.jitter_ms:
            delay += abs(self.rng.gauss(0.0, p.jitter_ms / 1000))      # jitter only ever adds
        if p.loss and self.rng.random() < p.loss:
            delay += p.rto_ms / 1000
        arrival = max(self._wire_free + delay, self._last_release)
        self._last_release = arrival
        return arrival


class MarkerCut:
    """Splits a byte stream, read in pieces, just before the ``nth`` occurrence of ``marker`` (pure).

    :meth:`feed` takes each piece as it is read and returns what may pass now, and whether the
    occurrence has been reached (then nothing of it or after it has passed). A piece that ends with
    the start of a marker (``b"<to"`` of ``b"<tok"``) is held back until the next piece says whether
    the marker completes; :meth:`release` hands over what is held (at the end of the stream, or when
    the cut is called off). So the cut is exact however the stream is split."""

    def __init__(self, marker: bytes, nth: int):
        self.check(marker, nth)
        self.marker, self.nth = marker, nth
        self.seen = 0                        # occurrences so far
        self.found = False
        self._held = b""                     # a possible marker's head, or once found, the occurrence and after

    @staticmethod
    def check(marker: bytes, nth: int) -> None:
        """Refuse a cut that could never be found: an empty marker, or no occurrence counted from 1."""
        if not marker or nth < 1:
            raise ValueError("a cut needs a non-empty marker and nth >= 1")

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What of ``data`` (and of what was held) may pass now; ``True`` once the occurrence is reached."""
        if self.found:
            self._held += data
            return b"", True
        window, at = self._held + data, -1
        while self.seen < self.nth and (at := window.find(self.marker, at + 1)) >= 0:
            self.seen += 1
        if self.seen >= self.nth:
            self.found, self._held = True, window[at:]
            return window[:at], True
        keep = next((k for k in range(min(len(self.marker) - 1, len(window)), 0, -1)
                     if self.marker.startswith(window[-k:])), 0)
        self._held = window[len(window) - keep:]
        return window[:len(window) - keep], False

    def release(self) -> bytes:
        """What is held back, handed over (the stream ended, or the cut is not made after all)."""
        held, self._held = self._held, b""
        return held


class NetemProxy:
    """``async with NetemProxy(target_port, profile) as proxy:`` clients connect to ``proxy.port``."""

    def __init__(self, target_port: int, profile: NetworkProfile = PROFILES["lan"], *, target_host: str = "127.0.0.1",
                 host: str = "127.0.0.1", port: int = 0, seed: int | None = 0, chunk: int = 16_384):
        self.target_host, self.target_port, self.profile = target_host, target_port, profile
        self.host, self.port, self.seed, self.chunk = host, port, seed, chunk
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.drops = 0
        self._rng = random.Random(seed)
        self._cut: tuple[bytes, int] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_profile(self, profile: NetworkProfile | str) -> None:
        """Change conditions for new chunks on every connection (existing ones pick it up at once)."""
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile

    async def __aenter__(self) -> "NetemProxy":
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting, cut every connection, and let each handler finish on its own (cancelling
        them from outside makes asyncio's stream callbacks log spurious errors)."""
        if self._server is not None:
            self._server.close()
        self.drop_all(count=False)
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def drop_all(self, count: bool = True) -> int:
        """Cut every open connection now, without a goodbye (as a lost network does)."""
        writers = list(self._writers)
        for w in writers:
            with contextlib.suppress(Exception):
                w.transport.abort()
        connections = len(writers) // 2         # each connection has two ends: client side, server side
        if count:
            self.drops += connections
        return connections

    def cut_before(self, marker: bytes, nth: int) -> None:
        """Cut the next connection whose server sends ``marker`` an ``nth`` time (counting from 1): its
        client gets every byte before that occurrence, then both ends are cut without a goodbye. One cut
        (counted in :attr:`drops`); connections opened afterwards pass untouched. ``marker`` is a plain
        byte string the server writes, e.g. ``b"event: token"`` for one SSE token event."""
        MarkerCut.check(marker, nth)              # now, not on the next connection
        self._cut = (marker, nth)

    def _take_cut(self) -> tuple[bytes, int] | None:
        cut, self._cut = self._cut, None
        return cut

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            self._connections.discard(task)
            return
        pair = (client_writer, server_writer)
        self._writers.update(pair)
        seed = self._rng.randrange(2**31) if self.seed is not None else None
        uplink = Link(self.profile, seed)
        uplink.open(asyncio.get_running_loop().time())
        up = asyncio.ensure_future(self._pump(client_reader, server_writer, uplink))
        downlink = Link(self.profile, None if seed is None else seed + 1)
        down = asyncio.ensure_future(self._pump(server_reader, client_writer, downlink, cut_pair=pair))
        dropper = asyncio.ensure_future(self._random_drops(pair))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down, dropper):
                t.cancel()
            await asyncio.gather(up, down, dropper, return_exceptions=True)
            for w in pair:
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()
            self._connections.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link,
                    cut_pair: tuple | None = None) -> None:
        """Copy one direction through ``link``. ``cut_pair`` (server to client only): the connection's two
        writers, aborted when an armed :meth:`cut_before` is reached in this direction."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        CUT = object()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    with contextlib.suppress(Exception):
                        writer.write_eof()
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                if data is CUT:
                    with contextlib.suppress(Exception):      # what came before the cut reaches the client first
                        writer.transport.set_write_buffer_limits(high=0)
                        await writer.drain()
                    for w in cut_pair:
                        with contextlib.suppress(Exception):
                            w.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        armed, cut = None, None                    # the cut armed on the proxy, and this connection's search for it
        try:
            while data := await reader.read(self.chunk):
                link.profile = self.profile                       # live profile changes
                if cut_pair is not None and self._cut is not armed:   # armed, re-armed or taken since: start afresh
                    data = (cut.release() if cut else b"") + data
                    armed = self._cut
                    cut = MarkerCut(*armed) if armed else None
                if cut is not None:
                    data, reached = cut.feed(data)
                    if reached and self._take_cut() is not None:
                        if data:
                            queue.put_nowait((link.release(loop.time(), len(data)), data))
                        queue.put_nowait((link.release(loop.time(), 0), CUT))
                        self.drops += 1
                        break
                    if reached:                               # another connection took the cut first
                        data, armed, cut = data + cut.release(), None, None
                if data:
                    queue.put_nowait((link.release(loop.time(), len(data)), data))
            else:
                if cut is not None and (held := cut.release()):
                    queue.put_nowait((link.release(loop.time(), len(held)), held))
                queue.put_nowait((loop.time(), None))
            await sender
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def _random_drops(self, pair) -> None:
        while True:
            await asyncio.sleep(0.1)
            p = self.profile.drop_per_s * 0.1
            if p and self._rng.random() < p:
                for w in pair:
                    with contextlib.suppress(Exception):
                        w.transport.abort()
                self.drops += 1
                return



class DatagramLink:
    """One direction of a UDP path: ``release(now_s, nbytes) -> arrival time, or None if lost`` (pure, seeded).

    No retransmission and no order: each datagram gets ``delay_ms`` plus its own jitter and the
    serialisation time, and is lost with probability ``loss`` (``rto_ms`` and ``drop_per_s`` do not apply)."""

    def __init__(self, profile: NetworkProfile, seed: int | None = None):
        self.profile = profile
        self.rng = random.Random(seed)
        self._wire_free = 0.0

    def release(self, now_s: float, nbytes: int) -> float | None:
        p = self.profile
        if p.loss and self.rng.random() < p.loss:
            return None
        start = max(now_s, self._wire_free)
        self._wire_free = start + (0.0 if not p.bandwidth_kbps else nbytes * 8 / (p.bandwidth_kbps * 1000))
        delay = p.delay_ms / 1000
        if p.jitter_ms:
            delay += abs(self.rng.gauss(0.0, p.jitter_ms / 1000))
        return self._wire_free + delay


class _RelaySide(asyncio.DatagramProtocol):
    def __init__(self, on_datagram):
        self.on_datagram = on_datagram
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.on_datagram(data, addr)


class UdpRelay:
    """``async with UdpRelay((host, port), profile) as relay:`` send to ``relay.address`` instead of
    ``(host, port)``; replies come back from the relay. Each direction is a :class:`DatagramLink`.

    One upstream socket per client address, so the target sees the relay as one peer per client (for
    ICE: a peer-reflexive candidate). ``tap(direction, data, delivered_at)`` is called for every
    datagram delivered ("down": to the client, "up": to the target); ``lost`` counts the dropped ones."""

    def __init__(self, target: tuple[str, int], profile: NetworkProfile = PROFILES["lan"], *, host: str = "127.0.0.1",
                 port: int = 0, seed: int | None = 0, tap=None):
        self.target, self.profile, self.host, self.port, self.seed, self.tap = target, profile, host, port, seed, tap
        self.lost = {"up": 0, "down": 0}
        self.delivered = {"up": 0, "down": 0}
        self._front = None
        self._upstreams: dict = {}
        self._links: dict = {}
        self._rng = random.Random(seed)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def set_profile(self, profile: NetworkProfile | str) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        for link in self._links.values():
            link.profile = self.profile

    async def __aenter__(self) -> "UdpRelay":
        loop = asyncio.get_running_loop()
        transport, self._front = await loop.create_datagram_endpoint(lambda: _RelaySide(self._from_client),
                                                                     local_addr=(self.host, self.port))
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for side in [self._front, *self._upstreams.values()]:
            if side is not None and side.transport is not None:
                side.transport.close()
        self._upstreams.clear()

    def _link(self, key) -> DatagramLink:
        if key not in self._links:
            self._links[key] = DatagramLink(self.profile, None if self.seed is None else self._rng.randrange(2**31))
        return self._links[key]

    def _forward(self, direction: str, link: DatagramLink, transport, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        due = link.release(loop.time(), len(data))
        if due is None:
            self.lost[direction] += 1
            return

        def deliver():
            if transport.is_closing():
                return
            transport.sendto(data, addr)
            self.delivered[direction] += 1
            if self.tap is not None:
                self.tap(direction, data, loop.time())
        loop.call_at(due, deliver)

    def _from_client(self, data: bytes, client) -> None:
        up = self._upstreams.get(client)
        if up is None:
            up = _RelaySide(lambda d, _addr, client=client: self._forward(
                "down", self._link((client, "down")), self._front.transport, d, client))
            up.pending = []
            self._upstreams[client] = up
            asyncio.ensure_future(self._open_upstream(up, client))
        if up.transport is None:                      # its socket is still opening: keep the order
            up.pending.append(data)
            return
        self._forward("up", self._link((client, "up")), up.transport, data, self.target)

    async def _open_upstream(self, up: _RelaySide, client) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: up, local_addr=(self.host, 0))
        for data in up.pending:
            self._forward("up", self._link((client, "up")), up.transport, data, self.target)
        up.pending.clear()
