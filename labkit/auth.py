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
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

__all__ = ["Authenticator", "issue_user_token", "is_loopback", "check_bind", "token_from", "USER_NAME"]

USER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LOCAL_USER, SHARED_USER = "local", "shared"


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
    """The bearer token of a request: the ``Authorization`` header, else the ``token`` query parameter."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return query.get("token") or None


class Authenticator:
    """``identify(token) -> user name``, or None when the token is not accepted."""

    def __init__(self, secret: str | None = None):
        self.secret = secret

    @property
    def required(self) -> bool:
        return bool(self.secret)

    def identify(self, token: str | None) -> str | None:
        if not self.secret:
            if token is None:
                return LOCAL_USER
            name = token.split(".", 1)[0]
            return name if USER_NAME.match(name) else None
        if token is None:
            return None
        if hmac.compare_digest(token.encode(), self.secret.encode()):
            return SHARED_USER
        name, _, signature = token.partition(".")
        if USER_NAME.match(name) and signature and hmac.compare_digest(signature, _signature(self.secret, name)):
            return name
        return None
