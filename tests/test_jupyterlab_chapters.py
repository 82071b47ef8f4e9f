"""Chapters 03, 04 and 10 in real JupyterLab, as a learner uses them: Run All, then each chapter's widget.

One JupyterLab serves all three (started once for this file: a JupyterLab costs seconds of a shared
CPU, and ``--dist loadfile`` keeps this file on one worker). Each test opens its notebook in its own
headless Chromium, runs *Run → Run All Cells* from the menu, then uses the widget:

- 03: two questions typed into the chat box back to back, with no wait (the second while the first
  streams): both answered, in order, each under its own question. The bugs this guards: the second
  question was lost ("Future attached to a different loop") and its answer appeared under the next one;
  later, a question typed before the kernel had emptied the box was overwritten.
- 04: Start on the live RMS widget: the plot keeps changing; Stop stops it.
- 10: the dashboard's network menu set to 3g: what a student's client then measures is slower; the
  model menu and the Refresh button (it brings in what the table had not yet shown).
"""

from __future__ import annotations

import re

import pytest
from jupyterlab_ui import jupyterlab, ran_all, shut_down_kernels

pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")

CHAPTER03, CHAPTER04, CHAPTER10 = ("03_websockets.ipynb", "04_voice_activity_detection.ipynb",
                                   "10_instructor_dashboard.ipynb")
ROWS = "[...document.querySelectorAll('.labkit-chatbox .lc-row')].map(r => [r.dataset.who, r.textContent])"


@pytest.fixture(scope="module")
def jupyterlab_server(tmp_path_factory):
    with jupyterlab(tmp_path_factory.mktemp("jupyterlab"), [CHAPTER03, CHAPTER04, CHAPTER10]) as (url, token):
        yield url, token


@pytest.fixture
def lab_server(jupyterlab_server):
    """The shared JupyterLab; each test's kernels end with the test."""
    yield jupyterlab_server
    shut_down_kernels(*jupyterlab_server)


@pytest.mark.timeout(400)                    # JupyterLab and Chromium on a shared CPU: slow, not stuck
async def test_run_all_then_two_questions_in_the_chat_box(chromium, lab_server):
    async with ran_all(chromium, *lab_server, CHAPTER03) as lab:
        page = lab.page
        before = await page.evaluate(ROWS)
        assert [who for who, _ in before] == ["you", "assistant"]     # the notebook's own `await box.ask(...)`
        box = page.locator(".labkit-chatbox input[placeholder^='Ask about SSE']")
        await box.scroll_into_view_if_needed()
        for question in ("What is SSE?", "What is TTFT?"):          # back to back: the second while the first streams
            await box.fill(question)
            await box.press("Enter")
            assert await box.input_value() == ""                  # the page empties its own box at once
        await page.wait_for_function(
            f"(() => {{ const rows = {ROWS}; const status = document.querySelector('.labkit-chatbox .lc-status');"
            " return rows.length === 6 && /first token after/.test(status.textContent)"
            " && !/queued|typing/.test(status.textContent); })()", timeout=120_000, polling=200)
        rows = await page.evaluate(ROWS)
        assert [who for who, _ in rows] == ["you", "assistant"] * 3, rows
        assert [text for who, text in rows if who == "you"][1:] == ["you: What is SSE?", "you: What is TTFT?"]
        answers = [text.removeprefix("assistant: ") for who, text in rows if who == "assistant"]
        assert ("SSE" in answers[1] or "Server-Sent" in answers[1]) and answers[2] and answers[2] != answers[1], answers
        assert not await page.locator(".labkit-chat-error").count()
        status = await page.locator(".labkit-chatbox .lc-status").inner_text()
        assert "first token after 2 ms" not in status


@pytest.mark.timeout(400)
async def test_run_all_then_start_the_live_rms_plot(chromium, lab_server):
    async with ran_all(chromium, *lab_server, CHAPTER04, timeout_s=300) as lab:
        page = lab.page
        start = page.locator(".widget-button:has-text('Start')").first
        await start.scroll_into_view_if_needed()
        plot = page.locator("img.widget-image").first
        before = await plot.get_attribute("src")
        await start.click()
        for _ in range(2):                                  # it keeps moving: two new frames at least
            await page.wait_for_function("([el, src]) => el.getAttribute('src') !== src",
                                         arg=[await plot.element_handle(), before], timeout=20_000)
            before = await plot.get_attribute("src")
        await page.locator(".widget-button:has-text('Stop')").first.click()
        await page.wait_for_function("() => /stopped at/.test(document.body.textContent)", timeout=20_000)
        assert "error" not in (await page.locator(".widget-html-content").all_inner_texts())[-1]


PROBE = re.compile(r"on (\w+): a student's TTFT p50 (\d+) ms")
#: the dashboard table's "requests" for the probe's student "you" (0 while the table has no such row)
YOUR_REQUESTS = ("(() => { const row = [...document.querySelectorAll('.widget-html-content tr')]"
                 ".find(tr => tr.cells.length > 2 && tr.cells[0].textContent === 'you');"
                 " return row ? Number(row.cells[2].textContent) : 0; })()")


@pytest.mark.timeout(400)
async def test_run_all_then_switch_the_class_network_from_the_dashboard(chromium, lab_server):
    async with ran_all(chromium, *lab_server, CHAPTER10) as lab:
        page = lab.page
        probe_cell = page.locator(".jp-CodeCell:has(.jp-InputArea-editor:has-text('probe = await'))")
        output = probe_cell.locator(".jp-OutputArea-output")
        first = PROBE.search(await output.inner_text())
        assert first and first[1] == "lan", await output.inner_text()
        lan_ms = int(first[2])

        network = page.locator(".widget-dropdown:has(label:text-is('network')) select")
        await network.scroll_into_view_if_needed()
        await network.select_option("3g")                # the learner's click: the widget calls the server
        await page.wait_for_function("() => /network is now 3g/.test(document.body.textContent)", timeout=30_000)

        await probe_cell.locator(".jp-InputPrompt").click()   # select the cell (command mode), run it again
        await page.keyboard.press("Shift+Enter")
        await page.wait_for_function("el => /on 3g:/.test(el.textContent)", arg=await probe_cell.element_handle(),
                                     timeout=120_000, polling=200)
        again = PROBE.search(await output.inner_text())
        assert again and again[1] == "3g"
        slow_ms = int(again[2])
        # 3g delays every byte 120 ± 40 ms each way: a question and its first token cross it at least once
        # each way (a floor a busy machine cannot lower), where the LAN adds 0.2 ms
        assert slow_ms >= 160 and slow_ms > lan_ms, (lan_ms, slow_ms)

        # the other switch and the refresh button work too, and the probe's student is in the table
        await page.locator(".widget-dropdown:has(label:text-is('model')) select").select_option("gpt-4")
        await page.wait_for_function("() => /model is now gpt-4/.test(document.body.textContent)", timeout=30_000)
        # the table was last drawn by the probe cell's own refresh, before that student's two questions:
        # only the button brings them in
        shown = await page.evaluate(YOUR_REQUESTS)
        await page.locator(".widget-button:has-text('Refresh')").click()
        await page.wait_for_function(f"() => {YOUR_REQUESTS} === {shown + 2}", timeout=30_000, polling=200)
        assert await lab.tracebacks() == []
