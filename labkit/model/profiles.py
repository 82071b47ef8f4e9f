"""Latency profiles of the simulated model, and the OpenAI model names mapped onto them.

A profile says how long a model takes, not what it says:

* time to first token (TTFT) = ``ttft_base_s + prefill_s_per_token * prompt_tokens``
  (prefill is the work of reading the prompt, so TTFT grows with prompt length), then
* one inter-token delay per further token: ``itl_s`` on average, spread by ``jitter``
  (the standard deviation as a fraction of ``itl_s``), never below ``itl_min_s``.

The numbers are chosen to feel like hosted models of each class (small fast models start in
~100 ms and stream ~60 tokens/s; large ones take ~0.5 s and ~25 tokens/s); they are settings of
the simulation, not measurements of OpenAI's service. Chapter 06 measures them back through
the wire and recovers these numbers by fitting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = [
    "ContextLengthExceeded",
    "LatencyProfile",
    "PROFILES",
    "MODEL_ALIASES",
    "UnknownModelError",
    "resolve_model",
    "list_models",
]


@dataclass(frozen=True)
class LatencyProfile:
    name: str
    description: str
    ttft_base_s: float
    prefill_s_per_token: float
    itl_s: float
    jitter: float = 0.25
    itl_min_s: float = 0.0
    context_window: int = 128_000

    def ttft_s(self, prompt_tokens: int) -> float:
        """Mean time to first token for a prompt of ``prompt_tokens`` tokens (before jitter)."""
        return self.ttft_base_s + self.prefill_s_per_token * max(0, prompt_tokens)

    def scaled(self, factor: float) -> "LatencyProfile":
        """The same profile with every delay multiplied by ``factor`` (tests use small factors)."""
        return replace(
            self,
            ttft_base_s=self.ttft_base_s * factor,
            prefill_s_per_token=self.prefill_s_per_token * factor,
            itl_s=self.itl_s * factor,
            itl_min_s=self.itl_min_s * factor,
        )

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, LatencyProfile] = {
    p.name: p
    for p in (
        LatencyProfile(
            name="fast-small",
            description="A small, fast model (gpt-4o-mini class): quick to start, quick to stream.",
            ttft_base_s=0.12,
            prefill_s_per_token=0.00015,
            itl_s=0.016,
            jitter=0.25,
            itl_min_s=0.004,
        ),
        LatencyProfile(
            name="balanced",
            description="A mid-size flagship model (gpt-4o class).",
            ttft_base_s=0.25,
            prefill_s_per_token=0.0003,
            itl_s=0.025,
            jitter=0.3,
            itl_min_s=0.006,
        ),
        LatencyProfile(
            name="slow-large",
            description="A large or reasoning-heavy model (gpt-4 / o-series class): slow start, slow stream.",
            ttft_base_s=0.6,
            prefill_s_per_token=0.0008,
            itl_s=0.045,
            jitter=0.35,
            itl_min_s=0.01,
        ),
        LatencyProfile(
            name="instant",
            description="No simulated latency at all: for measuring the transport itself.",
            ttft_base_s=0.0,
            prefill_s_per_token=0.0,
            itl_s=0.0,
            jitter=0.0,
        ),
    )
}

#: OpenAI model names used in tutorials, mapped onto the profiles, so tutorial code runs unchanged.
#: Each profile is also a model name of its own.
MODEL_ALIASES: dict[str, str] = {
    "gpt-4o-mini": "fast-small",
    "gpt-4.1-mini": "fast-small",
    "gpt-4.1-nano": "fast-small",
    "gpt-3.5-turbo": "fast-small",
    "gpt-5-mini": "fast-small",
    "gpt-5-nano": "fast-small",
    "gpt-4o": "balanced",
    "gpt-4.1": "balanced",
    "gpt-4-turbo": "balanced",
    "gpt-5": "balanced",
    "chatgpt-4o-latest": "balanced",
    "gpt-4": "slow-large",
    "o1": "slow-large",
    "o3": "slow-large",
    "o3-mini": "slow-large",
    "o4-mini": "slow-large",
    # Realtime (speech-to-speech) models: their text schedule; the emulator adds speech timing
    "gpt-realtime": "balanced",
    "gpt-4o-realtime-preview": "balanced",
    "gpt-realtime-mini": "fast-small",
    "gpt-4o-mini-realtime-preview": "fast-small",
}


class ContextLengthExceeded(ValueError):
    """The prompt has more tokens than the model's context window (OpenAI's ``context_length_exceeded``)."""

    def __init__(self, tokens: int, window: int):
        super().__init__(f"This model's maximum context length is {window} tokens. However, your messages resulted "
                         f"in {tokens} tokens. Please reduce the length of the messages.")
        self.tokens, self.window = tokens, window


class UnknownModelError(LookupError):
    """Raised for a model name that is neither a profile nor an alias."""

    def __init__(self, model: str):
        super().__init__(model)
        self.model = model


def resolve_model(model: str) -> LatencyProfile:
    """The profile behind a model name; dated snapshots (``gpt-4o-2024-08-06``) resolve to their family."""
    if model in PROFILES:
        return PROFILES[model]
    if model in MODEL_ALIASES:
        return PROFILES[MODEL_ALIASES[model]]
    # Dated snapshots: the longest alias that prefixes the name, followed by "-<digits>".
    for alias in sorted(MODEL_ALIASES, key=len, reverse=True):
        rest = model[len(alias):]
        if model.startswith(alias) and rest.startswith("-") and rest[1:2].isdigit():
            return PROFILES[MODEL_ALIASES[alias]]
    raise UnknownModelError(model)


def list_models() -> list[dict]:
    """Every model name the local backend answers to, with its profile (what ``GET /v1/models`` shows)."""
    names = list(PROFILES) + list(MODEL_ALIASES)
    return [{"id": name, "profile": resolve_model(name).as_dict()} for name in names]
