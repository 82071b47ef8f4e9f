"""Chapter 03 in real JupyterLab, as a learner uses it: Run All, then two questions typed into the chat box.

The bug this guards: the second question was lost ("Future attached to a different loop") and its
answer appeared under the next one. Both must be answered, each under its own question.
"""

from __future__ import annotations

import pytest

from jupyterlab_ui import jupyterlab, lab_page

pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")

ROWS = "[...document.querySelectorAll('[class^=labkit-chat-]')].map(r => [r.className.slice(12), r.textContent])"



@pytest.mark.timeout(400)                    # JupyterLab and Chromium on a shared CPU: slow, not stuck
async def test_run_all_then_two_questions_in_the_chat_box(chromium, tmp_path):
    with jupyterlab(tmp_path, ["03_websockets.ipynb"]) as (url, token):
        async with lab_page(chromium, url, token, "chapter03") as lab:
            page = lab.page
            await lab.open("03_websockets.ipynb")
            await lab.run_all()
            assert await lab.tracebacks() == []
            before = await page.evaluate(ROWS)
            assert [who for who, _ in before] == ["you", "assistant"]     # the notebook's own `await box.ask(...)`
            box = page.locator("input[placeholder^='Ask about SSE']")
            await box.scroll_into_view_if_needed()
            for question in ("What is SSE?", "What is TTFT?"):          # the second while the first streams
                await box.fill(question)
                await box.press("Enter")
                # as a person would: type the next one once the box has taken this one (the kernel
                # empties it; typing before that lands would be overwritten by the emptying)
                await page.wait_for_function("el => el.value === ''", arg=await box.element_handle(),
                                             timeout=60_000, polling=100)
            await page.wait_for_function(
                f"(() => {{ const rows = {ROWS}; const status = [...document.querySelectorAll('.widget-html-content')]"
                ".map(e => e.textContent).join(' ');"
                " return rows.length === 6 && /first token after/.test(status) && !/typing/.test(status); })()",
                timeout=120_000, polling=200)
            rows = await page.evaluate(ROWS)
            assert [who for who, _ in rows] == ["you", "assistant"] * 3, rows
            assert [text for who, text in rows if who == "you"][1:] == ["you: What is SSE?", "you: What is TTFT?"]
            answers = [text.removeprefix("assistant: ") for who, text in rows if who == "assistant"]
            assert ("SSE" in answers[1] or "Server-Sent" in answers[1]) and answers[2] and answers[2] != answers[1], answers
            assert not await page.locator(".labkit-chat-error").count()
            status = " ".join(await page.locator(".widget-html-content").all_inner_texts())
            assert "first token after 2 ms" not in status
