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
    #: Connections the app server may open to the model at once (one per streaming reply).
    upstream_max_connections: int = 10_000
    #: The model the app routes ask for when the client names none.
    default_model: str = "gpt-4o-mini"
    #: Longest message a chat client may send.
    max_content_chars: int = 8_000
    #: When set, /api, /ws and /lab need this token (or a user token made from it); see labkit.auth.
    lab_token: str | None = field(default=None, repr=False)
    #: Seconds a reply keeps generating with nobody reading it, waiting for the client to resume.
    resume_grace_s: float = 5.0
    #: Seconds a finished reply is kept for late resumes, and how many replies are kept at most.
    stream_keep_s: float = 120.0
    max_kept_streams: int = 10_000
    #: Replies one user may have streaming at once (None: no limit; the classroom uses 2), and what a
    #: request over the limit does: "reject" (429 / a WebSocket error with a retry hint) or "replace"
    #: (the user's oldest reply is cancelled).
    max_streams_per_user: int | None = None
    stream_limit_policy: str = "reject"
    #: Requests per minute per user on the app routes (a token bucket); None means unlimited.
    user_requests_per_min: float | None = None
    #: Generations running at once across all users; more wait in the "queued" stage.
    max_active_generations: int = 10_000
    #: How often a waiting WebSocket reply repeats its typing indicator.
    typing_interval_s: float = 1.0
    #: Rooms go through this Redis (Streams) so that several server processes share them; None: in memory.
    redis_url: str | None = None
    #: Messages a room member may have waiting to be sent; a member further behind is disconnected.
    member_queue_size: int = 256
    #: Whether rooms have an AI that answers every message, and how long its lease lasts (seconds).
    room_ai: bool = True
    room_lease_s: float = 3.0
    #: A second secret whose holder alone is the instructor (``/lab/admin/*``); None: the holder of
    #: ``lab_token`` (or, on an open loopback server, the local user) is. The classroom sets one.
    instructor_key: str | None = field(default=None, repr=False)
    #: Largest request body accepted (bigger ones get 413 before they are read whole).
    max_body_bytes: int = 4 * 1024 * 1024
    #: Largest ``/ws/chat`` or room frame (``/v1/realtime`` allows OpenAI's 15 MB appends).
    max_ws_message_bytes: int = 256 * 1024
    #: Host names an open server also answers to (besides loopback names and IP addresses), and
    #: page origins allowed to POST and open WebSockets besides the server's own.
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    #: Connection hygiene (uvicorn): idle keep-alive timeout, most connections at once (more get
    #: 503), and how long a shutdown waits for open streams before cutting them.
    timeout_keep_alive_s: float = 5.0
    header_timeout_s: float = 10.0           # a new connection's request headers must be in by then
    body_timeout_s: float = 30.0             # and a request's body (else 408)
    limit_concurrency: int | None = 4096
    graceful_shutdown_s: float = 3.0
    #: A fault to teach with: the simulated model fails after this many tokens of every stream.
    fail_after_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.stream_limit_policy not in ("reject", "replace"):
            raise ValueError("stream_limit_policy must be 'reject' or 'replace'")
        if self.max_streams_per_user is not None and self.max_streams_per_user < 1:
            raise ValueError("max_streams_per_user must be at least 1")


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
    resumes: int = 0                 # readers that came back for the rest of a reply
    streams_rejected: int = 0        # by a per-user limit
    room_members: int = 0            # connected to rooms on this process
    room_members_kicked: int = 0     # too slow to keep up

    def as_dict(self) -> dict:
        return asdict(self)
