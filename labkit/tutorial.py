"""The source tutorial's code, kept as written, so the lab can show each bug next to its fix.

Nothing here is used by labkit itself. Each piece names its fault and the labkit piece that fixes it;
the notebooks and tests run both side by side.
"""

from __future__ import annotations

from typing import List

__all__ = ["TutorialConnectionManager", "tutorial_tokens_per_second"]


class TutorialConnectionManager:
    """The tutorial's ``ConnectionManager``.

    Faults: ``broadcast`` stops at the first dead connection (the rest never get the message) and
    waits for each client in turn; ``disconnect`` raises ``ValueError`` when called twice.
    Fixed in :class:`labkit.server.connections.ConnectionManager`.
    """

    def __init__(self):
        self.active_connections: List = []

    async def connect(self, websocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket):
        self.active_connections.remove(websocket)

    async def send_message(self, message: str, websocket):
        await websocket.send_text(message)

    async def broadcast(self, message: str):
        for connection in self.active_connections:
            await connection.send_text(message)


def tutorial_tokens_per_second(chunks: list[str], start: float, end: float) -> float:
    """The tutorial's throughput: chunks counted as tokens, divided by the *total* time.

    The total includes the time to first token, so this is not the decode rate; chapter 06 shows
    how far off it is. Fixed in ``labkit.latency``.
    """
    return len(chunks) / (end - start)
