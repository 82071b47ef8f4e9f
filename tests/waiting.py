"""Waiting for a condition in a test: no fixed sleep (a slow machine only makes it take longer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], timeout_s: float = 30.0, what: str = "the condition") -> None:
    """Return once ``condition()`` is true; AssertionError naming ``what`` after a generous ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what} never held in {timeout_s:g} s"
        await asyncio.sleep(0.02)
