"""The browser client in a real headless Chromium (Debian's, driven by Playwright; no browser download)."""

from __future__ import annotations

import httpx
import pytest

from labkit.netem import NetemProxy
from labkit.services import CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")




@pytest.fixture
async def browser(chromium):
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def _open(browser, url):
    page = await browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url)
    await page.wait_for_function("window.lab && window.lab.ready === true")
    return page, errors


async def _ask(page, transport: str, prompt: str):
    await page.check(f"input[name=transport][value={transport}]")
    await page.fill("#chat-input", prompt)
    await page.click("#chat-send")


async def _generated(server, stream_id, user="ann"):
    """What the server generated, asked as the stream's owner (streams are private to their user)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {user}"}) as client:
        return (await client.get(f"{server.url}/api/chat/streams/{stream_id}")).json()


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_the_page_streams_a_reply_with_typing_progress_and_ttft(browser, server, transport):
    page, errors = await _open(browser, server.url + "/?name=ann")
    await _ask(page, transport, "What is SSE?")
    await page.wait_for_function("window.lab.replies.length === 1 && window.lab.replies[0].done", timeout=15_000)
    reply = await page.evaluate("({text: lab.replies[0].text, id: lab.replies[0].streamId, "
                                "ttft: lab.replies[0].ttftMs, n: lab.replies[0].lastSeq + 1})")
    generated = await _generated(server, reply["id"])
    assert reply["text"] == generated["content"] and reply["n"] == generated["tokens"] > 10
    assert reply["ttft"] > 0
    assert "TTFT" in await page.text_content("#chat-ttft")
    assert await page.text_content("#chat-stage") == "complete"
    assert await page.is_hidden("#chat-typing")
    assert errors == []


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_the_page_survives_a_forced_disconnect_without_losing_text(browser, make_server, transport):
    # a reply takes about 4 s (58-59 tokens): the drop lands mid-reply even if the machine stalls for
    # seconds between the page's third token and drop_all (at 1.0 the window was 0.85 s)
    server = make_server(time_scale=4.0)
    async with NetemProxy(server.port) as proxy:
        page, errors = await _open(browser, proxy.url + "/?name=ann")
        await _ask(page, transport, "Why does time to first token matter?")
        await page.wait_for_function("window.lab.replies[0] && window.lab.replies[0].lastSeq >= 3", timeout=10_000)
        assert proxy.drop_all() >= 1
        await page.wait_for_function("window.lab.replies[0].done || window.lab.replies[0].error", timeout=20_000)
        reply = await page.evaluate("({text: lab.replies[0].text, id: lab.replies[0].streamId, "
                                    "error: lab.replies[0].error, reconnects: lab.replies[0].reconnects})")
        assert reply["error"] is None and reply["reconnects"] >= 1
        generated = await _generated(server, reply["id"])
        assert reply["text"] == generated["content"]              # nothing lost, nothing twice
        assert "reconnected" in await page.text_content("#chat-reconnects")
        assert errors == []
        await page.close()


async def test_two_users_share_a_room_in_two_browsers(browser, server):
    ann, _ = await _open(browser, server.url + "/?name=ann")
    ben, _ = await _open(browser, server.url + "/?name=ben")
    for page in (ann, ben):
        await page.fill("#room-id", "demo")
        await page.click("#room-join button")
        await page.wait_for_function("window.lab.room && window.lab.room.events.length >= 1")
    await ann.wait_for_function("window.lab.room.members === 2")
    await ann.fill("#room-input", "hello from ann: what is a WebSocket?")
    await ann.click("#room-send")
    for page in (ann, ben):
        await page.wait_for_function("window.lab.room.events.some(e => e.type === 'ai_complete')", timeout=15_000)
    ben_log = await ben.text_content("#room-log")
    assert "hello from ann" in ben_log and "AI" in ben_log
    assert await ben.text_content("#room-members") == "2 in the room"
    ann_ids = await ann.evaluate("lab.room.events.filter(e => e.type === 'ai_complete').map(e => e.reply_to)")
    ben_ids = await ben.evaluate("lab.room.events.filter(e => e.type === 'ai_complete').map(e => e.reply_to)")
    assert ann_ids == ben_ids and len(ann_ids) == 1
