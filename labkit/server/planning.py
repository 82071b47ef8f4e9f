"""Planning a reply without freezing the server: big prompts are tokenized off the event loop, and a
prompt longer than the model's context window is refused the way OpenAI refuses it.

Tokenizing is pure Python (a few seconds for megabytes of text), so a prompt of more than
:data:`INLINE_CHARS` characters is planned in a worker thread, where the event loop keeps serving
everyone else meanwhile. Small prompts, nearly all of them, stay inline (a thread hop costs more).
"""

from __future__ import annotations

import asyncio

from ..model.profiles import ContextLengthExceeded, LatencyProfile
from ..model.schedule import CompletionPlan, plan_completion

__all__ = ["ContextLengthExceeded", "plan_reply", "prompt_chars", "INLINE_CHARS"]

INLINE_CHARS = 20_000


def prompt_chars(messages: list[dict]) -> int:
    """Characters of text in ``messages`` (string contents and text parts)."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text") or "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return total


async def plan_reply(messages: list[dict], profile: LatencyProfile, max_tokens: int | None = None,
                     **options) -> CompletionPlan:
    """:func:`~labkit.model.schedule.plan_completion` (``options``: seed, temperature, tools, ...), off the
    loop for a big prompt; raises :class:`ContextLengthExceeded` for one the model could not read."""
    kwargs = dict(options, max_tokens=max_tokens)
    if prompt_chars(messages) <= INLINE_CHARS:
        plan = plan_completion(messages, profile, **kwargs)
    else:
        plan = await asyncio.to_thread(plan_completion, messages, profile, **kwargs)
    if plan.prompt_tokens > profile.context_window:
        raise ContextLengthExceeded(plan.prompt_tokens, profile.context_window)
    return plan
