"""Drive the lab page's voice mode in a real headless Chromium whose microphone is a labelled WAV.

Used by the tests and by chapter 05b: the fake microphone (:mod:`labkit.fakemic`) says the script's
first line, pauses, and says the second while the answer to the first is still playing (a
barge-in); then the Interrupt button cuts the answer to the second. What comes back is what the
page measured (``window.voice``) and what the server said over the protocol, plus a screenshot.
Chromium is Debian's (``labkit.services.chromium_path``); nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fakemic import FakeMicScript, LineInCapture, chromium_fake_mic_args, locate, locate_lines
from .services import CHROMIUM_ARGS, chromium_path

__all__ = ["VoiceRun", "talk_in_the_page", "CHROMIUM_ARGS", "chromium_path"]

RATE = 24_000


@dataclass
class VoiceRun:
    """One conversation in the page: ``window.voice``'s records, the captured audio, a screenshot."""
    events: list
    turns: list
    barge_ins: list
    items: dict
    retrieved: dict
    transcripts: list
    levels: int
    meter: str
    latency_rows: int
    captured: np.ndarray          # what the page streamed, int16 at 24 kHz
    offset_s: float               # where the script's first sample is in `captured`
    lines_at: list[LineInCapture] # where each line really is in `captured` (glitches move what follows them)
    second_onset_at: float | None # performance.now() when the page had the second line's first sample
    errors: list
    screenshot: bytes | None

    def edges(self, script: FakeMicScript) -> list[dict]:
        """Each line's server VAD events next to where the line is in what the server received, on the
        input stream's clock (ms); ``drift_ms`` is how far capture glitches inside the line moved its end."""
        started = [e for e in self.events if e["type"] == "input_audio_buffer.speech_started"]
        stopped = [e for e in self.events if e["type"] == "input_audio_buffer.speech_stopped"]
        return [{"text": line.text, "speech_ms": 1000 * at.start_s, "end_ms": 1000 * at.end_s,
                 "drift_ms": 1000 * at.drift_s, "audio_start_ms": s["audio_start_ms"], "audio_end_ms": e["audio_end_ms"]}
                for line, at, s, e in zip(script.lines, self.lines_at, started, stopped)]


async def talk_in_the_page(url: str, script: FakeMicScript, *, interrupt_second: bool = True, screenshot: bool = False,
                           timeout_s: float = 40.0) -> VoiceRun:
    """Open ``url`` (the lab page; add ``?name=…`` or the join link's token), press Start talking, let the
    fake microphone speak ``script`` (two lines), and collect what the page measured."""
    from playwright.async_api import async_playwright

    ms = int(timeout_s * 1000)
    sep = "&" if "?" in url else "?"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(),
                                          args=CHROMIUM_ARGS + chromium_fake_mic_args(script.path))
        try:
            context = await browser.new_context(permissions=["microphone"], viewport={"width": 1200, "height": 900})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{url}{sep}voicekeep=1")
            await page.wait_for_function("window.lab && window.lab.ready === true && window.voice", timeout=ms)
            await page.click("#voice-start")
            await page.wait_for_function("voice.state === 'listening' || voice.error", timeout=ms)
            error = await page.evaluate("voice.error")
            if error:
                raise RuntimeError(f"the page could not start voice mode: {error}")
            # the barge-in: the second line's speech_started while the first answer plays
            await page.wait_for_function("voice.bargeIns.length >= 1 && voice.bargeIns[0].serverAudioEndMs != null "
                                         "&& voice.retrieved[voice.bargeIns[0].item]", timeout=ms)
            if interrupt_second:
                await page.wait_for_function("voice.turns.length >= 2 && voice.turns[1].firstSoundAt != null",
                                             timeout=ms)
                await page.click("#voice-interrupt")
                await page.wait_for_function("voice.bargeIns.length >= 2 && voice.bargeIns[1].serverAudioEndMs != null "
                                             "&& voice.retrieved[voice.bargeIns[1].item]", timeout=ms)
            await page.wait_for_function(f"voice.transcripts.filter(t => t.role === 'user').length >= "
                                         f"{len(script.lines)}", timeout=ms)
            v = await page.evaluate("({events: voice.events, turns: voice.turns, bargeIns: voice.bargeIns, "
                                    "items: voice.items, retrieved: voice.retrieved, transcripts: voice.transcripts, "
                                    "levels: voice.levels, meter: document.getElementById('voice-meter').style.width, "
                                    "rows: document.querySelectorAll('#voice-latency tr').length})")
            captured = np.array(await page.evaluate("voice.kept.flat()"), dtype=np.int16)
            offset_s = locate(captured, script, RATE)
            lines_at = locate_lines(captured, script, RATE, offset_s)
            onset = None
            if len(script.lines) > 1:
                onset = await page.evaluate(f"voice.timeOfSample({round(lines_at[1].start_s * RATE)})")
            shot = await page.locator("#voice").screenshot() if screenshot else None
            await page.click("#voice-stop")
        finally:
            await browser.close()
    for it in v["items"].values():
        it.pop("line", None)
    return VoiceRun(v["events"], v["turns"], v["bargeIns"], v["items"], v["retrieved"], v["transcripts"], v["levels"],
                    v["meter"], v["rows"], captured, offset_s, lines_at, onset, errors, shot)
