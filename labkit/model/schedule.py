"""The simulated model's plan for one completion: which tokens, and when each one is due.

Pure and deterministic: ``plan_completion`` takes the request's messages, a latency profile and a
seed, and returns the tokens with their due times (seconds after the request arrived). No clock is
read and nothing sleeps here; the server adapter sleeps until each due time. Keeping the schedule
pure is what lets tests check TTFT-vs-prompt-length and seeding exactly, without waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .profiles import LatencyProfile
from .responder import Responder, default_responder
from .tokenizer import count_message_tokens, tokenize
from .tools import Tool, ToolCall, answer_from_tool_results, decide_tool_calls, structured_reply

__all__ = ["CompletionPlan", "plan_completion", "plan_tool_calls"]


@dataclass(frozen=True)
class CompletionPlan:
    tokens: tuple[str, ...]
    due_s: tuple[float, ...]        # when each token is due, seconds after the request arrived
    finish_reason: str              # "stop"; "length" when max_tokens cut the answer; "tool_calls"
    prompt_tokens: int
    #: the function calls made instead of a text answer; their arguments are the tokens, in order,
    #: ``call_of_token[i]`` saying which call token ``i`` belongs to
    tool_calls: tuple[ToolCall, ...] = ()
    call_of_token: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    @property
    def ttft_s(self) -> float:
        return self.due_s[0] if self.due_s else 0.0

    @property
    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def plan_completion(
    messages: list[dict],
    profile: LatencyProfile,
    *,
    seed: int | None = None,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    responder: Responder | None = None,
    tools: tuple[Tool, ...] = (),
    tool_choice: str = "auto",
    parallel_tool_calls: bool = True,
    response_format: dict | None = None,
) -> CompletionPlan:
    """Plan the reply to ``messages``: the same seed gives the same text and the same timings.

    ``seed=None`` draws a fresh seed, as an unseeded API call would. With ``tools`` the model may
    call functions instead of answering (:mod:`labkit.model.tools`); a conversation that ends with
    tool results is answered from them; ``response_format`` makes the answer JSON.
    """
    rng = random.Random(seed if seed is not None else random.SystemRandom().randrange(2**63))
    prompt_tokens = count_message_tokens(messages)
    calls = decide_tool_calls(messages, tools, tool_choice, parallel_tool_calls, rng) if tools else ()
    if calls:
        return _calls_plan(calls, prompt_tokens, profile, rng)
    text = answer_from_tool_results(messages)
    if text is None:
        text = (responder or default_responder()).reply(messages, rng, temperature)
    if response_format is not None:
        text = structured_reply(text, response_format, messages, rng)
    tokens = tokenize(text)
    finish_reason = "stop"
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens, finish_reason = tokens[:max_tokens], "length"
    return CompletionPlan(
        tokens=tuple(tokens),
        due_s=tuple(_due_times(len(tokens), prompt_tokens, profile, rng)),
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
    )


def plan_tool_calls(calls: tuple[ToolCall, ...], messages: list[dict], profile: LatencyProfile, *,
                    seed: int | None = None) -> CompletionPlan:
    """The timing of function calls decided elsewhere (the Realtime session decides them itself)."""
    rng = random.Random(seed if seed is not None else random.SystemRandom().randrange(2**63))
    return _calls_plan(calls, count_message_tokens(messages), profile, rng)


def _calls_plan(calls, prompt_tokens: int, profile: LatencyProfile, rng: random.Random) -> CompletionPlan:
    tokens, owner = [], []
    for k, call in enumerate(calls):
        pieces = tokenize(call.arguments)
        tokens += pieces
        owner += [k] * len(pieces)
    return CompletionPlan(tokens=tuple(tokens), due_s=tuple(_due_times(len(tokens), prompt_tokens, profile, rng)),
                          finish_reason="tool_calls", prompt_tokens=prompt_tokens, tool_calls=tuple(calls),
                          call_of_token=tuple(owner))


def _due_times(n: int, prompt_tokens: int, profile: LatencyProfile, rng: random.Random) -> list[float]:
    """Cumulative due times: TTFT (with jitter) for the first token, then jittered gaps."""
    if n == 0:
        return []
    ttft = max(0.0, rng.gauss(profile.ttft_s(prompt_tokens), profile.jitter * profile.ttft_base_s / 2))
    times = [ttft]
    for _ in range(n - 1):
        gap = max(profile.itl_min_s, rng.gauss(profile.itl_s, profile.jitter * profile.itl_s))
        times.append(times[-1] + gap)
    return times
