"""``response.create`` parameters, validated before a response starts (pure, no I/O).

A response that starts with a bad parameter (``max_output_tokens: "abc"``, ``instructions: 123``)
cannot be generated; if it is started anyway it never finishes, and every later ``response.create``
is refused because one is "still in progress". So the machine checks the whole request first and
answers a bad one with an ``error`` event naming the parameter, starting nothing.

Both dialects are read: GA (``output_modalities``, ``audio.output.voice``, ``max_output_tokens``)
and beta (``modalities``, ``voice``, ``max_response_output_tokens``). Parameters the emulator does
not simulate are left to their own handlers (tools, metadata, ...), untouched here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .session import VOICES, RealtimeError, SessionConfig

__all__ = ["ResponseParams", "parse_response_params", "MAX_INSTRUCTIONS_CHARS"]

#: Instructions longer than this cannot fit any model's context window anyway (~4 characters a token).
MAX_INSTRUCTIONS_CHARS = 512_000


@dataclass(frozen=True)
class ResponseParams:
    modalities: tuple[str, ...]
    voice: str
    max_output_tokens: int | str
    instructions: str | None


def _type_error(param: str, expected: str) -> RealtimeError:
    return RealtimeError("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)


def _modalities(value, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _type_error(param, "an array of strings")
    if value == ["text"]:
        return ("text",)
    if value and set(value) <= {"audio", "text"}:
        return ("audio",)
    raise RealtimeError("invalid_value", f"Invalid value for '{param}': expected ['text'] or ['audio'].", param)


def _voice(value, param: str) -> str:
    if not isinstance(value, str):
        raise _type_error(param, "a string")
    if value not in VOICES:
        raise RealtimeError("invalid_value", f"Invalid value for '{param}': '{value[:40]}'. Supported voices are: "
                                             f"{', '.join(VOICES)}.", param)
    return value


def _max_tokens(value, param: str) -> int | str:
    if value == "inf":
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise _type_error(param, "an integer or 'inf'")
    if not 1 <= value <= 4096:
        raise RealtimeError("invalid_value", f"Invalid value for '{param}': expected a value between 1 and 4096, "
                                             f"got {value}.", param)
    return value


def parse_response_params(overrides: object, cfg: SessionConfig) -> ResponseParams:
    """The effective parameters of one response, or :class:`RealtimeError` for the first bad one."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise _type_error("response", "an object")
    modalities, voice, max_tokens = cfg.output_modalities, cfg.voice, cfg.max_output_tokens
    for name in ("output_modalities", "modalities"):
        if overrides.get(name) is not None:
            modalities = _modalities(overrides[name], f"response.{name}")
            break
    audio = overrides.get("audio")
    if audio is not None:
        if not isinstance(audio, dict):
            raise _type_error("response.audio", "an object")
        output = audio.get("output")
        if output is not None:
            if not isinstance(output, dict):
                raise _type_error("response.audio.output", "an object")
            if output.get("voice") is not None:
                voice = _voice(output["voice"], "response.audio.output.voice")
    if overrides.get("voice") is not None:
        voice = _voice(overrides["voice"], "response.voice")
    for name in ("max_output_tokens", "max_response_output_tokens"):
        if overrides.get(name) is not None:
            max_tokens = _max_tokens(overrides[name], f"response.{name}")
            break
    instructions = overrides.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _type_error("response.instructions", "a string")
        if len(instructions) > MAX_INSTRUCTIONS_CHARS:
            raise RealtimeError("invalid_value", f"Invalid 'response.instructions': {len(instructions)} characters; "
                                                 f"the limit is {MAX_INSTRUCTIONS_CHARS}.", "response.instructions")
    return ResponseParams(modalities, voice, max_tokens, instructions)
