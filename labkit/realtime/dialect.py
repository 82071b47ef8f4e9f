"""The two dialects of the Realtime API, each one object that renders and parses events.

OpenAI's Realtime API has a GA protocol and the older beta one (clients that send
``OpenAI-Beta: realtime=v1``, or the ``openai-beta.realtime-v1`` subprotocol). They differ in event
names (``response.output_text.delta`` vs ``response.text.delta``), the shape of the session and of
responses, assistant content types (``output_text`` vs ``text``) and whether items get a
``conversation.item.done``. A connection picks its dialect once (:func:`dialect_for`, from the
handshake) and the session machine asks it, instead of testing a ``beta`` flag at every turn.
"""

from __future__ import annotations

from .session import SAMPLE_RATE, SessionConfig, apply_update, render_session

__all__ = ["Dialect", "GA", "BETA", "dialect_for"]

# GA event name -> beta event name, where they differ
_BETA_NAMES = {
    "response.output_text.delta": "response.text.delta", "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta", "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
_BETA_CONTENT = {"output_text": "text", "output_audio": "audio"}


class Dialect:
    """The GA protocol (the machine's own shapes: rendering is the identity where nothing differs)."""

    name = "ga"
    beta = False
    #: GA confirms every finished item with ``conversation.item.done``; beta has no such event.
    confirms_items = True

    def __repr__(self) -> str:
        return f"<Realtime dialect {self.name}>"

    def event_type(self, ga_type: str) -> str:
        return ga_type

    def parse_session(self, current: SessionConfig, session: object) -> SessionConfig:
        """The session after a ``session.update`` payload in this dialect (RealtimeError if invalid)."""
        return apply_update(current, session, beta=self.beta)

    def render_session(self, cfg: SessionConfig) -> dict:
        return render_session(cfg, beta=self.beta)

    def render_item(self, item: dict) -> dict:
        return item

    def response_fields(self, modalities: tuple[str, ...], voice: str, temperature: float) -> dict:
        """What a ``realtime.response`` object says about its output."""
        return {"output_modalities": list(modalities),
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "voice": voice}}}


class BetaDialect(Dialect):
    name = "beta"
    beta = True
    confirms_items = False

    def event_type(self, ga_type: str) -> str:
        return _BETA_NAMES.get(ga_type, ga_type)

    def render_item(self, item: dict) -> dict:
        if item.get("role") != "assistant":
            return item
        content = [{"type": _BETA_CONTENT[c["type"]], **{k: v for k, v in c.items() if k != "type"}}
                   for c in item["content"]]
        return {**item, "content": content}

    def response_fields(self, modalities: tuple[str, ...], voice: str, temperature: float) -> dict:
        return {"modalities": ["text"] if modalities == ("text",) else ["text", "audio"], "voice": voice,
                "output_audio_format": "pcm16", "temperature": temperature}


GA, BETA = Dialect(), BetaDialect()


def dialect_for(beta: bool) -> Dialect:
    """The dialect a connection speaks, from its handshake's ``beta`` flag."""
    return BETA if beta else GA
