"""Who is asking: users identified by a token, and the rule that keeps a networked server closed.

On a loopback address (the default) only programs on this machine can connect, so no secret is
needed: a token, if sent, simply names the user (``Authorization: Bearer alice``), and no token
means the user ``local``. On any other address everyone on the network can connect, so the
server refuses to start without ``LAB_TOKEN`` (:func:`check_bind`), and then accepts only

* ``LAB_TOKEN`` itself (the instructor, or a page that will log in), as user ``shared``, or
* a user token ``<name>.<signature>`` made by :func:`issue_user_token` (``POST /api/login``),
  where the signature is an HMAC of the name under ``LAB_TOKEN``: the server can check it without
  keeping a list, and a student cannot forge someone else's.

Browsers cannot set headers on ``EventSource`` or ``WebSocket``, so the token may also come as a
``token`` query parameter (:func:`token_from`).

Roles (an :class:`Identity` carries one): the *instructor* may flip the class-wide switches
(``/lab/admin/*``). Who that is: whoever holds ``instructor_key`` when one is set (the classroom
makes one and prints it only in the instructor's terminal); else the holder of ``LAB_TOKEN`` itself;
on an open loopback server, the local user. Students (user tokens) and the class token (the join
link, when an instructor key exists) are never instructors.

:meth:`Authenticator.authenticate` is THE check of every request; other kinds of credentials
(ephemeral keys, say) plug into it with :meth:`Authenticator.add_verifier`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from .ephemeral import KEY_SUBPROTOCOL

__all__ = ["Authenticator", "Identity", "issue_user_token", "is_loopback", "check_bind", "token_from", "USER_NAME",
           "INSTRUCTOR", "STUDENT", "CLASS", "RESERVED_NAMES"]

USER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LOCAL_USER, SHARED_USER, INSTRUCTOR_USER = "local", "shared", "instructor"
#: Roles: may change class-wide settings / a person with a name / the join link's class token.
INSTRUCTOR, STUDENT, CLASS = "instructor", "student", "class"
#: Names nobody can log in as (they would look like the server's own identities).
RESERVED_NAMES = frozenset({LOCAL_USER, SHARED_USER, INSTRUCTOR_USER, "ai", "AI", "system"})


@dataclass(frozen=True)
class Identity:
    """Who a request comes from: the user name (rooms' author, limits' key) and the role."""
    user: str
    role: str = STUDENT
    #: True when a secret proved it (LAB_TOKEN, a signed user token, the instructor key, a verifier's
    #: credential); False for an open loopback server's self-declared names, which any web page can
    #: send too: only those requests need the Origin check (see labkit.server.identity).
    proven: bool = False

    @property
    def is_instructor(self) -> bool:
        return self.role == INSTRUCTOR


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, lab_token: str | None) -> None:
    """Raise ``PermissionError`` for a non-loopback bind without a token (or with a guessable one)."""
    if is_loopback(host):
        return
    if not lab_token:
        raise PermissionError(f"refusing to listen on {host} without LAB_TOKEN: anyone on the network could use "
                              f"this server. Set LAB_TOKEN (python -m labkit classroom makes one), or listen on "
                              f"127.0.0.1.")
    if len(lab_token) < 12:
        raise PermissionError("LAB_TOKEN is too short to protect a networked server; use 12 characters or more.")


def _signature(secret: str, name: str) -> str:
    return hmac.new(secret.encode(), name.encode(), hashlib.sha256).hexdigest()[:20]


def issue_user_token(secret: str, name: str) -> str:
    if not USER_NAME.match(name):
        raise ValueError("a user name is 1-32 letters, digits, '_' or '-'")
    return f"{name}.{_signature(secret, name)}"


def token_from(headers, query) -> str | None:
    """The bearer token of a request: the ``Authorization`` header, else a WebSocket handshake's
    ``openai-insecure-api-key.<key>`` subprotocol (how a browser sends a key), else the ``token``
    query parameter."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    offered = (p.strip() for p in headers.get("sec-websocket-protocol", "").split(","))
    key = next((p[len(KEY_SUBPROTOCOL):] for p in offered if p.startswith(KEY_SUBPROTOCOL)), None)
    return key or query.get("token") or None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Authenticator:
    """``authenticate(token) -> Identity`` (``identify`` gives just the name), or None when refused.

    ``instructor_key``: a second secret that alone makes its holder the instructor. ``api_keys``:
    keys also accepted (the ``--api-key`` of ``/v1``), as the user ``api``."""

    def __init__(self, secret: str | None = None, *, instructor_key: str | None = None,
                 api_keys: tuple[str, ...] = ()):
        self.secret, self.instructor_key = secret, instructor_key
        self.api_keys = tuple(k for k in api_keys if k)
        self._verifiers: list[Callable[[str], Identity | None]] = []

    @property
    def required(self) -> bool:
        return bool(self.secret)

    def add_verifier(self, verify: Callable[[str], "Identity | None"]) -> None:
        """Accept another kind of credential: ``verify(token)`` returns its Identity, or None."""
        self._verifiers.append(verify)

    def identify(self, token: str | None) -> str | None:
        identity = self.authenticate(token)
        return identity.user if identity is not None else None

    def authenticate(self, token: str | None) -> Identity | None:
        """The one check every request goes through (see :class:`~labkit.server.identity.IdentityMiddleware`)."""
        if token is not None and self.instructor_key and _same(token, self.instructor_key):
            return Identity(INSTRUCTOR_USER, INSTRUCTOR, proven=True)
        if token is not None:
            for verify in self._verifiers:
                identity = verify(token)
                if identity is not None:
                    return replace(identity, proven=True)
        if not self.secret:
            if token is None:
                return Identity(LOCAL_USER, INSTRUCTOR)      # loopback only: nobody else can connect
            name = token.split(".", 1)[0]
            return Identity(name, STUDENT) if USER_NAME.match(name) else None
        if token is None:
            return None
        if _same(token, self.secret):
            return Identity(SHARED_USER, CLASS if self.instructor_key else INSTRUCTOR, proven=True)
        if any(_same(token, key) for key in self.api_keys):
            return Identity("api", STUDENT, proven=True)
        name, _, signature = token.partition(".")
        if USER_NAME.match(name) and signature and _same(signature, _signature(self.secret, name)):
            return Identity(name, STUDENT, proven=True)
        return None
