"""A browser's own WebSocket on ``/v1/realtime``, in headless Chromium: subprotocols and an ephemeral key.

The page does what a browser app does: ``new WebSocket(url, ["realtime", "openai-insecure-api-key." + key])``
with a key the app's server minted through ``client_secrets``; the key then expires and the same
connection attempt is refused. Every event the page received is validated against the SDK's models."""

from __future__ import annotations

import time

import pytest
from openai import AsyncOpenAI

from labkit.realtime import validate_server_event
from labkit.services import CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

KEY = "sk-lab-server-only"

TEXT_TURN = """async ([url, key]) => {
  const ws = new WebSocket(url, ["realtime", "openai-insecure-api-key." + key]);
  const events = [];
  return await new Promise((resolve) => {
    ws.onerror = () => resolve({opened: false, events});
    ws.onclose = (e) => resolve({opened: events.length > 0, code: e.code, events});
    ws.onmessage = (m) => {
      const event = JSON.parse(m.data);
      events.push(event);
      if (event.type === "session.created") {
        ws.send(JSON.stringify({type: "session.update", session: {type: "realtime", output_modalities: ["text"]}}));
        ws.send(JSON.stringify({type: "conversation.item.create", item: {type: "message", role: "user",
                content: [{type: "input_text", text: "What is a WebSocket?"}]}}));
        ws.send(JSON.stringify({type: "response.create"}));
      }
      if (event.type === "response.done") {
        resolve({opened: true, protocol: ws.protocol, events});
        ws.close();
      }
    };
  });
}"""



async def test_browser_websocket_with_an_ephemeral_key_then_refused_once_expired(chromium, make_server):
    server = make_server(api_key=KEY)                          # the page never sees this key
    # the key store's clock stands still until the test moves it: a busy machine may take more than the
    # key's ten seconds to launch Chromium and run the turn, which must not expire the key before its time
    now = [time.time()]
    server.app.state.realtime_keys.clock = lambda: now[0]
    minted = await AsyncOpenAI(base_url=server.base_url, api_key=KEY).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 10})
    url = server.ws_url + "/v1/realtime?model=gpt-realtime"
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(server.url + "/health")               # a page of the lab's own origin
        result = await page.evaluate(TEXT_TURN, [url, minted.value])
        assert result["opened"] and result["protocol"] == "realtime"
        for event in result["events"]:
            validate_server_event(event)
        kinds = [e["type"] for e in result["events"]]
        assert kinds[0] == "session.created" and "response.output_text.delta" in kinds
        done = result["events"][-1]["response"]
        assert done["status"] == "completed" and "WebSocket" in done["output"][0]["content"][0]["text"]

        now[0] += 11                                          # the key's ten seconds are over
        refused = await page.evaluate(TEXT_TURN, [url, minted.value])
        assert refused == {"opened": False, "events": []}
        await browser.close()
