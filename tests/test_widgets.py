"""Notebook widgets, driven headless as nbval drives them."""

import asyncio
import builtins

import matplotlib.pyplot as plt
import numpy as np

from labkit.audio import ArraySource, SyntheticSource
from labkit.vad import VADConfig
from labkit.widgets import ChatBox, LiveVAD
from waiting import until


async def test_live_vad_runs_bounded_draws_without_leaking_figures():
    before = plt.get_fignums()
    scope = LiveVAD(SyntheticSource(seconds=6, realtime=False), VADConfig(threshold=0.02), window_s=4)
    events = await scope.run(seconds=5)
    assert scope.vad.time_s >= 5 and scope.vad.time_s < 5.1           # bounded by seconds
    assert [e.type for e in events][:2] == ["speech_start", "speech_end"]
    assert scope.segments and scope.segments[0][1] is not None
    assert bytes(scope.image.value).startswith(b"\x89PNG")
    assert plt.get_fignums() == before                                  # nothing registered with pyplot
    assert scope.trace[0][0] >= scope.vad.time_s - 4 - 0.02             # the trace keeps only the window
    snapshot = scope.snapshot()
    assert snapshot.data.startswith(b"\x89PNG")


async def test_sliders_retune_the_running_detector_and_stop_ends_it():
    silence_then_tone = np.concatenate([np.zeros(16_000, np.int16),
                                        (0.01 * 32767 * np.sin(np.arange(16_000 * 30) / 5)).astype(np.int16)])
    scope = LiveVAD(ArraySource(silence_then_tone, realtime=True), VADConfig(method="rms", frame_ms=10, threshold=0.05))
    scope.start()
    await until(lambda: scope.vad.time_s >= 0.2)         # running: the detector has heard some audio
    scope.threshold.value = 0.003                        # the quiet tone (RMS 0.007) now counts as speech
    scope.min_silence.value = 300
    assert scope.vad.config.threshold == 0.003 and scope.vad.config.min_silence_ms == 300
    await until(lambda: any(e.type == "speech_start" for e in scope.events))
    scope.stop()
    # the Start button's future is done at once; the session's own clean-up (the status) follows on its loop
    await until(lambda: scope._task.done() and "stopped" in scope.status.value)


async def test_chat_box_works_headless(server):
    box = ChatBox(server.url)
    reply = await box.ask("What is a WebSocket?")
    assert "WebSocket" in reply and box.transcript[0] == ("you", "What is a WebSocket?")
    assert box.last_ttft_s is not None and "first token" in box.status and box.widget.status_kind == "idle"
    assert box.widget.rows == [["you", "What is a WebSocket?"], ["assistant", reply]]      # what the page shows
    await box.close()


def test_a_missing_peer_is_reported_not_fatal(monkeypatch):
    from labkit import vadeval
    real_import = builtins.__import__

    def no_webrtc(name, *args, **kwargs):
        if name == "webrtcvad":
            raise ImportError("No module named 'webrtcvad'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_webrtc)
    monkeypatch.setattr(vadeval.importlib.util, "find_spec", lambda name: None)
    detectors, missing = vadeval.all_detectors()
    assert {"webrtcvad mode 0", "silero (onnx)"} <= set(missing)
    assert "pip install webrtcvad-wheels" in missing["webrtcvad mode 0"]
    assert any(d.name.startswith("labkit") for d in detectors)


async def test_chat_box_answers_questions_submitted_from_another_thread_in_order(server):
    """ipykernel 7 may run a widget's callback on another thread: both questions must still be answered,
    on the box's own loop, each under its own question (the bug was the second one lost to
    'Future attached to a different loop')."""
    import threading
    box = ChatBox(server.url)
    futures = []
    for question in ("What is a WebSocket?", "What is SSE?"):
        thread = threading.Thread(target=lambda q=question: futures.append(box.submit(q)))
        thread.start()
        thread.join()
    replies = [await asyncio.wrap_future(f) for f in futures]
    assert [who for who, _ in box.transcript] == ["you", "assistant", "you", "assistant"], box.transcript
    assert box.transcript[0][1] == "What is a WebSocket?" and box.transcript[2][1] == "What is SSE?"
    assert "WebSocket" in replies[0] and ("SSE" in replies[1] or "Server-Sent" in replies[1]), replies
    assert replies[0] != replies[1]
    assert box.errors == [] and "first token after" in box.status
    await box.close()


async def test_chat_box_answers_questions_the_page_sends_in_order_and_says_when_each_starts(server):
    """The page empties its own text box and sends each question as a message; two sent back to back (the
    second while the first streams) are both answered, in order, and the page is told when each leaves its
    queue. The messages arrive on another thread, as ipykernel 7 delivers them."""
    import threading
    box = ChatBox(server.url)
    to_page = []                                                      # every comm message, in order
    box.widget._send = lambda msg, buffers=None: to_page.append(msg)
    for n, question in enumerate(("What is a WebSocket?", "What is SSE?", "   ")):
        thread = threading.Thread(target=box.widget._handle_custom_msg,
                                  args=({"type": "ask", "id": f"q{n}", "text": question}, []))
        thread.start()
        thread.join()
    await until(lambda: len(box.transcript) == 4 and box.widget.status_kind == "idle")
    assert [who for who, _ in box.widget.rows] == ["you", "assistant", "you", "assistant"], box.widget.rows
    assert [text for who, text in box.widget.rows if who == "you"] == ["What is a WebSocket?", "What is SSE?"]
    answers = [text for who, text in box.widget.rows if who == "assistant"]
    assert "WebSocket" in answers[0] and ("SSE" in answers[1] or "Server-Sent" in answers[1]), answers
    sent_to_page = [msg["content"] for msg in to_page if msg["method"] == "custom"]
    assert sent_to_page == [{"type": "started", "id": "q0"}, {"type": "started", "id": "q1"}]   # blank: ignored
    assert box.errors == []
    await box.close()
    assert_the_page_never_shows_an_idle_box_with_an_open_question(to_page, asked=["q0", "q1"])


def assert_the_page_never_shows_an_idle_box_with_an_open_question(to_page, asked):
    """Replay the comm messages as chat.js applies them, one at a time, from the moment the page has
    asked every question: after none of them may the page show an idle status line (no "typing", nothing
    queued) while an answer is still empty. (Sent apart, the rows of the next question reached the
    page before its busy status, and a browser test reading the page then took "" for the last answer.)"""
    rows, status_kind, queued = [], "idle", list(asked)
    for n, msg in enumerate(to_page):
        if msg["method"] == "update":
            rows = msg["state"].get("rows", rows)
            status_kind = msg["state"].get("status_kind", status_kind)
        elif msg["content"].get("type") == "started":
            queued.remove(msg["content"]["id"])
        shows_idle = status_kind != "busy" and not queued
        assert not (shows_idle and ["assistant", ""] in rows), (n, msg, rows)
    assert not queued and rows[-1][0] == "assistant" and rows[-1][1]


async def test_chat_box_shows_a_connection_error_in_the_widget(make_server):
    gone = make_server()
    url = gone.url
    gone.stop()
    box = ChatBox(url)
    reply = await asyncio.wrap_future(box.submit("hello?"))
    assert box.transcript[-1][0] == "error" and reply == box.transcript[-1][1] and box.errors
    assert "error:" in box.status and box.widget.status_kind == "error"
    assert box.widget.rows[-1] == ["error", reply]                                       # shown in red by the page


async def test_live_vad_shows_a_source_error_in_its_status():
    class Broken(ArraySource):
        async def __aiter__(self):
            yield np.zeros(320, np.int16)
            raise OSError("the microphone went away")

    scope = LiveVAD(Broken(np.zeros(16_000, np.int16)), VADConfig(threshold=0.02))
    scope.start()
    await asyncio.wrap_future(scope._task)
    assert scope.error == "OSError: the microphone went away"
    assert "the microphone went away" in scope.status.value and "color:#b00" in scope.status.value


def test_the_dashboard_shows_a_failed_switch_in_the_widget(make_server):
    """The network menu's callback runs inside ipywidgets, which only logs an exception: the failure must
    be shown in the dashboard instead (here its server has gone)."""
    from labkit.widgets import Dashboard
    gone = make_server()
    url = gone.url
    gone.stop()
    dash = Dashboard(url, "instructor-key-not-shown")
    dash.set_network("3g")                      # what picking 3g in the menu does
    assert "cannot switch the network" in dash.message.value and "instructor-key-not-shown" not in dash.message.value
    dash.close()
