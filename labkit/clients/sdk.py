"""Streaming straight from the model API with the official ``openai`` SDK, timed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .timing import Clock, TimedToken

__all__ = ["sdk_chat"]


class sdk_chat:
    """``client.chat.completions.create(stream=True)``, as timed tokens (works local or real)."""

    def __init__(self, client, prompt: str | list[dict], *, model: str = "gpt-4o-mini", **params):
        self.client, self.model, self.params = client, model, params
        self.messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        self.finish_reason: str | None = None
        self.usage = None

    def __aiter__(self) -> AsyncIterator[TimedToken]:
        return self._run().__aiter__()

    async def _run(self) -> AsyncIterator[TimedToken]:
        clock = Clock()
        stream = await self.client.chat.completions.create(model=self.model, messages=self.messages, stream=True,
                                                           **self.params)
        async with stream:
            seq = 0
            async for chunk in stream:
                t = clock.elapsed()
                if chunk.usage is not None:
                    self.usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    yield TimedToken(choice.delta.content, t, clock.start_wall + t, seq)
                    seq += 1
                if choice.finish_reason:
                    self.finish_reason = choice.finish_reason
