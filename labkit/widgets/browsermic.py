"""The microphone of the browser JupyterLab runs in, as a labkit audio source in the kernel.

On JupyterHub, Binder or Colab (and in CI) the kernel's machine has no sound card, but the learner's
browser has a microphone. :class:`BrowserMicrophone` is an ``anywidget``: its front end
(``browsermic.js``) captures the microphone in an AudioWorklet (the lab page's own capture code,
``labkit/server/static/voice-worklets.js``), resamples to ``sample_rate`` and sends PCM16 chunks to
the kernel as binary buffers. ``mic.source`` is a :class:`~labkit.audio.PushSource`, an
:class:`~labkit.audio.AudioSource` like the microphone and WAV sources::

    mic = BrowserMicrophone(sample_rate=16_000); mic              # shows Start / Stop and a level meter
    scope = LiveVAD(mic.source); scope; scope.start()              # chapter 04's live RMS plot

    mic = BrowserMicrophone(sample_rate=24_000)                    # the Realtime API's rate
    task = asyncio.ensure_future(client.stream_input(mic.source))  # chapter 05's RealtimeClient

Run consumers as background tasks (``scope.start()``, ``asyncio.ensure_future``): the kernel reads
the widget's messages between cells, so a cell that *awaits* the microphone would wait for audio
that cannot arrive until it returns. Under nbval there is no browser, and the chapters use the WAV
source instead.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from ..audio.push import PushSource
from ..resources import package_file

__all__ = ["BrowserMicrophone", "WORKLET_JS"]

WORKLET_JS = package_file("server", "static", "voice-worklets.js")


class BrowserMicrophone(anywidget.AnyWidget):
    _esm = Path(__file__).with_name("browsermic.js")
    _worklet = traitlets.Unicode("").tag(sync=True)
    sample_rate = traitlets.Int(16_000).tag(sync=True)
    chunk_ms = traitlets.Int(20).tag(sync=True)
    #: How much audio each comm message carries. Every message costs the kernel a round of its shell
    #: loop (and two status messages); at 20 ms a busy kernel falls behind and starves its tasks.
    send_ms = traitlets.Int(100).tag(sync=True)
    status = traitlets.Unicode("press Start and allow the microphone").tag(sync=True)

    def __init__(self, sample_rate: int = 16_000, chunk_ms: int = 20, *, max_seconds: float | None = None, **kwargs):
        super().__init__(sample_rate=sample_rate, chunk_ms=chunk_ms, _worklet=WORKLET_JS.read_text(), **kwargs)
        self.source = PushSource(sample_rate, chunk_ms, max_seconds=max_seconds, name="browser microphone")
        self.chunks_received = 0
        self.on_msg(self._on_message)

    def _on_message(self, _widget, content, buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "pcm" and buffers:
            self.source.push(buffers[0])
            self.chunks_received += 1
        elif kind == "end":
            self.source.end()

    @property
    def seconds_received(self) -> float:
        return self.source.pushed / self.sample_rate

    def start(self) -> None:
        """Ask the front end to start capturing (the browser may still ask the user for permission)."""
        self.send({"type": "start"})

    def stop(self) -> None:
        self.send({"type": "stop"})
