"""An interactive WebSocket chat for notebooks, that also runs headless (in CI, under nbval).

Typing in the box and pressing Enter (or Send) calls :meth:`ChatBox.ask` on the kernel's event
loop; a notebook or a test can ``await box.ask("...")`` directly, with no browser at all.
"""

from __future__ import annotations

import asyncio
import html

import ipywidgets as widgets

from ..clients.app import ChatError, WSChat

__all__ = ["ChatBox"]


class ChatBox:
    def __init__(self, base_url: str, title: str = "Lab chat over WebSocket"):
        self.base_url = base_url
        self.transcript: list[tuple[str, str]] = []
        self.last_ttft_s: float | None = None
        self._chat: WSChat | None = None
        self._lock = asyncio.Lock()
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
            asyncio.ensure_future(self.ask(text))

    async def ask(self, text: str) -> str:
        """Send ``text`` over the WebSocket and stream the reply into the transcript; returns the reply."""
        async with self._lock:
            if self._chat is None:
                self._chat = await WSChat(self.base_url).__aenter__()
            self.transcript.append(("you", text))
            self.transcript.append(("assistant", ""))
            self._status.value = "<i>assistant is typing…</i>"
            try:
                ask = self._chat.ask(text)
                async for tok in ask:
                    if tok.seq == 0:
                        self.last_ttft_s = tok.t
                    self.transcript[-1] = ("assistant", self.transcript[-1][1] + tok.text)
                    self._render()
                self._status.value = f"first token after {1000 * self.last_ttft_s:.0f} ms"
            except ChatError as e:
                self.transcript[-1] = ("error", e.message)
                self._status.value = f"<span style='color:#b00'>error: {html.escape(e.message)}</span>"
            self._render()
            return self.transcript[-1][1]

    def _render(self) -> None:
        rows = [f"<div><b>{who}:</b> {html.escape(text)}</div>" for who, text in self.transcript]
        self._history.value = "".join(rows)

    async def close(self) -> None:
        if self._chat is not None:
            await self._chat.__aexit__(None, None, None)
            self._chat = None
            self._status.value = "<i>disconnected</i>"
