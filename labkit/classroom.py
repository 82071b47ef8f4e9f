"""Classroom mode: the lab on the local network, for a class to join from laptops and phones.

``python -m labkit classroom`` (or ``make demo``) starts:

* the lab server on 127.0.0.1, with a fresh ``LAB_TOKEN`` (so only people with the join link get in;
  the model API too), at most two streams per student, and a separate *instructor key*, printed
  only in the instructor's terminal: it alone flips the class-wide switches (the join link's token
  cannot), and ``10_instructor_dashboard.ipynb`` uses it;
* in front of it, on the local network, labkit's network emulator (:class:`~labkit.netem.NetemProxy`),
  so the instructor can put the whole class on "3G" with one switch and everyone sees the effect;
* and prints the join link (``http://<this laptop>:<port>/?token=…``) with a QR code.

Students open the link: the browser client asks for a name, trades the class token for their own
per-student token (``POST /api/login``; each name is handed out once), and can chat over SSE or
WebSocket and join rooms, where their messages carry the name of their token. The instructor watches and
steers from ``10_instructor_dashboard.ipynb`` (``labkit.widgets.Dashboard``).

Offline and keyless by default. With ``OPENAI_API_KEY`` set, the chat routes use the real API.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from dataclasses import replace

from .config import settings_from_env
from .joinlink import ANSI_DARK_ON_LIGHT, ANSI_RESET, mask_secret, qr_png, qr_svg, qr_terminal  # noqa: F401 (re-exported)
from .netem import PROFILES, NetemProxy
from .server.runner import LabServer
from .server.state import ServerConfig

__all__ = ["Classroom", "lan_address", "qr_terminal", "qr_svg", "qr_png", "mask_secret", "run_classroom",
           "simulate_participants"]


def lan_address() -> str:
    """This machine's address on the local network (no packet is sent), or 127.0.0.1 without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class Classroom:
    """The running classroom: ``.join_url``, ``.token``, ``.server`` (the LabServer), ``.stop()``."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000, token: str | None = None,
                 config: ServerConfig | None = None, instructor_key: str | None = None, https: bool = False):
        self.host, self.port = host, port
        self.https = https                     # phones need a secure page for the microphone (labkit.tls)
        self.certificate = None
        self.tls_front = None
        self.token = token or secrets.token_urlsafe(12)
        #: The instructor's own secret (``/lab/admin/*``); never in the join link, never on a student's screen.
        self.instructor_key = instructor_key or secrets.token_urlsafe(18)
        if self.instructor_key == self.token:
            raise ValueError("the instructor key must differ from the class token")
        settings = settings_from_env()
        config = config or ServerConfig()
        config = replace(config, lab_token=self.token, instructor_key=self.instructor_key, max_streams_per_user=2,
                         user_requests_per_min=config.user_requests_per_min or 60)
        if settings.use_real_api:
            config = replace(config, upstream_base_url=settings.openai_base_url or "https://api.openai.com/v1",
                             upstream_api_key=settings.openai_api_key)
        else:
            config = replace(config, upstream_api_key=self.token)       # the local /v1 wants the class token too
        self.uses_real_api = settings.use_real_api
        self.server = LabServer(config, host="127.0.0.1")
        self.proxy: NetemProxy | None = None
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> "Classroom":
        self.server.start()
        self._thread = threading.Thread(target=self._loop.run_forever, name="classroom-netem", daemon=True)
        self._thread.start()
        if self.https:                         # TLS on the classroom's address, then the emulator, then the lab
            from .tls import TLSFront, self_signed
            self.certificate = self_signed([self.address])
            self.proxy = NetemProxy(self.server.port, PROFILES["lan"])
        else:
            self.proxy = NetemProxy(self.server.port, PROFILES["lan"], host=self.host, port=self.port)
        try:
            asyncio.run_coroutine_threadsafe(self.proxy.__aenter__(), self._loop).result(10)
            if self.https:
                self.tls_front = TLSFront(self.proxy.port, self.certificate, host=self.host, port=self.port)
                asyncio.run_coroutine_threadsafe(self.tls_front.__aenter__(), self._loop).result(10)
        except OSError as e:
            self.stop()
            raise OSError(e.errno, f"cannot listen on {self.host}:{self.port}: {e.strerror}. Is another server "
                                   f"using that port? Try --port 0 for any free one.") from None
        live = self.server.live                  # what the instructor's routes switch and show
        live.attach_network(lambda: self.proxy.profile.name, self.set_network)
        live.join_url = self.join_url            # for the instructor's page, /lab/instructor
        return self

    @property
    def address(self) -> str:
        return lan_address() if self.host in ("0.0.0.0", "") else self.host

    @property
    def join_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    @property
    def url(self) -> str:
        """The classroom's address without the token (what the instructor's dashboard talks to)."""
        if self.tls_front is not None:
            return f"https://{self.address}:{self.tls_front.port}"
        return f"http://{self.address}:{self.proxy.port}"

    def set_network(self, profile: str) -> None:
        """Put everyone's traffic through a network profile (``lan``, ``wifi``, ``4g``, ``3g``, ``lossy``)."""
        self._loop.call_soon_threadsafe(self.proxy.set_profile, PROFILES[profile])

    def stop(self) -> None:
        if self.tls_front is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.tls_front.close(), self._loop).result(10)
        if self.proxy is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self.server.stop()

    def __enter__(self) -> "Classroom":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def banner(self, qr: bool = True) -> str:
        """What the instructor's terminal shows: the join link (and its QR code) for the students, and
        the instructor key, which is for the instructor alone (it is printed nowhere else)."""
        lines = [f"join: {self.join_url}", "",
                 "Students: open the link above (or scan the code) and pick a name.",
                 f"Backend: {'the real OpenAI API' if self.uses_real_api else 'the local simulated model (offline)'}.",
                 f"Instructor key (keep it to yourself; it is not in the join link): {self.instructor_key}",
                 "  open notebooks/10_instructor_dashboard.ipynb and give it this key (LAB_INSTRUCTOR_KEY),",
                 f"  or use the server directly at {self.url}. Ctrl+C to stop."]
        if self.certificate is not None:
            from .tls import https_banner
            lines[3:3] = https_banner(self.certificate)
        if qr:
            lines[1:1] = ["", qr_terminal(self.join_url)]
        return "\n".join(lines)


def run_classroom(host: str, port: int, token: str | None, qr: bool = True,
                  instructor_key: str | None = None, https: bool = False) -> None:
    """The foreground ``python -m labkit classroom``: print the join link and serve until Ctrl+C."""
    import time

    with Classroom(host=host, port=port, token=token, instructor_key=instructor_key, https=https) as room:
        print(room.banner(qr=qr), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


#: The tokens simulated students got, per (join link, name): like a browser that keeps its login.
_student_tokens: dict[tuple[str, str], str] = {}


async def simulate_participants(join_url: str, names: list[str], questions: int = 2, room: str = "class",
                                seed: int = 0) -> dict:
    """Simulated students for a demo or a headless run: each logs in with the join link's token, asks
    ``questions`` questions over SSE or WebSocket (alternating), and says hello in ``room``."""
    import random
    from urllib.parse import parse_qs, urlparse

    import httpx

    from .clients import ChatError, collect, sse_chat
    from .clients.resume import ResumableWSChat
    from .clients.room import RoomClient

    link = urlparse(join_url)
    base, ws_base = f"http://{link.netloc}", f"ws://{link.netloc}"
    class_token = parse_qs(link.query)["token"][0]
    rng = random.Random(seed)
    prompts = ["What is SSE?", "Why does time to first token matter?", "What is a WebSocket?",
               "How does voice activity detection work?", "What is TPOT?"]

    async def student(name: str) -> dict:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            token = _student_tokens.get((join_url, name))
            if token is None:                 # a name is handed out once: a returning student keeps theirs
                r = await client.post("/api/login", json={"name": name},
                                      headers={"Authorization": f"Bearer {class_token}"})
                r.raise_for_status()
                token = _student_tokens[(join_url, name)] = r.json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            ttfts = []
            async with RoomClient(ws_base, room, name, token=token) as member:
                await member.say(f"hi, {name} here")
                for q in range(questions):
                    prompt = rng.choice(prompts)
                    try:
                        if q % 2 == 0:
                            async with httpx.AsyncClient(headers=auth, timeout=60) as as_student:
                                reply = await collect(sse_chat(base, prompt, client=as_student))
                        else:
                            async with ResumableWSChat(base, token=token) as chat:
                                reply = await collect(chat.ask(prompt))
                        ttfts.append(reply.ttft_s)
                    except ChatError:
                        pass
        return {"name": name, "ttfts_s": ttfts}

    results = await asyncio.gather(*(student(n) for n in names))
    return {r["name"]: r["ttfts_s"] for r in results}
