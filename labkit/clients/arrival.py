"""When bytes reached the client's socket, as the kernel saw it, beside when the application read them.

A client's own arrival time (``time.time()`` after a read) includes however long its process waited
for a core: with a hundred streams in one asyncio process on two shared cores, that wait is larger
and noisier than what a transport adds. Linux can stamp each received packet when it enters the
network stack (``setsockopt(SOL_SOCKET, SO_TIMESTAMPNS, 1)``); ``recvmsg`` then returns the stamp as
an ``SCM_TIMESTAMPNS`` control message (a ``struct timespec`` on ``CLOCK_REALTIME``, the clock of
``time.time()``). For TCP the stamp is the one of the last packet that read consumed, so every
message of one read shares it: never earlier than the bytes really arrived.

:class:`StampedSocket` reads a non-blocking socket with ``recvmsg`` on the running event loop
(``loop.add_reader``) and returns a :class:`Read` per read: the bytes, the kernel's stamp (``None`` where the option or the
control message is missing: other systems, Unix sockets) and the application's own arrival time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import sys
import time
from collections import deque
from typing import NamedTuple

__all__ = ["Read", "StampedSocket", "enable_kernel_stamps", "keep_kernel_stamps", "kernel_stamp", "open_stamped"]

#: Linux's ``SO_TIMESTAMPNS`` (asm-generic; Python's ``socket`` module does not name it). The
#: control message it produces has the same number (``SCM_TIMESTAMPNS``).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")            # struct timespec on a 64-bit kernel: tv_sec, tv_nsec
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
READ_SIZE = 65536                            # bytes per recvmsg


class Read(NamedTuple):
    data: bytes
    kernel_wall: float | None      # time.time() clock: when the kernel received the read's last packet
    app_wall: float                # time.time() just after the read returned to the application


def enable_kernel_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; ``False`` where it cannot (not Linux, or refused)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def keep_kernel_stamps(timeout_s: float = 5.0) -> socket.socket | None:
    """Turn the kernel's receive stamping on and keep it on; returns the socket that holds it (close
    it when done), or ``None`` where no stamp comes within ``timeout_s``.

    Linux stamps packets only while some socket has asked for it, and it turns that on lazily (in a
    work queue, after the first ``setsockopt``): a connection opened when no other socket holds the
    option may read its first packets unstamped. One loopback UDP socket with the option, held open
    for the whole measurement and probed until its own datagram comes back stamped, closes that gap."""
    if not sys.platform.startswith("linux"):
        return None
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        holder.bind(("127.0.0.1", 0))
        if not enable_kernel_stamps(holder):
            holder.close()
            return None
        holder.settimeout(0.05)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:          # a condition with a deadline: stamps come within ms
            sender.sendto(b"probe", holder.getsockname())
            try:
                _data, ancillary, _flags, _addr = holder.recvmsg(16, _ANCILLARY)
            except TimeoutError:
                continue
            if kernel_stamp(ancillary) is not None:
                holder.setblocking(False)
                return holder
        holder.close()
        return None
    finally:
        sender.close()


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive stamp in ``recvmsg``'s control messages, as ``time.time()`` seconds, or ``None``."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds * 1e-9
    return None


class StampedSocket:
    """A connected non-blocking socket read with ``recvmsg`` on the event loop (``await read()``).

    It watches the socket from the start, like an asyncio protocol: when the loop sees it readable,
    one ``recvmsg`` takes what is there (no wasted read, no re-registering per read), and ``read()``
    hands the reads out in order. ``stamps``: whether the kernel was asked to stamp (``None``: ask
    now; ``False`` leaves ``kernel_wall`` ``None``)."""

    def __init__(self, sock: socket.socket, stamps: bool | None = None):
        sock.setblocking(False)
        self.sock = sock
        self.stamps = enable_kernel_stamps(sock) if stamps is None else stamps
        self._ancillary = _ANCILLARY if self.stamps else 0
        self._loop = asyncio.get_running_loop()
        self._reads: deque[Read | BaseException] = deque()
        self._waiter: asyncio.Future | None = None
        self._watching = True
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(READ_SIZE, self._ancillary)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:                               # a reset: handed to the reader, then the end
            self._reads.append(e)
            data = b""
        else:
            self._reads.append(Read(data, kernel_stamp(ancillary) if self.stamps else None, time.time()))
        if not data:
            self._unwatch()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self.sock.fileno())

    async def read(self) -> Read:
        """The next bytes (``b""`` at the end of the stream) with their kernel and application times."""
        while not self._reads:
            if not self._watching:
                return Read(b"", None, time.time())
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        read = self._reads.popleft()
        if isinstance(read, BaseException):
            raise read
        return read

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._unwatch()
            self.sock.close()

    async def __aenter__(self) -> StampedSocket:
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


async def open_stamped(host: str, port: int) -> StampedSocket:
    """A TCP connection to ``host:port`` whose reads carry the kernel's receive stamps (where it can)."""
    loop = asyncio.get_running_loop()
    try:                                   # an address needs no lookup (getaddrinfo runs in a thread)
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: tuple = (host, port)
    except ValueError:
        family, _, _, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
        return StampedSocket(sock)
    except BaseException:
        sock.close()
        raise
