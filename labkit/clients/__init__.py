"""Clients that yield tokens with arrival times, one per transport, so later chapters can measure them."""

from .app import ChatError, WSChat, http_chat, sse_chat, ws_chat
from .raw import raw_tcp_chat
from .sdk import sdk_chat
from .timing import TimedStream, TimedToken, collect

__all__ = ["ChatError", "WSChat", "http_chat", "sse_chat", "ws_chat", "sdk_chat", "raw_tcp_chat", "TimedStream", "TimedToken",
           "collect"]
