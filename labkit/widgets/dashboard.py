"""The instructor's dashboard: who is connected, their live TTFT, a class-wide histogram, and switches.

It talks to the server over HTTP (``/lab/participants``, ``/lab/admin/*``) with the *instructor key*
(not the class token of the join link: that one cannot flip the switches), so it works the same for a
classroom started in the notebook and for one started with ``make demo`` in a terminal. The
histogram is an :class:`~labkit.widgets.offscreen.OffscreenPlot`.

It never shows a secret in full: the join link appears as ``…?token=abcd…``, and the QR code (an
image, dark on white, that any phone scans) carries the whole link for the students.

    dash = Dashboard(room.url, room.instructor_key, join_url=room.join_url)
    dash                        # show it
    dash.start(every_s=2)       # refresh by itself while the class works (dash.stop() to end)
"""

from __future__ import annotations

import asyncio
import contextlib
import html

import httpx
import ipywidgets as widgets

from ..netem import PROFILES
from .offscreen import OffscreenPlot

__all__ = ["Dashboard"]


def _query_token(url: str | None) -> str | None:
    from urllib.parse import parse_qs, urlsplit
    return parse_qs(urlsplit(url).query).get("token", [None])[0] if url else None

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4", "o1", "instant")
#: what each menu switches, and the field of its ``/lab/admin/{what}`` request that names the choice
_SWITCH_FIELDS = {"model": "model", "network": "profile"}


class Dashboard:
    def __init__(self, url: str, token: str | None, *, join_url: str | None = None):
        self.url, self.join_url = url.rstrip("/"), join_url
        self._secrets = [t for t in (token, _query_token(join_url)) if t]
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.state: dict = {}
        self._task: asyncio.Task | None = None
        self.plot = OffscreenPlot((6.5, 2.6), width="60%")
        self.fig, self.image = self.plot.fig, self.plot.image
        self.ax = self.fig.add_subplot()
        self.fig.subplots_adjust(left=0.1, right=0.98, bottom=0.2, top=0.88)
        self.header = self._header()
        self.table = widgets.HTML()
        self.model = widgets.Dropdown(options=MODELS, description="model")
        self.network = widgets.Dropdown(options=sorted(PROFILES), value="lan", description="network")
        self.message = widgets.HTML()
        self._showing_state = False             # True while refresh() sets the menus: showing is not switching
        self.model.observe(lambda change: self._picked("model", change["new"]), names="value")
        self.network.observe(lambda change: self._picked("network", change["new"]), names="value")
        refresh = widgets.Button(description="Refresh", icon="refresh")
        refresh.on_click(lambda _: self.refresh())
        self.widget = widgets.VBox([self.header, widgets.HBox([self.model, self.network, refresh]), self.message,
                                    widgets.HBox([self.table, self.image])])

    def _header(self) -> widgets.Widget:
        if not self.join_url:
            return widgets.HTML(f"<b>Class server</b> {html.escape(self.url)}")
        from ..joinlink import qr_png
        self.qr = widgets.Image(value=qr_png(self.join_url, scale=4), format="png", width="160px")
        link = widgets.HTML(f"<div><b>Join</b>: <code>{html.escape(self.masked(self.join_url))}</code><br>"
                            f"<small>scan the code, or share the full link from the instructor's terminal</small></div>")
        return widgets.HBox([self.qr, link], layout=widgets.Layout(align_items="center"))

    def masked(self, text: str) -> str:
        """``text`` with every secret this dashboard knows cut to its first characters."""
        from ..joinlink import mask_secret
        for secret in self._secrets:
            text = mask_secret(text, secret)
        return text

    def _ipython_display_(self) -> None:
        from IPython.display import display
        self.refresh()
        display(self.widget)

    # ---- data -------------------------------------------------------------------------------
    def refresh(self) -> dict:
        """Fetch the class's state and redraw (safe to call from any cell)."""
        try:
            self.state = httpx.get(self.url + "/lab/participants", headers=self.headers, timeout=10).json()
        except httpx.HTTPError as e:
            self.message.value = (f"<span style='color:#b00020'>cannot reach the class server: "
                                  f"{html.escape(self.masked(str(e)))}</span>")
            return self.state
        self.table.value = self._table_html(self.state["participants"])
        self._draw(self.state["ttfts_ms"])
        self._show_switches(self.state.get("model"), self.state.get("network"))
        return self.state

    def _show_switches(self, model: str | None, network: str | None) -> None:
        """The menus show what the server runs now (a terminal or another notebook may have switched it
        with the instructor key); setting them here switches nothing."""
        self._showing_state = True
        try:
            if model in self.model.options:
                self.model.value = model
            if network in self.network.options:
                self.network.value = network
        finally:
            self._showing_state = False

    def _picked(self, what: str, value: str) -> None:
        if not self._showing_state:
            self._switch(what, value)

    def _switch(self, what: str, value: str) -> None:
        body = {_SWITCH_FIELDS[what]: value}
        try:                                    # a menu's callback: an error must show here, not vanish in a log
            r = httpx.post(f"{self.url}/lab/admin/{what}", json=body, headers=self.headers, timeout=10)
        except httpx.HTTPError as e:
            self.message.value = (f"<span style='color:#b00020'>cannot switch the {what}: "
                                  f"{html.escape(self.masked(str(e)))}</span>")
            return
        if r.status_code >= 400:
            self.message.value = f"<span style='color:#b00020'>{html.escape(self.masked(r.json()['error']['message']))}</span>"
        else:
            self.message.value = f"<i>everyone's {what} is now <b>{html.escape(next(iter(r.json().values())))}</b></i>"

    def set_model(self, name: str) -> None:
        """Switch everyone's model, as picking ``name`` in the menu does."""
        self._set(self.model, "model", name)

    def set_network(self, name: str) -> None:
        """Switch everyone's network, as picking ``name`` in the menu does."""
        self._set(self.network, "network", name)

    def _set(self, menu: widgets.Dropdown, what: str, value: str) -> None:
        """Pick ``value`` in ``menu`` (its observer switches the server); when the menu shows it already,
        switch anyway: the server may have been switched since, and an observer fires only on a change."""
        if menu.value == value:
            self._switch(what, value)
        else:
            menu.value = value

    @staticmethod
    def _table_html(rows: list[dict]) -> str:
        head = "".join(f"<th style='padding:2px 8px'>{h}</th>" for h in
                       ("who", "online", "requests", "room msgs", "TTFT last", "TTFT p50"))
        body = ""
        for r in sorted(rows, key=lambda r: r["user"]):
            cells = (r["user"], "●" if r["connections"] else "○", r["requests"], r["room_messages"],
                     "" if r["ttft_ms_last"] is None else f"{r['ttft_ms_last']:.0f} ms",
                     "" if r["ttft_ms_p50"] is None else f"{r['ttft_ms_p50']:.0f} ms")
            body += "<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        return f"<table><tr>{head}</tr>{body}</table>" if rows else "<i>nobody has joined yet</i>"

    def _draw(self, ttfts_ms: list[float]) -> None:
        ax = self.ax
        ax.clear()
        if ttfts_ms:
            ax.hist(ttfts_ms, bins=min(30, max(5, len(ttfts_ms) // 3)), color="tab:blue", alpha=0.8)
            ordered = sorted(ttfts_ms)
            p50, p90 = ordered[len(ordered) // 2], ordered[int(0.9 * (len(ordered) - 1))]
            for value, name in ((p50, "p50"), (p90, "p90")):
                ax.axvline(value, color="tab:red", ls="--", lw=1)
                ax.text(value, ax.get_ylim()[1] * 0.9, f" {name} {value:.0f}", fontsize=8, color="tab:red")
        ax.set_xlabel("time to first token (ms), server side")
        ax.set_title(f"the class's last {len(ttfts_ms)} replies", fontsize=9)
        self.plot.show()

    def snapshot(self):
        """The histogram as a static image (stored in a notebook's output, unlike a widget)."""
        self.refresh()
        return self.plot.snapshot()

    # ---- live ------------------------------------------------------------------------------
    def start(self, every_s: float = 2.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.to_thread(self.refresh)
                await asyncio.sleep(every_s)
        self.stop()
        self._task = asyncio.get_running_loop().create_task(loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            self.widget.close()
