"""A live view of the VAD: rolling RMS, thresholds, speech regions and events, with sliders.

One matplotlib ``Figure`` is drawn off-screen (an :class:`~labkit.widgets.offscreen.OffscreenPlot`: nothing
leaks, nothing is shown twice) and each frame is pushed into an ``ipywidgets.Image`` in place: no
``clear_output``, so no flicker. The audio comes from any :class:`~labkit.audio.AudioSource`: the
microphone when there is one, else a file at real-time pace. ``await scope.run(seconds=4)`` runs a
bounded session (what CI does, headless); the Start and Stop buttons do the same interactively.
Button callbacks hand the session to the loop the widget was made on (they may arrive on another
thread), and an error in a session is shown in the widget's status line, never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections import deque

import ipywidgets as widgets
import numpy as np

from ..audio.sources import AudioSource, open_input
from ..vad import SpeechEnd, SpeechStart, VADConfig, VoiceActivityDetector
from .loop import kernel_loop
from .offscreen import OffscreenPlot

__all__ = ["LiveVAD"]

log = logging.getLogger(__name__)


def _db(x) -> np.ndarray:
    return 20 * np.log10(np.maximum(np.asarray(x, dtype=float), 1e-5))


class LiveVAD:
    def __init__(self, source: AudioSource | None = None, config: VADConfig | None = None, *, window_s: float = 8.0,
                 fps: float = 6.0, max_seconds: float = 120.0):
        self.source = source or open_input(max_seconds=max_seconds)
        self.config = config or VADConfig(method="rms", frame_ms=10, sample_rate=self.source.sample_rate)
        self.window_s, self.fps, self.max_seconds = window_s, fps, max_seconds
        self.vad = VoiceActivityDetector(self.config)
        self.trace: deque[tuple[float, float, float, float]] = deque()   # (t, rms, start thr, stop thr)
        self.segments: list[list[float | None]] = []                      # [start_s, end_s or None]
        self.events: list[SpeechStart | SpeechEnd] = []
        self._task = None                 # the Start button's session (a concurrent.futures.Future)
        self._loop = kernel_loop()
        self.error: str | None = None
        self._build_figure()
        self._build_controls()

    # ----------------------------------------------------------------------------- ui
    def _build_figure(self) -> None:
        self.plot = OffscreenPlot((8.5, 3.0), width="100%")
        self.fig, self.image = self.plot.fig, self.plot.image
        self.ax = self.fig.add_subplot()
        self.fig.subplots_adjust(left=0.08, right=0.99, bottom=0.16, top=0.9)

    def _build_controls(self) -> None:
        cfg = self.config
        self.threshold = widgets.FloatLogSlider(value=cfg.threshold, base=10, min=-3, max=-0.5, step=0.001,
                                                description="threshold", readout_format=".4f")
        self.min_speech = widgets.IntSlider(value=cfg.min_speech_ms, min=0, max=1000, step=10, description="min speech")
        self.min_silence = widgets.IntSlider(value=cfg.min_silence_ms, min=50, max=2000, step=10,
                                             description="min silence")
        for slider in (self.threshold, self.min_speech, self.min_silence):
            slider.observe(self._retune, names="value")
        self.start_button = widgets.Button(description="Start", button_style="success", icon="play")
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.status = widgets.HTML(f"<i>source: {self.source.name}; press Start</i>")
        self.widget = widgets.VBox([self.image, widgets.HBox([self.threshold, self.min_speech, self.min_silence]),
                                    widgets.HBox([self.start_button, self.stop_button, self.status])])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        self._render()
        display(self.widget)

    def _retune(self, _change=None) -> None:
        """Slider moved: retune the running detector (its clock and state carry on)."""
        self.vad.update(threshold=self.threshold.value, stop_threshold=None, min_speech_ms=self.min_speech.value,
                        min_silence_ms=self.min_silence.value)

    # ----------------------------------------------------------------------------- running
    def start(self) -> None:
        """What Start does: a session of up to ``max_seconds`` on the widget's loop (safe from any thread)."""
        if self._task is None or self._task.done():
            self._task = asyncio.run_coroutine_threadsafe(self.run(self.max_seconds), self._loop)

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def run(self, seconds: float | None = None) -> list:
        """Feed the detector from the source for at most ``seconds`` (or until the source ends)."""
        self.error = None
        limit = seconds if seconds is not None else self.max_seconds
        period, last_draw = 1.0 / self.fps, -1.0
        self.status.value = "<b>listening…</b>"
        try:
            async for chunk in self.source:
                self._feed(chunk)
                now = self.vad.time_s
                if now - last_draw >= period:
                    self._render()
                    last_draw = now
                if now >= limit:
                    break
        except asyncio.CancelledError:
            pass
        except Exception as e:             # a missing microphone, a broken file: show it where the learner looks
            self.error = f"{type(e).__name__}: {e}"
            log.warning("live VAD: %s", self.error)
        finally:
            with contextlib.suppress(Exception):
                self._render()
            stopped = f"stopped at {self.vad.time_s:.1f} s; {len(self.segments)} utterance(s)"
            self.status.value = (f"<span style='color:#b00'>error: {html.escape(self.error)}</span> ({stopped})"
                                 if self.error else f"<i>{stopped}</i>")
        return self.events

    def _feed(self, chunk: np.ndarray) -> None:
        events = self.vad.process(chunk)
        start_thr, stop_thr = self.vad.start_threshold, self.vad.stop_threshold
        for t, rms in self.vad.last_frames:
            self.trace.append((t, rms, start_thr, stop_thr))
        horizon = self.vad.time_s - self.window_s
        while self.trace and self.trace[0][0] < horizon:
            self.trace.popleft()
        for e in events:
            self.events.append(e)
            if isinstance(e, SpeechStart):
                self.segments.append([e.start_s, None])
            elif self.segments and self.segments[-1][1] is None:
                self.segments[-1][1] = e.end_s

    # ----------------------------------------------------------------------------- drawing
    def _render(self) -> None:
        ax, now = self.ax, self.vad.time_s
        ax.clear()
        left = max(0.0, now - self.window_s)
        ax.set_xlim(left, left + self.window_s)
        ax.set_ylim(-80, 0)
        ax.set_xlabel("stream time (s)")
        ax.set_ylabel("RMS (dBFS)")
        if self.trace:
            t, rms, start_thr, stop_thr = (np.array(v) for v in zip(*self.trace))
            ax.plot(t, _db(rms), color="tab:blue", lw=1, label="frame RMS")
            ax.step(t, _db(start_thr), where="post", color="tab:red", lw=1.2, label="start threshold")
            ax.step(t, _db(stop_thr), where="post", color="tab:red", lw=1, ls="--", label="stop threshold")
            ax.legend(loc="lower left", fontsize=7, ncol=3)
        for start, end in self.segments:
            ax.axvspan(start, end if end is not None else now, color="tab:green", alpha=0.2, lw=0)
        for e in self.events:
            at = e.detected_sample / self.config.sample_rate
            if at >= left:
                ax.axvline(at, color="tab:green" if isinstance(e, SpeechStart) else "tab:purple", lw=0.8, ls=":")
        ax.set_title(f"{self.source.name}: green = speech, dotted = when the detector knew", fontsize=9)
        self.plot.show()

    def snapshot(self):
        """The current picture as a static image (stored in a notebook's output, unlike a widget)."""
        self._render()
        return self.plot.snapshot()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            self.widget.close()
