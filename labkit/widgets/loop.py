"""The event loop a widget belongs to.

Jupyter runs each cell inside its kernel's event loop, but ipywidgets callbacks (a button press, a
text submitted) can arrive on another thread, with another loop or none. A widget remembers the loop
of the cell that made it and hands its work there with ``asyncio.run_coroutine_threadsafe``, so its
connections and tasks always live on one loop.
"""

from __future__ import annotations

import asyncio

__all__ = ["kernel_loop"]


def kernel_loop() -> asyncio.AbstractEventLoop:
    """The running loop (in a notebook: the kernel's), else this thread's default loop (a script)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop()
