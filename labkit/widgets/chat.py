"""An interactive WebSocket chat for notebooks, that also runs headless (in CI, under nbval).

The box is an ``anywidget`` (front end: ``chat.js``) and the browser owns its text box: Enter (or
Send) empties the box in the page at once and sends the question to the kernel as a message, so a
question typed while the kernel is busy is never overwritten or lost (the earlier ipywidgets box was
emptied by the kernel, and whatever was typed before that landed vanished). Questions asked while an
answer streams wait in the page, shown as *queued*, and are answered in the order they were asked.
A notebook or a test can ``await box.ask("...")`` directly, with no browser at all.

Widget messages may arrive on another thread and loop than the cell that made the box (ipykernel 7
dispatches comm messages on its shell-channel thread or a subshell). The WebSocket belongs to the loop
it was opened on, so every question is handed to *the loop the box was made on*, in order; running
the second one on another loop was what raised "Future attached to a different loop" and lost it.
Whatever goes wrong is shown in the box (the transcript and the status line), never swallowed.

The page applies the kernel's widget updates one message at a time, so what must be seen together goes
in one update (``hold_sync``): a new question with its busy status, an error row with the error status.
Sent apart, the page showed the next question's empty answer under the last answer's idle status line
for a moment (and a browser test that read the page then saw an empty answer as the final one).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import anywidget
import traitlets

from ..clients.app import ChatError, WSChat
from .loop import kernel_loop

__all__ = ["ChatBox", "ChatView"]

log = logging.getLogger(__name__)


class ChatView(anywidget.AnyWidget):
    """What the browser shows: the transcript's rows, a status line; it sends ``{"type": "ask"}``."""

    _esm = Path(__file__).with_name("chat.js")
    title = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    #: ``[[who, text], ...]`` with ``who`` in you / assistant / error
    rows = traitlets.List().tag(sync=True)
    status = traitlets.Unicode("not connected").tag(sync=True)
    #: idle, busy or error (the page colours the status line by it)
    status_kind = traitlets.Unicode("idle").tag(sync=True)


class ChatBox:
    def __init__(self, base_url: str, title: str = "Lab chat over WebSocket"):
        self.base_url = base_url
        self.transcript: list[tuple[str, str]] = []
        self.last_ttft_s: float | None = None
        self.errors: list[str] = []
        self._chat: WSChat | None = None
        self._loop = kernel_loop()
        self._lock = asyncio.Lock()
        self.widget = ChatView(title=title, placeholder="Ask about SSE, WebSockets, latency, VAD…")
        self.widget.on_msg(self._on_message)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    @property
    def status(self) -> str:
        """The status line as the page shows it (``first token after … ms``, ``error: …``)."""
        return self.widget.status

    def _on_message(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("type") == "ask":
            text = str(content.get("text") or "").strip()
            if text:
                self.submit(text, request_id=content.get("id"))

    def submit(self, text: str, request_id=None):
        """What Enter and Send do: queue ``text`` on the box's own loop (safe from any thread).
        Returns a ``concurrent.futures.Future`` of the reply."""
        future = asyncio.run_coroutine_threadsafe(self.ask(text, request_id=request_id), self._loop)
        future.add_done_callback(self._report_crash)
        return future

    def _report_crash(self, future) -> None:
        if not future.cancelled() and future.exception() is not None:     # ask() shows its own errors;
            self._show_error(f"{type(future.exception()).__name__}: {future.exception()}")   # this is the rest

    async def ask(self, text: str, *, request_id=None) -> str:
        """Send ``text`` over the WebSocket and stream the reply into the transcript; returns the reply
        (or the error's message, which the box then shows in red). Questions wait their turn, in order."""
        async with self._lock:
            self.transcript.append(("you", text))
            self.transcript.append(("assistant", ""))
            with self.widget.hold_sync():              # one update: the page never shows the new question
                self._render()                         # under the last answer's idle status line
                self._set_status("assistant is typing…", "busy")
            if request_id is not None:                 # the page takes it out of its queue
                self.widget.send({"type": "started", "id": request_id})
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
                self._set_status(f"first token after {1000 * ttft_s:.0f} ms" if ttft_s is not None
                                 else "the reply was empty", "idle")
            except ChatError as e:
                self._show_error(e.message)
            except Exception as e:             # a dropped socket, a stopped server: say so, and reconnect next time
                self._show_error(f"{type(e).__name__}: {e}")
                await self._drop_connection()
            self._render()
            return self.transcript[-1][1]

    def _set_status(self, text: str, kind: str) -> None:
        with self.widget.hold_sync():                  # the line and its colour reach the page together
            self.widget.status, self.widget.status_kind = text, kind

    def _show_error(self, message: str) -> None:
        log.warning("chat box: %s", message)
        self.errors.append(message)
        if self.transcript and self.transcript[-1] == ("assistant", ""):
            self.transcript[-1] = ("error", message)
        else:
            self.transcript.append(("error", message))
        with self.widget.hold_sync():
            self._render()
            self._set_status(f"error: {message}", "error")

    async def _drop_connection(self) -> None:
        chat, self._chat = self._chat, None
        if chat is not None:
            try:
                await chat.__aexit__(None, None, None)
            except Exception:                  # it is already broken; the error has been shown
                pass

    def _render(self) -> None:
        self.widget.rows = [[who, text] for who, text in self.transcript]

    async def close(self) -> None:
        if self._chat is not None:
            await self._chat.__aexit__(None, None, None)
            self._chat = None
            self._set_status("disconnected", "idle")
