"""ConnectionManager: a dead or slow connection never breaks a broadcast; the tutorial's version does."""

import asyncio

import pytest
import websockets

from labkit.server.connections import ConnectionManager
from labkit.tutorial import TutorialConnectionManager
from waiting import until


class FakeSocket:
    def __init__(self, fail: bool = False, delay: float = 0.0):
        self.fail, self.delay, self.received = fail, delay, []

    async def accept(self):
        pass

    async def send_text(self, text: str) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("Cannot call 'send' once a close message has been sent.")
        self.received.append(text)


async def test_tutorial_broadcast_stops_at_the_first_dead_connection():
    manager = TutorialConnectionManager()
    alive_before, dead, alive_after = FakeSocket(), FakeSocket(fail=True), FakeSocket()
    for ws in (alive_before, dead, alive_after):
        await manager.connect(ws)
    with pytest.raises(RuntimeError):
        await manager.broadcast("hello")
    assert alive_before.received == ["hello"] and alive_after.received == []   # never delivered
    manager.disconnect(dead)
    with pytest.raises(ValueError):
        manager.disconnect(dead)                   # the error path and the normal path both remove


async def test_broadcast_survives_dead_connections_and_drops_them():
    manager = ConnectionManager()
    alive_before, dead, alive_after = FakeSocket(), FakeSocket(fail=True), FakeSocket()
    for ws in (alive_before, dead, alive_after):
        manager.add(ws)
    assert await manager.broadcast({"type": "note"}) == 2
    assert alive_before.received == alive_after.received == ['{"type": "note"}']
    assert dead not in manager and len(manager) == 2
    manager.disconnect(dead)                       # idempotent
    manager.disconnect(FakeSocket())


async def test_a_slow_client_is_dropped_after_the_timeout_without_delaying_others():
    manager = ConnectionManager(send_timeout_s=0.1)
    fast, stuck = FakeSocket(), FakeSocket(delay=10)
    manager.add(fast)
    manager.add(stuck)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await manager.broadcast("x") == 1
    # the stuck client would hold the broadcast for 10 s; the 0.1 s timeout ends it well before that
    assert loop.time() - t0 < 5.0 and fast.received == ["x"] and stuck not in manager


async def test_sends_on_one_socket_never_interleave():
    class Recorder(FakeSocket):
        active = 0

        async def send_text(self, text):
            Recorder.active += 1
            assert Recorder.active == 1, "two sends overlapped"
            await asyncio.sleep(0.001)
            Recorder.active -= 1
            self.received.append(text)

    manager, ws = ConnectionManager(), Recorder()
    manager.add(ws)
    await asyncio.gather(*(manager.send(ws, str(i)) for i in range(20)))
    assert sorted(ws.received, key=int) == [str(i) for i in range(20)]


async def test_the_server_tracks_real_connections(server):
    sockets = [await websockets.connect(server.ws_url + "/ws/chat") for _ in range(3)]
    # the server counts a socket just after its handshake went out
    await until(lambda: server.stats["ws_connections"] == 3, what="three counted sockets")
    for ws in sockets:
        await ws.close()
    await until(lambda: server.stats["ws_connections"] == 0, what="every socket uncounted")
    assert len(server.app.state.connections) == 0
