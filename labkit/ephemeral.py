"""Ephemeral keys for the Realtime API, and how a WebSocket handshake carries its credentials (pure).

The browser pattern: a page must never hold a long-lived key, so *your* server mints a short-lived
one (``POST /v1/realtime/client_secrets``, or the beta ``POST /v1/realtime/sessions``) and hands it
to the page, which connects with it. A browser's ``new WebSocket(url, protocols)`` cannot set an
``Authorization`` header, so the key travels as a subprotocol, ``openai-insecure-api-key.<key>``,
next to ``realtime`` (which the server must select, or RFC 6455 clients abort) and, for the older
dialect, ``openai-beta.realtime-v1``.

:class:`EphemeralKeys` is the key store: clock and random source are injected, so expiry is tested
exactly. :func:`handshake_credentials` reads a handshake's headers and offered subprotocols.
:func:`check_realtime_key` is the one rule the Realtime handshake applies:

* an ``ek_…`` key must be one this server minted and not yet expired, whatever else is configured
  (an expired key is refused with 401, as OpenAI refuses it);
* any other key is checked against the server's ``api_key`` when one is required.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["EphemeralKeys", "ClientSecret", "KeyRefused", "Credentials", "handshake_credentials",
           "check_realtime_key", "PREFIX", "DEFAULT_TTL_S", "MIN_TTL_S", "MAX_TTL_S", "SUBPROTOCOL",
           "KEY_SUBPROTOCOL", "BETA_SUBPROTOCOL"]

PREFIX = "ek_"
DEFAULT_TTL_S, MIN_TTL_S, MAX_TTL_S = 600, 10, 7200
SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"


class KeyRefused(Exception):
    """A credential the Realtime handshake refuses: HTTP ``status`` with an OpenAI error body."""

    def __init__(self, message: str, code: str | None = "invalid_api_key", status: int = 401):
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


@dataclass(frozen=True)
class ClientSecret:
    value: str = field(repr=False)
    created_at: int
    expires_at: int
    session: dict            # the session the key was minted for (already validated), applied on connect
    beta: bool = False       # minted by the beta route: ``session`` is in the flat beta shape


class EphemeralKeys:
    """Mints ``ek_…`` keys that expire; ``lookup`` answers which session a key opens, or refuses it.

    Expired keys are forgotten on the next mint, so the store stays as small as the keys in use."""

    def __init__(self, clock: Callable[[], float] = time.time, token: Callable[[int], str] = secrets.token_urlsafe):
        self.clock, self.token = clock, token
        self._keys: dict[str, ClientSecret] = {}

    @staticmethod
    def ttl_from(expires_after: object) -> int:
        """Seconds a key lives, from the request's ``expires_after`` (``{"anchor": "created_at",
        "seconds": 10..7200}``); ValueError (with the parameter's name) when it is malformed."""
        if expires_after is None:
            return DEFAULT_TTL_S
        if not isinstance(expires_after, dict):
            raise ValueError("expires_after|Invalid type for 'expires_after': expected an object.")
        anchor = expires_after.get("anchor", "created_at")
        if anchor != "created_at":
            raise ValueError("expires_after.anchor|Invalid value for 'expires_after.anchor': supported values "
                             "are: 'created_at'.")
        seconds = expires_after.get("seconds", DEFAULT_TTL_S)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_TTL_S <= seconds <= MAX_TTL_S:
            raise ValueError(f"expires_after.seconds|Invalid 'expires_after.seconds': expected an integer between "
                             f"{MIN_TTL_S} and {MAX_TTL_S}, got {seconds!r}.")
        return seconds

    def mint(self, session: dict, ttl_s: int = DEFAULT_TTL_S, *, beta: bool = False) -> ClientSecret:
        now = self.clock()
        for value in [v for v, k in self._keys.items() if k.expires_at <= now]:
            del self._keys[value]
        created = int(now)
        secret = ClientSecret(PREFIX + self.token(24), created, created + int(ttl_s), dict(session), beta)
        self._keys[secret.value] = secret
        return secret

    def lookup(self, value: str) -> ClientSecret:
        """The key's record; :class:`KeyRefused` if it is unknown or has expired."""
        found = next((k for v, k in self._keys.items() if hmac.compare_digest(v.encode(), value.encode())), None)
        if found is None:
            raise KeyRefused("Incorrect API key provided: the ephemeral key is not valid.")
        if self.clock() >= found.expires_at:
            raise KeyRefused("The ephemeral key has expired. Mint a new one with POST /v1/realtime/client_secrets.")
        return found

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True)
class Credentials:
    key: str | None = field(repr=False)   # from ``Authorization: Bearer`` or ``openai-insecure-api-key.*``
    beta: bool                            # ``OpenAI-Beta: realtime=v1`` or ``openai-beta.realtime-v1``
    subprotocol: str | None               # what the server must select in its 101 response


def handshake_credentials(headers, subprotocols: list[str]) -> Credentials:
    """What a Realtime handshake says: the key, the dialect, and the subprotocol to select.

    ``headers`` is a case-insensitive mapping (lower-case names), ``subprotocols`` the offered list.
    The header wins over the subprotocol when both carry a key. The key subprotocol is never
    selected (the server would echo a secret back): ``realtime`` is, when offered."""
    header = headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else None
    if not key:
        key = next((p[len(KEY_SUBPROTOCOL):] for p in subprotocols if p.startswith(KEY_SUBPROTOCOL)), None) or None
    beta = headers.get("openai-beta", "").strip() == "realtime=v1" or BETA_SUBPROTOCOL in subprotocols
    return Credentials(key, beta, SUBPROTOCOL if SUBPROTOCOL in subprotocols else None)


def check_realtime_key(key: str | None, api_key: str | None, keys: EphemeralKeys) -> ClientSecret | None:
    """The Realtime handshake's one rule (see the module docstring): the ephemeral key's record
    (its session applies to the connection), None for an accepted ordinary key, or :class:`KeyRefused`."""
    if key is not None and key.startswith(PREFIX):
        return keys.lookup(key)
    if api_key is None:
        return None
    if not key:
        raise KeyRefused("You didn't provide an API key. Send 'Authorization: Bearer <key>', or from a browser "
                         "the subprotocol 'openai-insecure-api-key.<key>' (an ephemeral key).", code=None)
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        raise KeyRefused("Incorrect API key provided.")
    return None
