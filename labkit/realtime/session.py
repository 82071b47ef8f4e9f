"""Realtime session configuration, pure: parse and validate ``session.update`` in either protocol
version, merge it into the effective session, and render that session the way each version shows it.

Two wire dialects exist. The GA protocol nests settings (``session.audio.input.turn_detection``)
and requires ``session.type``; the older beta protocol (clients that send ``OpenAI-Beta:
realtime=v1``, as most tutorials do) is flat (``session.turn_detection``, ``modalities``,
``voice``). Both map onto one :class:`SessionConfig`. Invalid updates raise :class:`RealtimeError`
naming the offending parameter, and change nothing.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace

from ..model.tools import ToolSpecError, parse_tool_choice, parse_tools
from ..protocol.errors import CodedError

__all__ = ["RealtimeError", "SessionConfig", "TurnDetection", "apply_update", "render_session", "VOICES",
           "ESPEAK_VOICE_FOR", "threshold_to_vad", "TURN_END_CORRECTION_MS"]


class RealtimeError(CodedError):
    """A client mistake, reported as an ``error`` event; the connection stays open."""

    def __init__(self, code: str, message: str, param: str | None = None, type: str = "invalid_request_error"):
        super().__init__(code, message)
        self.param, self.type = param, type


#: OpenAI's voices, each mapped to an espeak-ng voice so that they sound different here too.
ESPEAK_VOICE_FOR = {
    "alloy": "en-us", "ash": "en-us+m3", "ballad": "en+m1", "coral": "en-us+f3", "echo": "en+m3",
    "sage": "en+f4", "shimmer": "en-us+f2", "verse": "en-us+m1", "marin": "en-us+f5", "cedar": "en+m7",
}
VOICES = tuple(ESPEAK_VOICE_FOR)
SAMPLE_RATE = 24_000


@dataclass(frozen=True)
class TurnDetection:
    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None


@dataclass(frozen=True)
class SessionConfig:
    id: str
    model: str
    instructions: str = "You are a helpful assistant."
    output_modalities: tuple[str, ...] = ("audio",)
    voice: str = "marin"
    speed: float = 1.0
    transcription: dict | None = None
    noise_reduction: dict | None = None
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    tools: tuple = ()
    tool_choice: str | dict = "auto"
    max_output_tokens: int | str = "inf"
    temperature: float = 0.8
    tracing: object = None
    truncation: object = "auto"


def threshold_to_vad(threshold: float) -> dict:
    """How OpenAI's ``threshold`` (0..1, higher = less sensitive) drives labkit's detector.

    The server VAD is labkit's default detector (chapter 04): sub-band SNR over a per-band noise
    floor, which holds in stationary noise down to 5 dB SNR. Its three thresholds, the SNR (dB) that
    starts an utterance, the one that continues it, and the one that continues it after a pause,
    were tuned on the lab's tuning set and are what ``threshold=0.5`` (OpenAI's default) gives.
    ``threshold`` scales all three by
    ``2 ** (2 * (threshold - 0.5))``: 0 halves them (speech is found sooner, noise is taken for it
    more often), 1 doubles them (only clear speech counts). The detector adapts to the background,
    so the absolute level of speech does not enter into it.
    """
    from ..vad import VADConfig

    default = VADConfig()
    scale = 2 ** (2 * (threshold - 0.5))
    return {"start_snr_db": default.start_snr_db * scale, "stop_snr_db": default.stop_snr_db * scale,
            "resume_snr_db": default.resume_snr_db * scale}


#: How much earlier than its last voiced frame server VAD dates a turn's end (``audio_end_ms``
#: is that plus the silence wait). The offline default dates ends 40 ms earlier, chosen for frame
#: F1; a turn-taking server is judged on each turn's boundaries instead, and on the tuning set's
#: replica of the noisy-room test (:func:`labkit.vadtune.realtime_turns`) 0 ms gives 231 of 240
#: turns exact against 230 at 20 ms and 223 at 40 ms (ends in noise come early, not late).
TURN_END_CORRECTION_MS = 0


# ------------------------------------------------------------------------------------------ parsing

def _check_type(value, kinds: tuple[type, ...], param: str, expected: str):
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise RealtimeError("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)
    return value


def _check_known(obj: dict, known: set[str], prefix: str) -> None:
    for key in obj:
        if key not in known:
            raise RealtimeError("unknown_parameter", f"Unknown parameter: '{prefix}.{key}'.", f"{prefix}.{key}")


def _range(value, lo, hi, param: str):
    if value < lo or value > hi:
        raise RealtimeError("invalid_value", f"Invalid value for '{param}': expected a value between {lo} and {hi}, "
                                             f"got {value}.", param)
    return value


def _turn_detection(raw, prefix: str, current: TurnDetection | None) -> TurnDetection | None:
    if raw is None:
        return None
    _check_type(raw, (dict,), prefix, "an object or null")
    _check_known(raw, {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
                       "interrupt_response", "idle_timeout_ms", "eagerness"}, prefix)
    kind = raw.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise RealtimeError("invalid_value", f"Invalid value for '{prefix}.type': supported values are "
                                             "'server_vad' and 'semantic_vad'.", f"{prefix}.type")
    base = current if current is not None and current.type == kind else TurnDetection(type=kind)
    changes = {}
    if kind == "semantic_vad":
        # no semantic model offline: eagerness maps onto how long a pause ends the turn
        eagerness = raw.get("eagerness", "auto")
        pauses = {"low": 1200, "medium": 700, "high": 300, "auto": 700}
        if not isinstance(eagerness, str) or eagerness not in pauses:
            raise RealtimeError("invalid_value", f"Invalid value for '{prefix}.eagerness'.", f"{prefix}.eagerness")
        changes["silence_duration_ms"] = pauses[eagerness]
    if "threshold" in raw:
        changes["threshold"] = _range(_check_type(raw["threshold"], (int, float), f"{prefix}.threshold", "a number"),
                                      0.0, 1.0, f"{prefix}.threshold")
    for name, hi in (("prefix_padding_ms", 10_000), ("silence_duration_ms", 10_000)):
        if name in raw:
            changes[name] = _range(_check_type(raw[name], (int,), f"{prefix}.{name}", "an integer"), 0, hi,
                                   f"{prefix}.{name}")
    for name in ("create_response", "interrupt_response"):
        if name in raw:
            changes[name] = _check_type(raw[name], (bool,), f"{prefix}.{name}", "a boolean")
    if raw.get("idle_timeout_ms") is not None:
        changes["idle_timeout_ms"] = _range(_check_type(raw["idle_timeout_ms"], (int,), f"{prefix}.idle_timeout_ms",
                                                        "an integer"), 5_000, 30_000, f"{prefix}.idle_timeout_ms")
    return replace(base, **changes)


def _pcm_format_ga(raw, param: str) -> None:
    _check_type(raw, (dict,), param, "an object")
    if raw.get("type") != "audio/pcm" or raw.get("rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise RealtimeError("invalid_value", f"Invalid value for '{param}': the lab's emulator speaks "
                                             f"{{\"type\": \"audio/pcm\", \"rate\": {SAMPLE_RATE}}} only.", param)


def _voice(value, param: str) -> str:
    _check_type(value, (str,), param, "a string")
    if value not in ESPEAK_VOICE_FOR:
        raise RealtimeError("invalid_value", f"Invalid value for '{param}': '{value}'. Supported voices are: "
                                             f"{', '.join(VOICES)}.", param)
    return value


def _modalities(value, param: str, beta: bool) -> tuple[str, ...]:
    _check_type(value, (list,), param, "an array")
    allowed = [["text"], ["audio", "text"], ["text", "audio"]] if beta else [["text"], ["audio"]]
    if value not in allowed:
        raise RealtimeError("invalid_value", f"Invalid value for '{param}': expected one of "
                                             f"{' or '.join(map(str, allowed))}.", param)
    return ("text",) if value == ["text"] else ("audio",)


def _max_tokens(value, param: str) -> int | str:
    if value == "inf":
        return value
    return _range(_check_type(value, (int,), param, "an integer or 'inf'"), 1, 4096, param)


def apply_update(current: SessionConfig, session: object, *, beta: bool) -> SessionConfig:
    """The effective session after ``session.update`` (``session`` is the event's payload)."""
    if not isinstance(session, dict):
        raise RealtimeError("invalid_type", "Invalid type for 'session': expected an object.", "session")
    return _apply_beta(current, session) if beta else _apply_ga(current, session)


def _shared_fields(s: dict, current: SessionConfig) -> dict:
    """The settings both dialects name and shape alike."""
    changes: dict = {}
    for name in ("model", "instructions"):
        if name in s:
            changes[name] = _check_type(s[name], (str,), f"session.{name}", "a string")
    try:                                   # the simulated model must be able to use them (labkit.model.tools)
        tools = parse_tools(s["tools"], "session.tools") if "tools" in s else None
        if "tool_choice" in s:
            parse_tool_choice(s["tool_choice"], tools if tools is not None else parse_tools(list(current.tools)),
                              "session.tool_choice")
    except ToolSpecError as e:
        raise RealtimeError("invalid_value", e.message, e.param) from None
    if "tools" in s:
        changes["tools"] = tuple(s["tools"])
    if "tool_choice" in s:
        changes["tool_choice"] = s["tool_choice"]
    return changes


def _apply_ga(cfg: SessionConfig, s: dict) -> SessionConfig:
    if "type" not in s:
        raise RealtimeError("missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type")
    if s["type"] != "realtime":
        raise RealtimeError("invalid_value", "Invalid value for 'session.type': the lab's emulator supports "
                                             "'realtime' sessions only.", "session.type")
    _check_known(s, {"type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
                     "max_output_tokens", "tracing", "truncation", "prompt", "include"}, "session")
    changes = _shared_fields(s, cfg)
    if "output_modalities" in s:
        changes["output_modalities"] = _modalities(s["output_modalities"], "session.output_modalities", beta=False)
    if "max_output_tokens" in s:
        changes["max_output_tokens"] = _max_tokens(s["max_output_tokens"], "session.max_output_tokens")
    if "tracing" in s:
        changes["tracing"] = _tracing(s["tracing"], "session.tracing")
    if "truncation" in s:
        changes["truncation"] = _truncation(s["truncation"], "session.truncation")
    audio = s.get("audio")
    if audio is not None:
        _check_type(audio, (dict,), "session.audio", "an object")
        _check_known(audio, {"input", "output"}, "session.audio")
        inp = audio.get("input") or {}
        _check_type(inp, (dict,), "session.audio.input", "an object")
        _check_known(inp, {"format", "transcription", "noise_reduction", "turn_detection"}, "session.audio.input")
        if "format" in inp:
            _pcm_format_ga(inp["format"], "session.audio.input.format")
        if "transcription" in inp:
            changes["transcription"] = _transcription(inp["transcription"], "session.audio.input.transcription")
        if "noise_reduction" in inp:
            changes["noise_reduction"] = _noise_reduction(inp["noise_reduction"], "session.audio.input.noise_reduction")
        if "turn_detection" in inp:
            changes["turn_detection"] = _turn_detection(inp["turn_detection"], "session.audio.input.turn_detection",
                                                        cfg.turn_detection)
        out = audio.get("output") or {}
        _check_type(out, (dict,), "session.audio.output", "an object")
        _check_known(out, {"format", "voice", "speed"}, "session.audio.output")
        if "format" in out:
            _pcm_format_ga(out["format"], "session.audio.output.format")
        if "voice" in out:
            changes["voice"] = _voice(out["voice"], "session.audio.output.voice")
        if "speed" in out:
            changes["speed"] = _range(_check_type(out["speed"], (int, float), "session.audio.output.speed", "a number"),
                                      0.25, 1.5, "session.audio.output.speed")
    return replace(cfg, **changes)


def _apply_beta(cfg: SessionConfig, s: dict) -> SessionConfig:
    _check_known(s, {"model", "modalities", "instructions", "voice", "input_audio_format", "output_audio_format",
                     "input_audio_transcription", "turn_detection", "tools", "tool_choice", "temperature",
                     "max_response_output_tokens", "input_audio_noise_reduction", "speed", "tracing"}, "session")
    changes = _shared_fields(s, cfg)
    if "modalities" in s:
        changes["output_modalities"] = _modalities(s["modalities"], "session.modalities", beta=True)
    if "voice" in s:
        changes["voice"] = _voice(s["voice"], "session.voice")
    for key in ("input_audio_format", "output_audio_format"):
        if key in s and s[key] != "pcm16":
            raise RealtimeError("invalid_value", f"Invalid value for 'session.{key}': the lab's emulator speaks "
                                                 "'pcm16' (24 kHz) only.", f"session.{key}")
    if "input_audio_transcription" in s:
        changes["transcription"] = _transcription(s["input_audio_transcription"], "session.input_audio_transcription")
    if "turn_detection" in s:
        changes["turn_detection"] = _turn_detection(s["turn_detection"], "session.turn_detection", cfg.turn_detection)
    if "temperature" in s:
        changes["temperature"] = _range(_check_type(s["temperature"], (int, float), "session.temperature", "a number"),
                                        0.6, 1.2, "session.temperature")
    if "max_response_output_tokens" in s:
        changes["max_output_tokens"] = _max_tokens(s["max_response_output_tokens"], "session.max_response_output_tokens")
    if "speed" in s:
        changes["speed"] = _range(_check_type(s["speed"], (int, float), "session.speed", "a number"), 0.25, 1.5,
                                  "session.speed")
    if "input_audio_noise_reduction" in s:
        changes["noise_reduction"] = _noise_reduction(s["input_audio_noise_reduction"],
                                                      "session.input_audio_noise_reduction")
    return replace(cfg, **changes)


def _tracing(raw, param: str):
    """``"auto"``, null, or ``{workflow_name, group_id, metadata}`` (stored as sent, so it must be one)."""
    if raw is None or raw == "auto":
        return raw
    _check_type(raw, (dict,), param, "'auto', an object or null")
    _check_known(raw, {"workflow_name", "group_id", "metadata"}, param)
    for name in ("workflow_name", "group_id"):
        if name in raw:
            _check_type(raw[name], (str,), f"{param}.{name}", "a string")
    if "metadata" in raw:
        _check_type(raw["metadata"], (dict,), f"{param}.metadata", "an object")
    return dict(raw)


def _truncation(raw, param: str):
    """``"auto"``, ``"disabled"`` or ``{"type": "retention_ratio", "retention_ratio": 0..1}``."""
    if isinstance(raw, str) and raw in ("auto", "disabled"):
        return raw
    _check_type(raw, (dict,), param, "'auto', 'disabled' or an object")
    _check_known(raw, {"type", "retention_ratio", "token_limits"}, param)
    if raw.get("type") != "retention_ratio":
        raise RealtimeError("invalid_value", f"Invalid value for '{param}.type': expected 'retention_ratio'.",
                            f"{param}.type")
    _range(_check_type(raw.get("retention_ratio"), (int, float), f"{param}.retention_ratio", "a number"), 0.0, 1.0,
           f"{param}.retention_ratio")
    if "token_limits" in raw:
        _check_type(raw["token_limits"], (dict,), f"{param}.token_limits", "an object")
        _check_known(raw["token_limits"], {"post_instructions"}, f"{param}.token_limits")
        if "post_instructions" in raw["token_limits"]:
            _range(_check_type(raw["token_limits"]["post_instructions"], (int,),
                               f"{param}.token_limits.post_instructions", "an integer"),
                   0, 1_000_000, f"{param}.token_limits.post_instructions")
    return dict(raw)


def _noise_reduction(raw, param: str):
    if raw is None:
        return None
    _check_type(raw, (dict,), param, "an object or null")
    _check_known(raw, {"type"}, param)
    if raw.get("type") not in ("near_field", "far_field"):
        raise RealtimeError("invalid_value", f"Invalid value for '{param}.type': expected 'near_field' or "
                                             f"'far_field'.", f"{param}.type")
    return dict(raw)


def _transcription(raw, param: str) -> dict | None:
    if raw is None:
        return None
    _check_type(raw, (dict,), param, "an object or null")
    _check_known(raw, {"model", "language", "prompt"}, param)
    return dict(raw)


# ------------------------------------------------------------------------------------------ rendering

_PCM = {"type": "audio/pcm", "rate": SAMPLE_RATE}


def render_session(cfg: SessionConfig, *, beta: bool) -> dict:
    """The session object of ``session.created`` / ``session.updated``, in the client's dialect."""
    td = None if cfg.turn_detection is None else asdict(cfg.turn_detection)
    if beta:
        if td is not None:
            td.pop("idle_timeout_ms", None)
        return {"id": cfg.id, "object": "realtime.session", "model": cfg.model,
                "modalities": ["text"] if cfg.output_modalities == ("text",) else ["text", "audio"],
                "instructions": cfg.instructions, "voice": cfg.voice, "input_audio_format": "pcm16",
                "output_audio_format": "pcm16", "input_audio_transcription": copy.deepcopy(cfg.transcription),
                "turn_detection": td, "tools": list(cfg.tools), "tool_choice": cfg.tool_choice,
                "temperature": cfg.temperature, "max_response_output_tokens": cfg.max_output_tokens}
    return {"type": "realtime", "object": "realtime.session", "id": cfg.id, "model": cfg.model,
            "output_modalities": list(cfg.output_modalities), "instructions": cfg.instructions,
            "audio": {"input": {"format": dict(_PCM), "transcription": copy.deepcopy(cfg.transcription),
                                "noise_reduction": copy.deepcopy(cfg.noise_reduction), "turn_detection": td},
                      "output": {"format": dict(_PCM), "voice": cfg.voice, "speed": cfg.speed}},
            "tools": list(cfg.tools), "tool_choice": cfg.tool_choice, "max_output_tokens": cfg.max_output_tokens,
            "tracing": cfg.tracing, "truncation": cfg.truncation, "prompt": None, "include": None}
