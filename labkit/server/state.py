"""The server's configuration and live counters, shared by its routes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ServerConfig", "ServerStats"]


@dataclass
class ServerConfig:
    """How one labkit server behaves. Every field has a default that suits a learner's laptop."""

    #: When set, ``/v1/*`` requires ``Authorization: Bearer <api_key>`` (else any key is accepted).
    api_key: str | None = field(default=None, repr=False)
    #: Requests per minute per API key on ``/v1/chat/completions``; None means unlimited.
    rate_limit_rpm: float | None = None
    #: Multiplies every simulated delay (0.1 makes the model ten times faster; tests use it).
    time_scale: float = 1.0
    #: Seconds of silence after which a stream sends an SSE comment as a keep-alive.
    heartbeat_s: float = 15.0
    #: Where the app routes (/api/*, /ws/*) get their model from. None: this server's own /v1.
    upstream_base_url: str | None = None
    upstream_api_key: str | None = field(default=None, repr=False)
    #: The model the app routes ask for when the client names none.
    default_model: str = "gpt-4o-mini"
    #: Longest message a chat client may send.
    max_content_chars: int = 8_000


@dataclass
class ServerStats:
    """Counters a test or a notebook can read at ``GET /lab/stats``."""

    requests: int = 0
    errors: int = 0
    tokens_generated: int = 0        # by the simulated model (/v1)
    model_streams_active: int = 0
    model_streams_cancelled: int = 0
    app_streams_active: int = 0      # by the app transports (/api, /ws)
    app_streams_cancelled: int = 0
    ws_connections: int = 0

    def as_dict(self) -> dict:
        return asdict(self)
