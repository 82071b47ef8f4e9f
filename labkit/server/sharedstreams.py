"""Resumable replies across server processes (``labkit serve --workers N``), kept in Redis.

With several workers, the reconnect of a dropped stream lands on whichever worker the kernel hands
the connection to, usually not the one generating the reply. So the generating worker mirrors
every reply into Redis, and any other worker can follow it from there:

* ``lab:stream:{id}:meta`` (a hash): who asked and what (the user, the conversation), written when the
  reply starts;
* ``lab:stream:{id}`` (a Redis Stream): the tokens, in order, with their seq and the generating
  worker's wall-clock time, then one ``end`` entry (done with its finish reason, or failed with its
  error code). Tokens that are waiting when the writer gets to them go out in one entry (a batch),
  so a fast model costs one ``XADD`` per write, not per token;
* ``lab:stream:{id}:readers``: set (with a short expiry) by a worker that has readers following the
  reply, so the generating worker does not cancel it as abandoned while someone reads it elsewhere.

Every key expires ``keep_s`` after the reply ends, as the in-memory registry forgets it. What is
not shared: a ``cancel`` (``DELETE``, a WebSocket ``cancel``) sent to a worker that is only
following cancels that worker's copy; the generation stops when nobody reads it anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

__all__ = ["SharedStreams"]

log = logging.getLogger("labkit.server.sharedstreams")

PREFIX = "lab:stream:"


class SharedStreams:
    """The Redis side of resumable replies; every write is queued and sent by one writer task."""

    def __init__(self, url: str, keep_s: float, reader_ttl_s: float):
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.keep_s, self.reader_ttl_s = keep_s, reader_ttl_s
        self._pending: dict[str, list[tuple[str, object]]] = {}     # stream id -> queued writes, in order
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None

    # ---- the generating worker ----------------------------------------------------------------

    def started(self, stream_id: str, user: str, messages: list[dict]) -> None:
        self._queue(stream_id, "meta", {"user": user, "messages": json.dumps(messages)})

    def token(self, stream_id: str, seq: int, content: str, t: float) -> None:
        self._queue(stream_id, "token", [seq, content, t])

    def ended(self, stream_id: str, end: dict) -> None:
        self._queue(stream_id, "end", end)

    def _queue(self, stream_id: str, kind: str, value) -> None:
        self._pending.setdefault(stream_id, []).append((kind, value))
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="shared-streams-writer")

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, {}
            try:
                await self._write(pending)
            except Exception:           # Redis away: this batch is lost to other workers, never to this one's readers
                log.warning("could not mirror %d replies to Redis", len(pending), exc_info=True)

    async def _write(self, pending: dict[str, list[tuple[str, object]]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id, writes in pending.items():
                key, tokens = PREFIX + stream_id, []
                for kind, value in writes:
                    if kind == "token":
                        tokens.append(value)
                        continue
                    if tokens:                                   # the tokens waiting: one entry
                        pipe.xadd(key, {"tokens": json.dumps(tokens)})
                        tokens = []
                    if kind == "meta":
                        pipe.hset(key + ":meta", mapping=value)
                        pipe.expire(key + ":meta", int(self.keep_s + 3600))
                    elif kind == "end":
                        pipe.xadd(key, {"end": json.dumps(value)})
                        for k in (key, key + ":meta"):
                            pipe.expire(k, max(1, int(self.keep_s)))
                if tokens:
                    pipe.xadd(key, {"tokens": json.dumps(tokens)})
                    pipe.expire(key, int(self.keep_s + 3600))
            await pipe.execute()

    async def reading(self, stream_id: str) -> None:
        """Say that this process has (or is about to have) readers of ``stream_id``."""
        await self.redis.set(PREFIX + stream_id + ":readers", "1", px=int(self.reader_ttl_s * 1000))

    async def has_remote_readers(self, stream_id: str) -> bool:
        try:
            return bool(await self.redis.exists(PREFIX + stream_id + ":readers"))
        except Exception:
            return False

    # ---- a worker that follows ------------------------------------------------------------------

    async def meta(self, stream_id: str) -> dict | None:
        """Who asked and what, for a reply some worker started; None if Redis does not know it."""
        try:
            meta = await self.redis.hgetall(PREFIX + stream_id + ":meta")
        except Exception:
            log.warning("Redis did not answer for stream %s", stream_id, exc_info=True)
            return None
        if not meta:
            return None
        return {"user": meta["user"], "messages": json.loads(meta["messages"])}

    async def follow(self, stream_id: str, reading) -> AsyncIterator[tuple[str, object]]:
        """Yield ``("tokens", [[seq, content, t], ...])`` batches then ``("end", {...})``, and
        ``("synced", None)`` whenever what Redis held has been read. While ``reading()`` is true, the
        readers key says so to the generating worker."""
        key, last = PREFIX + stream_id, "0-0"
        while True:
            if reading():
                await self.reading(stream_id)
            # refreshed at least four times per expiry, so a busy process does not let it lapse
            reply = await self.redis.xread({key: last}, count=1000, block=int(min(1.0, self.reader_ttl_s / 4) * 1000))
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    if "tokens" in fields:
                        yield "tokens", json.loads(fields["tokens"])
                    elif "end" in fields:
                        yield "end", json.loads(fields["end"])
                        return
            yield "synced", None

    async def aclose(self) -> None:
        if self._writer is not None:
            if self._pending:
                self._wake.set()
                await asyncio.sleep(0)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._pending:                                # what was still queued goes out before closing
            with contextlib.suppress(Exception):
                await self._write(self._pending)
        await self.redis.aclose()
