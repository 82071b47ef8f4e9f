"""The lab page's voice mode over WebRTC in a real headless Chromium: the browser's own RTCPeerConnection.

Chromium's fake microphone plays one labelled utterance (``data/speech``); the page (voice-webrtc.js)
offers it as an Opus track with an ``oai-events`` data channel to ``/v1/realtime/calls``; the lab's
aiortc peer answers. Checked: the server's VAD edges span the utterance's labelled length, the
transcript holds its words, and the answer really arrived on the browser's track (its own getStats()
and an analyser on the track), bracketed by output_audio_buffer.started/stopped.
"""

from __future__ import annotations

import pytest

from labkit.audio._sphinx import normalise
from labkit.fakemic import chromium_fake_mic_args, fake_mic_wav
from labkit.services import CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

# (no WebRTC flags: Chromium's default ICE behaviour; with the microphone granted it offers its host addresses)
PREFIX_MS, SILENCE_MS = 300, 500                  # what the page asks for in session.update
TOLERANCE_MS = 150



@pytest.mark.timeout(150)
async def test_chromium_holds_a_voice_turn_over_webrtc(chromium, make_server, tmp_path):
    # 3 s of lead-in: Chromium plays the file from getUserMedia, and ICE, DTLS and SRTP on a busy 2-core
    # machine can take most of a second before the server hears anything; the onset must still have
    # its 300 ms of prefix in what the server received (audio_start_ms > 0)
    script = fake_mic_wav(tmp_path / "mic.wav", [1], lead_s=3.0, tail_s=6.0)   # "Send a heartbeat every ..."
    line = script.lines[0]
    server = make_server()
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS + chromium_fake_mic_args(script.path))
        context = await browser.new_context(permissions=["microphone"])
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(server.url + "/?name=ann&transport=webrtc")
        await page.wait_for_function("window.lab && window.lab.ready === true && window.voiceRtc")
        assert await page.evaluate("document.getElementById('voice-transport').value") == "webrtc"
        await page.click("#voice-start")
        await page.wait_for_function("voiceRtc.state === 'listening' || voiceRtc.error", timeout=20_000)
        assert await page.evaluate("voiceRtc.error") is None
        await page.wait_for_function("voiceRtc.events.some(e => e.type === 'output_audio_buffer.stopped') "
                                     "|| voiceRtc.error", timeout=60_000)
        await page.wait_for_function("voiceRtc.stats !== null && voiceRtc.transcripts.some(t => t.role === 'user')",
                                     timeout=30_000)
        rtc = await page.evaluate("({events: voiceRtc.events, transcripts: voiceRtc.transcripts, "
                                  "stats: voiceRtc.stats, levels: voiceRtc.levels, callId: voiceRtc.callId, "
                                  "connection: voiceRtc.connection, voiceEvents: window.voice.events.length})")
        await page.click("#voice-stop")
        await browser.close()

    assert errors == []
    assert rtc["connection"] == "connected" and rtc["callId"].startswith("rtc_")
    assert rtc["voiceEvents"] == 0                         # the WebSocket voice mode stayed off
    kinds = [e["type"] for e in rtc["events"]]
    started = next(e for e in rtc["events"] if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in rtc["events"] if e["type"] == "input_audio_buffer.speech_stopped")
    # the capture's start is not known to the page, so check what does not depend on it: the detected
    # span (onset to end of speech) against the utterance's labelled length
    span_ms = (stopped["audio_end_ms"] - SILENCE_MS) - (started["audio_start_ms"] + PREFIX_MS)
    label_ms = 1000 * (line.end_s - line.start_s)
    print(f"VAD span {span_ms} ms for a {label_ms:.0f} ms utterance; onset at {started['audio_start_ms']} ms "
          f"of the input stream")
    assert abs(span_ms - label_ms) <= 2 * TOLERANCE_MS
    # (the fake device starts playing at getUserMedia, before ICE connects: the stream misses part of the lead-in)
    assert 0 < started["audio_start_ms"] <= 1000 * line.start_s

    user = next(t["text"] for t in rtc["transcripts"] if t["role"] == "user")
    words = normalise(line.text).split()
    found = sum(w in normalise(user).split() for w in words) / len(words)
    print("transcript:", user, f"({found:.0%} of the words)")
    assert found >= 0.5

    assert kinds.index("output_audio_buffer.started") < kinds.index("output_audio_buffer.stopped")
    assert "response.output_audio.delta" not in kinds       # the audio came on the track
    stats = rtc["stats"]
    loud = sum(1 for _, level in rtc["levels"] if level > 0.01)
    print(f"answer track: {stats['packetsReceived']} packets, {stats['totalSamplesReceived']} samples, "
          f"energy {stats['totalAudioEnergy']:.3f}, concealed {stats['concealedSamples']}; "
          f"{loud} of {len(rtc['levels'])} analyser readings not silent")
    assert stats["packetsReceived"] > 50 and stats["totalAudioEnergy"] > 0
    assert loud >= 5                                         # at least a quarter second of answer heard
