"""Check a server event against the ``openai`` SDK's own pydantic models, strictly.

The SDK does not validate what it receives (it builds events without checking), so an emulator
can be wrong in ways the SDK never reports. This is how the lab's tests, and a curious learner, can
prove every event has the fields, types and literal values the real protocol has.
"""

from __future__ import annotations

import json
from typing import Any, Union, get_args

from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GAServerEvent

__all__ = ["validate_server_event", "UnknownEventType"]


class UnknownEventType(ValueError):
    pass


def _by_type(alias: Any) -> dict:
    union, *_ = get_args(alias)
    return {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(union)}


_GA, _BETA = _by_type(GAServerEvent), _by_type(BetaServerEvent)


def validate_server_event(event: Union[str, bytes, dict], *, beta: bool = False):
    """The parsed SDK model; raises ``pydantic.ValidationError`` or :class:`UnknownEventType`."""
    raw = event if isinstance(event, (str, bytes)) else json.dumps(event)
    kind = json.loads(raw).get("type")
    model = (_BETA if beta else _GA).get(kind)
    if model is None:
        raise UnknownEventType(f"not a {'beta' if beta else 'GA'} server event type: {kind!r}")
    return model.model_validate_json(raw, strict=True)
