"""What a ``/ws/chat`` connection sends for each stream event, pure: the plain and the progressive style.

``/ws/chat`` and ``/ws/chat/progressive`` differ only in what they say about one reply: the
progressive one adds a typing indicator while the model is silent, a token ``index`` and progress
fractions. Which style a connection speaks is decided once, when it opens (:func:`chat_view`); the
server's WebSocket session then renders each :mod:`labkit.streams` event through it and carries out
the actions: :class:`Send` a message, :class:`StartTyping` / :class:`StopTyping` (the indicator
repeats on a timer, which is the adapter's).
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import app_chat as proto
from .streams import DONE, End, Heartbeat, Stage, StreamEvent, StreamStage, Token

__all__ = ["Send", "StartTyping", "StopTyping", "ChatAction", "PlainChatView", "ProgressiveChatView", "chat_view"]


@dataclass(frozen=True)
class Send:
    message: dict


@dataclass(frozen=True)
class StartTyping:
    """Start repeating ``typing: true`` until told to stop."""


@dataclass(frozen=True)
class StopTyping:
    """Stop the indicator and send ``typing: false``."""


ChatAction = Send | StartTyping | StopTyping


class PlainChatView:
    """Tokens, then ``complete`` (or ``error``): the tutorial's protocol, resumable."""

    progressive = False

    def __init__(self, stream_id: str, expected_tokens: float):
        self.stream_id, self.expected_tokens = stream_id, expected_tokens

    def render(self, event: StreamEvent) -> list[ChatAction]:
        if isinstance(event, Token):
            return [Send(proto.token(self.stream_id, event.seq, event.content, event.t))]
        if isinstance(event, End):
            return self._end(event)
        return []                                    # stages and heartbeats say nothing here

    def _end(self, event: End) -> list[ChatAction]:
        log = event.log
        if log.status == DONE:
            return [Send(proto.complete(log.id, log.text, len(log.tokens), log.finish_reason))]
        return [Send(proto.error(log.error_code or "error", log.error_message or "", log.id))]


class ProgressiveChatView(PlainChatView):
    """Plus typing while the model is silent (stopped on every path), ``index`` and progress every 8 tokens."""

    progressive = True
    PROGRESS_EVERY = 8

    def __init__(self, stream_id: str, expected_tokens: float):
        super().__init__(stream_id, expected_tokens)
        self.typing = False

    def _stop_typing(self) -> list[ChatAction]:
        if not self.typing:
            return []
        self.typing = False
        return [StopTyping()]

    def render(self, event: StreamEvent) -> list[ChatAction]:
        if isinstance(event, Stage):
            if event.stage in (StreamStage.QUEUED, StreamStage.WAITING):
                self.typing = True
                return [StartTyping(),
                        Send(proto.progress(event.stage, 0.0 if event.stage == StreamStage.QUEUED else 0.1))]
            if event.stage == StreamStage.STREAMING:
                return self._stop_typing()
            return []
        if isinstance(event, Token):
            message = {**proto.token(self.stream_id, event.seq, event.content, event.t), "index": event.seq}
            actions = [*self._stop_typing(), Send(message)]
            if event.seq % self.PROGRESS_EVERY == self.PROGRESS_EVERY - 1:
                fraction = 0.1 + 0.9 * min(0.99, (event.seq + 1) / self.expected_tokens)
                actions.append(Send(proto.progress(StreamStage.STREAMING, fraction)))
            return actions
        if isinstance(event, End):
            actions = self._stop_typing()
            if event.log.status == DONE:
                actions.append(Send(proto.progress("complete", 1.0)))
            return actions + self._end(event)
        assert isinstance(event, Heartbeat)
        return []


def chat_view(progressive: bool, stream_id: str, expected_tokens: float) -> PlainChatView:
    """The style of one connection, chosen once (by its route)."""
    return (ProgressiveChatView if progressive else PlainChatView)(stream_id, expected_tokens)
