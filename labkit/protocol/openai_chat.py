"""OpenAI Chat Completions on the wire, with no I/O: request validation, chunks, errors.

Everything the local model server sends is built here, so its exact shape is tested once,
without sockets (against the ``openai`` SDK's own pydantic models), and the FastAPI routes only
move these bytes. Shapes follow ``shared/reference/openai-wire-protocol.md`` §2.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..model.tools import Tool, ToolCall, ToolSpecError, parse_response_format, parse_tool_choice, parse_tools

__all__ = [
    "APIError", "ChatRequest", "parse_chat_request", "error_body",
    "completion_id", "role_chunk", "content_chunk", "finish_chunk", "usage_chunk", "completion",
    "tool_call_start_chunk", "tool_call_arguments_chunk", "DONE",
]

DONE = b"data: [DONE]\n\n"
ROLES = {"system", "user", "assistant", "developer", "tool", "function"}

# Parameters of the real API that the simulation accepts and ignores (they change no timing).
_ACCEPTED_IGNORED = {
    "top_p", "frequency_penalty", "presence_penalty", "stop", "user", "logit_bias", "logprobs",
    "top_logprobs", "metadata",
    "store", "service_tier", "modalities", "audio", "prediction", "reasoning_effort", "verbosity",
    "functions", "function_call", "web_search_options", "prompt_cache_key", "safety_identifier",
}
_SIMULATED = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
              "temperature", "seed", "n", "tools", "tool_choice", "parallel_tool_calls", "response_format"}


@dataclass
class APIError(Exception):
    """An OpenAI-style error: the HTTP status plus the ``{"error": {...}}`` body fields."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float = 1.0
    seed: int | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"             # "auto" | "none" | "required" | the name of a function
    parallel_tool_calls: bool = True
    response_format: dict | None = None   # None (text) | {"type": "json_object"} | {"type": "json_schema", ...}


def _bad(message: str, param: str | None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(body: dict, name: str, kinds: tuple[type, ...], expected: str) -> Any:
    value = body.get(name)
    # bool is an int in Python, never in JSON Schema
    if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
        raise _bad(f"Invalid type for '{name}': expected {expected}, but got {_type_name(value)} instead.",
                   name, "invalid_type")
    return value


def _expect_range(name: str, value: float | None, lo: float | None, hi: float | None, kind: str = "integer") -> None:
    """``kind`` is the parameter's schema type as OpenAI names it: "integer", or "decimal" for numbers."""
    if value is None:
        return
    if lo is not None and value < lo:
        raise _bad(f"Invalid '{name}': {kind} below minimum value. Expected a value >= {lo}, "
                   f"but got {value} instead.", name, f"{kind}_below_min_value")
    if hi is not None and value > hi:
        raise _bad(f"Invalid '{name}': {kind} above maximum value. Expected a value <= {hi}, "
                   f"but got {value} instead.", name, f"{kind}_above_max_value")


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate a request body as the real API does; raise :class:`APIError` (400) on any fault."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "We could not parse the JSON body of your request. The OpenAI API expects "
                            "a JSON payload, but what was sent was not valid JSON.", code=None) from None
    if not isinstance(body, dict):
        raise _bad(f"Invalid type for request body: expected an object, but got {_type_name(body)} instead.",
                   None, "invalid_type")
    unknown = sorted(set(body) - _SIMULATED - _ACCEPTED_IGNORED)
    if unknown:
        raise APIError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                       code="unknown_parameter")

    model = _expect(body, "model", (str,), "a string")
    if not model:
        raise _bad("You must provide a model parameter.", "model", "missing_required_parameter")
    messages = _expect(body, "messages", (list,), "an array")
    if messages is None:
        raise _bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not messages:
        raise _bad("Invalid 'messages': empty array. Expected an array with minimum length 1, "
                   "but got an empty array instead.", "messages", "empty_array")
    for i, message in enumerate(messages):
        _check_message(i, message)

    stream = _expect(body, "stream", (bool,), "a boolean") or False
    stream_options = _expect(body, "stream_options", (dict,), "an object")
    if stream_options is not None and not stream:
        raise _bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                   "stream_options", None)
    include_usage = bool((stream_options or {}).get("include_usage", False))

    max_tokens = _expect(body, "max_completion_tokens", (int,), "an integer")
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens = _expect(body, "max_tokens", (int,), "an integer")
        param = "max_tokens"
    _expect_range(param, max_tokens, 1, None)

    temperature = _expect(body, "temperature", (int, float), "a number")
    _expect_range("temperature", temperature, 0, 2, "decimal")
    seed = _expect(body, "seed", (int,), "an integer")
    n = _expect(body, "n", (int,), "an integer")
    _expect_range("n", n, 1, 1)   # the local model answers once per request

    parallel = _expect(body, "parallel_tool_calls", (bool,), "a boolean")
    try:
        tools = parse_tools(body.get("tools"))
        if body.get("tool_choice") is not None and not tools and body["tool_choice"] != "none":
            raise ToolSpecError("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                                "specified.", "tool_choice")
        tool_choice = parse_tool_choice(body.get("tool_choice"), tools)
        response_format = parse_response_format(body.get("response_format"), messages)
    except ToolSpecError as e:
        raise _bad(e.message, e.param) from None

    return ChatRequest(
        model=model, messages=messages, stream=stream, include_usage=include_usage,
        max_tokens=max_tokens, temperature=1.0 if temperature is None else float(temperature), seed=seed,
        tools=tools, tool_choice=tool_choice, parallel_tool_calls=True if parallel is None else parallel,
        response_format=response_format,
    )


def _check_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _bad(f"Invalid type for '{where}': expected an object, but got {_type_name(message)} instead.",
                   where, "invalid_type")
    role = message.get("role")
    if role is None:
        raise _bad(f"Missing required parameter: '{where}.role'.", f"{where}.role", "missing_required_parameter")
    if role not in ROLES:
        raise _bad(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                   f"'function', 'tool', and 'developer'.", f"{where}.role", "invalid_value")
    content = message.get("content")
    if content is None and role in {"user", "system", "developer"}:
        raise _bad(f"Missing required parameter: '{where}.content'.", f"{where}.content",
                   "missing_required_parameter")
    if content is not None and not isinstance(content, (str, list)):
        raise _bad(f"Invalid type for '{where}.content': expected one of a string or array of objects, "
                   f"but got {_type_name(content)} instead.", f"{where}.content", "invalid_type")


# ----------------------------------------------------------------------------- responses

def completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def _chunk(cid: str, created: int, model: str, choices: list, usage: dict | None = None) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None, "choices": choices, "usage": usage}


def role_chunk(cid: str, created: int, model: str) -> dict:
    """The first chunk: it carries the role (once) and empty content."""
    return _chunk(cid, created, model, [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                         "logprobs": None, "finish_reason": None}])


def content_chunk(cid: str, created: int, model: str, text: str) -> dict:
    return _chunk(cid, created, model, [{"index": 0, "delta": {"content": text}, "logprobs": None,
                                         "finish_reason": None}])


def finish_chunk(cid: str, created: int, model: str, finish_reason: str) -> dict:
    return _chunk(cid, created, model, [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}])


def usage_chunk(cid: str, created: int, model: str, usage: dict) -> dict:
    """Sent last, and only when the request asked for ``stream_options.include_usage``."""
    return _chunk(cid, created, model, [], usage)


def tool_call_start_chunk(cid: str, created: int, model: str, index: int, call: ToolCall, first: bool) -> dict:
    """A call begins: its index, id and name, with empty arguments (the first one also carries the role)."""
    delta: dict = {"role": "assistant", "content": None} if first else {}
    delta["tool_calls"] = [{"index": index, "id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": ""}}]
    return _chunk(cid, created, model, [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])


def tool_call_arguments_chunk(cid: str, created: int, model: str, index: int, fragment: str) -> dict:
    return _chunk(cid, created, model, [{"index": 0, "delta": {"tool_calls": [
        {"index": index, "function": {"arguments": fragment}}]}, "logprobs": None, "finish_reason": None}])


def completion(cid: str, created: int, model: str, text: str, finish_reason: str, usage: dict,
               tool_calls: tuple[ToolCall, ...] = ()) -> dict:
    """A whole (non-streamed) ``chat.completion`` object."""
    message: dict = {"role": "assistant", "content": None if tool_calls else text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in tool_calls]
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model, "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }
