"""Classroom mode over https: a browser on the LAN address gets the microphone only on the https link."""

from __future__ import annotations

import pytest

from labkit.classroom import Classroom, lan_address
from labkit.fakemic import chromium_fake_mic_args, fake_mic_wav
from labkit.services import CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")




def test_the_certificate_is_fresh_for_this_address_and_the_banner_says_what_to_tap():
    with Classroom(host="127.0.0.1", port=0, https=True) as room:
        banner = room.banner(qr=False)
        assert room.join_url.startswith("https://127.0.0.1:")
        assert "Proceed to" in banner and "Accept the Risk" in banner and room.certificate.fingerprint in banner
        assert "127.0.0.1" in room.certificate.names and room.certificate.key_path.stat().st_mode & 0o077 == 0
        assert room.certificate.key_path.read_text() not in banner
    with Classroom(host="127.0.0.1", port=0, https=True) as other:
        assert other.certificate.fingerprint != room.certificate.fingerprint    # made on the spot, each time


@pytest.mark.timeout(120)
async def test_a_lan_browser_gets_the_microphone_over_https_only(chromium, tmp_path):
    address = lan_address()
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address, and loopback is a secure context anyway")
    script = fake_mic_wav(tmp_path / "mic.wav", [1], tail_s=3.0)
    with Classroom(host=address, port=0, https=True) as secure, Classroom(host=address, port=0) as plain:
        args = CHROMIUM_ARGS + chromium_fake_mic_args(script.path) + [
            f"--ignore-certificate-errors-spki-list={secure.certificate.spki_sha256}"]   # this certificate only
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=args)
            context = await browser.new_context(permissions=["microphone"])
            page = await context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            await page.goto(plain.join_url + "&name=ann")            # http on a LAN address: no microphone
            await page.wait_for_function("window.lab && window.lab.ready === true && window.voice")
            assert await page.evaluate("window.isSecureContext") is False
            await page.click("#voice-start")
            assert "secure page" in await page.text_content("#voice-error")

            await page.goto(secure.join_url + "&name=ben")           # https with the self-signed certificate
            await page.wait_for_function("window.lab && window.lab.ready === true && window.voice")
            assert await page.evaluate("window.isSecureContext") is True
            await page.click("#voice-start")
            await page.wait_for_function("voice.events.some(e => e.type === 'input_audio_buffer.speech_started') "
                                         "|| voice.error", timeout=30_000)
            assert await page.evaluate("voice.error") is None
            assert await page.evaluate("voice.levels") > 10 and await page.evaluate("voice.track.echoCancellation")
            await page.click("#voice-stop")
            await browser.close()
    assert errors == []
