"""Chapter 04 in real JupyterLab: Run All, then Start on the live RMS widget, and the plot must move."""

from __future__ import annotations

import pytest

from jupyterlab_ui import jupyterlab, lab_page

pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")

NOTEBOOK = "04_voice_activity_detection.ipynb"



@pytest.mark.timeout(400)                    # JupyterLab and Chromium on a shared CPU: slow, not stuck
async def test_run_all_then_start_the_live_rms_plot(chromium, tmp_path):
    with jupyterlab(tmp_path, [NOTEBOOK]) as (url, token):
        async with lab_page(chromium, url, token, "chapter04") as lab:
            page = lab.page
            await lab.open(NOTEBOOK)
            await lab.run_all(timeout_s=300)
            assert await lab.tracebacks() == []
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
