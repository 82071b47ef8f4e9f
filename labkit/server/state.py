"""The server's configuration: the options a user sets, the small config each component gets, the
settings switched at run time, and the live counters.

* :class:`ServerConfig` is the flat set of options a user gives (``labkit.serve(**options)``,
  ``python -m labkit serve`` flags, ``labkit.lab_server()``). It is read once, at start-up:
  :meth:`ServerConfig.split` cuts it into one small frozen config per component (:class:`ServerParts`),
  and ``create_app`` passes each component its own part, and its collaborators, explicitly.
* :class:`LiveSettings` holds what may change while the server runs (the model the chat routes ask
  for, the network the classroom's traffic goes through). ``create_app`` owns it; only the instructor's
  routes (:mod:`labkit.server.admin`) change it; components read it when they need it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

__all__ = ["ServerConfig", "ServerStats", "ServerParts", "LiveSettings", "ModelServerConfig", "UpstreamConfig",
           "ChatConfig", "StreamConfig", "RoomConfig", "AccessConfig", "ConnectionConfig"]


# --------------------------------------------------------------------------- one config per component
# Field names are the ServerConfig options they come from, so a component reads ``config.<option>``
# whichever it was given, and ServerConfig.split() builds each part by name. No defaults here: the
# defaults (and what each option means) are ServerConfig's, in one place.

@dataclass(frozen=True)
class ModelServerConfig:
    """The simulated model's routes (``/v1``: chat completions, Realtime, WebRTC, client secrets)."""
    api_key: str | None = field(repr=False)
    rate_limit_rpm: float | None
    time_scale: float
    heartbeat_s: float
    fail_after_tokens: int | None


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the app routes get their tokens (:class:`~labkit.server.upstream.Upstream`)."""
    upstream_base_url: str | None
    upstream_api_key: str | None = field(repr=False)
    upstream_max_connections: int
    upstream_http: str = "aiohttp"


@dataclass(frozen=True)
class ChatConfig:
    """The app's chat transports (``/api/chat``, ``/ws/chat``)."""
    lab_token: str | None = field(repr=False)
    heartbeat_s: float
    max_content_chars: int
    max_ws_message_bytes: int
    typing_interval_s: float


@dataclass(frozen=True)
class StreamConfig:
    """Resumable replies and the limits on them (:class:`~labkit.server.streamhub.StreamHub`)."""
    resume_grace_s: float
    stream_keep_s: float
    max_kept_streams: int
    max_streams_per_user: int | None
    stream_limit_policy: str
    user_requests_per_min: float | None
    max_active_generations: int


@dataclass(frozen=True)
class RoomConfig:
    """Rooms (:class:`~labkit.server.rooms.RoomHub` and ``/ws/rooms``)."""
    redis_url: str | None
    member_queue_size: int
    room_ai: bool
    room_lease_s: float
    user_requests_per_min: float | None
    lab_token: str | None = field(repr=False)
    max_content_chars: int
    max_ws_message_bytes: int


@dataclass(frozen=True)
class AccessConfig:
    """Who gets in and what a request may carry (authenticator, identity middleware, request guard)."""
    lab_token: str | None = field(repr=False)
    instructor_key: str | None = field(repr=False)
    api_key: str | None = field(repr=False)
    allowed_hosts: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    max_body_bytes: int
    body_timeout_s: float


@dataclass(frozen=True)
class ConnectionConfig:
    """Connection hygiene of the HTTP server (uvicorn's options)."""
    timeout_keep_alive_s: float
    header_timeout_s: float
    limit_concurrency: int | None
    graceful_shutdown_s: float
    access_log: bool = True


@dataclass(frozen=True)
class ServerParts:
    """A ServerConfig cut into the part each component reads."""
    model: ModelServerConfig
    upstream: UpstreamConfig
    chat: ChatConfig
    streams: StreamConfig
    rooms: RoomConfig
    access: AccessConfig
    connections: ConnectionConfig


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
    #: The HTTP transport under the upstream ``AsyncOpenAI`` client: "aiohttp" (the SDK's
    #: ``DefaultAioHttpClient``, openai[aiohttp]; cheaper per streamed chunk) or "httpx".
    upstream_http: str = "aiohttp"
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
    #: One log line per request (uvicorn's access log). The benchmarks turn it off in every server
    #: they measure, as the peers run without one: a line costs more than a dozen streamed tokens.
    access_log: bool = True
    #: A fault to teach with: the simulated model fails after this many tokens of every stream.
    fail_after_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.stream_limit_policy not in ("reject", "replace"):
            raise ValueError("stream_limit_policy must be 'reject' or 'replace'")
        if self.max_streams_per_user is not None and self.max_streams_per_user < 1:
            raise ValueError("max_streams_per_user must be at least 1")
        if self.upstream_http not in ("aiohttp", "httpx"):
            raise ValueError("upstream_http must be 'aiohttp' or 'httpx'")

    def part(self, cls):
        """The component config ``cls`` with this config's values for its fields."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    def split(self) -> ServerParts:
        """One small config per component (what ``create_app`` hands out)."""
        return ServerParts(**{name: self.part(cls) for name, cls in _PARTS.items()})


_PARTS = {"model": ModelServerConfig, "upstream": UpstreamConfig, "chat": ChatConfig, "streams": StreamConfig,
          "rooms": RoomConfig, "access": AccessConfig, "connections": ConnectionConfig}


class LiveSettings:
    """What the instructor switches while the server runs, in one place with one owner.

    ``create_app`` makes it (from ``ServerConfig.default_model``) and owns it; the instructor's routes
    (:mod:`labkit.server.admin`) are the only writers; the upstream reads :attr:`model` at each request.
    The network switch exists only when something can switch it: the classroom attaches its network
    emulator with :meth:`attach_network` (and its join link, for the instructor's page).
    """

    def __init__(self, model: str):
        self.model = model
        self.join_url: str | None = None
        self._network: tuple[Callable[[], str], Callable[[str], None]] | None = None

    def attach_network(self, current: Callable[[], str], switch: Callable[[str], None]) -> None:
        """``current()`` names the profile in force; ``switch(name)`` puts everyone on another."""
        self._network = (current, switch)

    @property
    def network(self) -> str | None:
        """The network profile everyone's traffic goes through; None without an emulator."""
        return self._network[0]() if self._network else None

    @property
    def can_switch_network(self) -> bool:
        return self._network is not None

    def set_network(self, name: str) -> None:
        if self._network is None:
            raise LookupError("no network emulator is attached")
        self._network[1](name)


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
