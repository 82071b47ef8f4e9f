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
from .streams import DONE, End, Heartbeat, Stage, StreamEvent, StreamLog, StreamStage, Token

__all__ = ["Send", "StartTyping", "StopTyping", "ChatAction", "PlainChatView", "ProgressiveChatView", "chat_view",
           "ChatConnection", "Ask", "Resume", "Cancel", "Reply"]


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


# ---- one connection's turns -------------------------------------------------------------------------

@dataclass(frozen=True)
class Ask:
    """Start a reply to ``messages`` (the connection's conversation, then the question)."""
    messages: list[dict]
    options: dict


@dataclass(frozen=True)
class Resume:
    """Look up ``stream_id`` and follow it after ``last_seq`` (then :meth:`ChatConnection.resuming`)."""
    stream_id: str
    last_seq: int


@dataclass(frozen=True)
class Cancel:
    """Stop the reply being followed."""
    log: StreamLog


@dataclass(frozen=True)
class Reply:
    """Answer this client message directly."""
    message: dict


class ChatConnection:
    """What one ``/ws/chat`` connection does with each client message, and its conversation.

    At most one reply is followed at a time (:meth:`following` ... :meth:`ended`); a message that
    asks for another meanwhile gets ``busy``. The conversation grows by each reply that completes; a
    ``resume`` on a new connection restores it from the reply it resumes."""

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.current: StreamLog | None = None
        self.busy = False

    def on_message(self, msg: proto.ClientMessage) -> Ask | Resume | Cancel | Reply | None:
        if msg.type == "ping":
            return Reply(proto.pong())
        if msg.type == "cancel":
            return Cancel(self.current) if self.busy and self.current is not None else None
        if self.busy:
            return Reply(proto.error("busy", "A reply is still streaming; wait for 'complete'."))
        if msg.type == "resume":
            return Resume(msg.stream_id, msg.last_seq)
        return Ask([*self.history, {"role": "user", "content": msg.content}], msg.options)

    def resuming(self, log: StreamLog, last_seq: int) -> dict | None:
        """Check a resume against the stream found: an error message to send, or None (then follow it)."""
        if last_seq > len(log.tokens) - 1:
            return proto.error("invalid_last_seq", f"last_seq {last_seq} is beyond this stream's "
                                                   f"{len(log.tokens)} tokens.", log.id)
        self.history = log.messages[:-1]
        return None

    def following(self, log: StreamLog) -> None:
        self.current, self.busy = log, True

    def saw(self, event: StreamEvent) -> None:
        """Every event of the followed reply: a completed one joins the conversation."""
        if isinstance(event, End) and event.log.status == DONE:
            self.history = [*event.log.messages, {"role": "assistant", "content": event.log.text}]

    def ended(self) -> None:
        self.busy = False
