"""An interactive WebSocket chat for notebooks, that also runs headless (in CI, under nbval).

Typing in the box and pressing Enter (or Send) calls :meth:`ChatBox.ask` on the kernel's event
loop; a notebook or a test can ``await box.ask("...")`` directly, with no browser at all.

Widget callbacks may run on another thread and loop than the cell that made the box (ipykernel 7
dispatches comm messages on its shell-channel thread or a subshell). The WebSocket belongs to the loop
it was opened on, so every question is handed to *the loop the box was made on*, in order; running
the second one on another loop was what raised "Future attached to a different loop" and lost it.
Whatever goes wrong is shown in the box (the transcript and the status line), never swallowed.
"""

from __future__ import annotations

import asyncio
import html
import logging

import ipywidgets as widgets

from ..clients.app import ChatError, WSChat
from .loop import kernel_loop

__all__ = ["ChatBox"]

log = logging.getLogger(__name__)


class ChatBox:
    def __init__(self, base_url: str, title: str = "Lab chat over WebSocket"):
        self.base_url = base_url
        self.transcript: list[tuple[str, str]] = []
        self.last_ttft_s: float | None = None
        self._chat: WSChat | None = None
        self._loop = kernel_loop()
        self._lock = asyncio.Lock()
        self.errors: list[str] = []
        self._history = widgets.HTML(layout=widgets.Layout(height="220px", overflow="auto", border="1px solid #ccc",
                                                           padding="4px"))
        self._input = widgets.Text(placeholder="Ask about SSE, WebSockets, latency, VAD…",
                                   layout=widgets.Layout(width="70%"))
        self._send = widgets.Button(description="Send", button_style="primary")
        self._status = widgets.HTML("<i>not connected</i>")
        self._input.continuous_update = False
        self._input.observe(self._on_submit, names="value")
        self._send.on_click(lambda _: self._on_submit({"new": self._input.value}))
        self.widget = widgets.VBox([widgets.HTML(f"<b>{html.escape(title)}</b>"), self._history,
                                    widgets.HBox([self._input, self._send]), self._status])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _on_submit(self, change) -> None:
        text = (change.get("new") or "").strip()
        if text:
            self._input.value = ""
            self.submit(text)

    def submit(self, text: str):
        """What Enter and Send do: queue ``text`` on the box's own loop (safe from any thread).
        Returns a ``concurrent.futures.Future`` of the reply."""
        future = asyncio.run_coroutine_threadsafe(self.ask(text), self._loop)
        future.add_done_callback(self._report_crash)
        return future

    def _report_crash(self, future) -> None:
        if not future.cancelled() and future.exception() is not None:     # ask() shows its own errors;
            self._show_error(f"{type(future.exception()).__name__}: {future.exception()}")   # this is the rest

    async def ask(self, text: str) -> str:
        """Send ``text`` over the WebSocket and stream the reply into the transcript; returns the reply
        (or the error's message, which the box then shows in red)."""
        async with self._lock:
            self.transcript.append(("you", text))
            self.transcript.append(("assistant", ""))
            self._render()
            self._status.value = "<i>assistant is typing…</i>"
            ttft_s = None
            try:
                if self._chat is None:
                    self._chat = await WSChat(self.base_url).__aenter__()
                async for tok in self._chat.ask(text):
                    if tok.seq == 0:
                        ttft_s = tok.t
                    self.transcript[-1] = ("assistant", self.transcript[-1][1] + tok.text)
                    self._render()
                self.last_ttft_s = ttft_s
                self._status.value = (f"first token after {1000 * ttft_s:.0f} ms" if ttft_s is not None
                                      else "the reply was empty")
            except ChatError as e:
                self._show_error(e.message)
            except Exception as e:             # a dropped socket, a stopped server: say so, and reconnect next time
                self._show_error(f"{type(e).__name__}: {e}")
                await self._drop_connection()
            self._render()
            return self.transcript[-1][1]

    def _show_error(self, message: str) -> None:
        log.warning("chat box: %s", message)
        self.errors.append(message)
        if self.transcript and self.transcript[-1] == ("assistant", ""):
            self.transcript[-1] = ("error", message)
        else:
            self.transcript.append(("error", message))
        self._render()
        self._status.value = f"<span style='color:#b00'>error: {html.escape(message)}</span>"

    async def _drop_connection(self) -> None:
        chat, self._chat = self._chat, None
        if chat is not None:
            try:
                await chat.__aexit__(None, None, None)
            except Exception:                  # it is already broken; the error has been shown
                pass

    def _render(self) -> None:
        colour = {"error": " style='color:#b00'"}
        rows = [f"<div class='labkit-chat-{who}'{colour.get(who, '')}><b>{who}:</b> {html.escape(text)}</div>"
                for who, text in self.transcript]
        self._history.value = "".join(rows)

    async def close(self) -> None:
        if self._chat is not None:
            await self._chat.__aexit__(None, None, None)
            self._chat = None
            self._status.value = "<i>disconnected</i>"

