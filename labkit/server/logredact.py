"""No secret in any log line: tokens in URLs and headers are masked before a record is written.

Browsers cannot send headers on ``EventSource`` or ``WebSocket``, so the lab accepts ``?token=…``
in the URL, and uvicorn's access log (and its ``"WebSocket /ws/chat?token=…" [accepted]`` lines)
print the URL with its query string. :func:`install` masks the value of every ``token``,
``api_key``/``key`` and ``Bearer`` credential in the records of uvicorn's and labkit's loggers.
"""

from __future__ import annotations

import logging
import re

__all__ = ["redact", "RedactSecrets", "install", "LOGGERS"]

LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "labkit")
_QUERY = re.compile(r"(?i)\b((?:token|api_key|key|client_secret|ephemeral_key)=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")
_SUBPROTOCOL = re.compile(r"(openai-insecure-api-key\.)[^\s\"',]+")
MASK = "***"


def redact(text: str) -> str:
    text = _QUERY.sub(lambda m: m.group(1) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _SUBPROTOCOL.sub(lambda m: m.group(1) + MASK, text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


_FILTER = RedactSecrets()


def install() -> None:
    """Add the filter to uvicorn's and labkit's loggers and to their handlers and the root's (a record
    of a child logger, ``labkit.rooms`` say, passes only its handlers' filters). Idempotent; call it
    after uvicorn has set up logging."""
    for name in (*LOGGERS, None):
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if _FILTER not in target.filters:
                target.addFilter(_FILTER)
