"""The notebook microphone in real JupyterLab: Chromium's (fake) microphone reaches the kernel through
the anywidget, and chapter 04's live RMS plot marks the utterance.

Its own small harness (a JupyterLab server on a free port, a notebook written for the test, cells run
through JupyterLab's own command, the widget's button clicked like a learner would). The kernel
writes what it received to a JSON file the test waits for.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import httpx
import nbformat
import numpy as np
import pytest

from labkit.fakemic import chromium_fake_mic_args, fake_mic_wav, locate_lines
from labkit.services import free_port, stop_process
from labkit.voicepage import CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

TOLERANCE_S = 0.15

CELLS = [
    """import asyncio, json, os
import numpy as np
from labkit.widgets import BrowserMicrophone, LiveVAD
mic = BrowserMicrophone(sample_rate=16_000)
kept = []                                   # a copy of every chunk the kernel received, for the test
push = mic.source.push
mic.source.push = lambda pcm: (kept.append(bytes(pcm)), push(pcm))[1]
mic""",
    """scope = LiveVAD(mic.source, max_seconds=30, fps=2)   # a light redraw rate: CI shares two cores
scope.start()
async def report():
    while not any(end is not None for _, end in scope.segments):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    scope.snapshot()                        # the plot, drawn with the detected speech marked
    np.save("kept.npy", np.frombuffer(b"".join(kept), dtype="<i2"))
    with open("result.part", "w") as f:     # result.json appears whole, and last: the test waits for it
        json.dump({"segments": scope.segments, "chunks": mic.chunks_received, "seconds": mic.seconds_received,
                   "status": mic.status, "drawn": len(scope.image.value)}, f)
    os.replace("result.part", "result.json")
watcher = asyncio.ensure_future(report())
scope""",
]



@pytest.fixture
def jupyterlab(tmp_path):
    token, port = secrets.token_hex(16), free_port()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, tmp_path / "mic.ipynb")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(tmp_path / ".rt")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
                             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited: {proc.stderr.read().decode()[-800:]}")
        try:
            if httpx.get(f"{base}/api/status", params={"token": token}, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail("JupyterLab did not answer within 60 s")
        time.sleep(0.1)
    yield base, token, tmp_path
    stop_process(proc, grace_s=10)


@pytest.mark.timeout(240)
async def test_the_browser_microphone_reaches_the_kernel_and_the_live_plot_marks_the_speech(chromium, jupyterlab,
                                                                                           tmp_path):
    base, token, root = jupyterlab
    script = fake_mic_wav(tmp_path / "fake-mic.wav", [0], lead_s=1.0, tail_s=4.0)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS + chromium_fake_mic_args(script.path))
        try:
            context = await browser.new_context(permissions=["microphone"], viewport={"width": 1300, "height": 1000})
            page = await context.new_page()
            await page.goto(f"{base}/lab/tree/mic.ipynb?token={token}")
            await page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                         "&& window.jupyterapp.shell.currentWidget.sessionContext "
                                         "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                                         "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel "
                                         "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                                         ".connectionStatus === 'connected'", timeout=90_000)
            await page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            start = page.locator("button.lm-start")
            await start.wait_for(timeout=90_000)
            await page.wait_for_selector(".jp-OutputArea img", timeout=90_000)      # the live plot is there
            await start.click()                                                     # what a learner does
            deadline = time.monotonic() + 60
            while not (root / "result.json").exists():
                assert time.monotonic() < deadline, "the kernel never saw a whole utterance"
                await page.wait_for_timeout(100)
            status = await page.locator(".lm-status").first.text_content()
        finally:
            await browser.close()
    result = json.loads((root / "result.json").read_text())
    kept = np.load(root / "kept.npy")
    at, = locate_lines(kept, script, 16_000)      # the line matched on its own: a capture glitch moves its end
    (start_s, end_s), = [s for s in result["segments"] if s[1] is not None][:1]
    print(f"kernel got {result['chunks']} chunks, {result['seconds']:.2f} s; status {status!r}; the line is at "
          f"{at.start_s:.3f}-{at.end_s:.3f} s of the capture (glitch drift {1000 * at.drift_s:+.0f} ms); VAD segment "
          f"{start_s:.3f}-{end_s:.3f} s")
    assert status.startswith("listening") and result["chunks"] > 20
    assert abs(start_s - at.start_s) <= TOLERANCE_S
    assert abs(end_s - at.end_s) <= TOLERANCE_S + 0.1     # the plot's detector ends a little late
    assert result["drawn"] > 1000                                       # the plot was drawn with the marks
