"""The production gotchas of chapters 07 and 08, as measurements: each runs the failing way and the fixed way.

Every function talks to real servers over real sockets and returns plain numbers, so a notebook
can tabulate and plot them and a test can hold them to what they claim.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import websockets

from .clients import ChatError, sse_chat
from .clients.resume import Backoff, resumable_sse_chat
from .netem import NetemProxy

__all__ = ["drops_with_and_without_resume", "tokens_after_leaving", "progressive_timeline", "join_while_ai_answers"]


async def drops_with_and_without_resume(server_url: str, server_port: int, replies: int = 8, seed: int = 7,
                                        prompt: str = "Why does time to first token matter?") -> dict:
    """Cut the connection once in the middle of each reply. A plain SSE client keeps what it had and
    loses the rest; the resuming client reconnects with ``Last-Event-ID`` and gets all of it.

    The proxy cuts just before the server's token number ``cut_after + 1`` (:meth:`NetemProxy.cut_before`),
    not when the client has read ``cut_after``: on a busy machine a client can be handed the whole reply
    at once, and a cut after that would cut nothing."""
    rng = random.Random(seed)
    out = {"plain": {"replies": replies, "complete": 0, "tokens_lost": 0},
           "resuming": {"replies": replies, "complete": 0, "tokens_lost": 0, "reconnects": 0}}
    async with NetemProxy(server_port) as proxy, httpx.AsyncClient() as direct:
        for kind in ("plain", "resuming"):
            for i in range(replies):
                cut_after = rng.randint(3, 25)
                proxy.cut_before(b"event: token", cut_after + 1)
                if kind == "plain":
                    reply = sse_chat(proxy.url, prompt, seed=i)
                else:
                    reply = resumable_sse_chat(proxy.url, prompt, seed=i, backoff=Backoff(initial_s=0.02, max_s=0.2))
                got = []
                try:
                    async for tok in reply:
                        got.append(tok.text)
                except (ChatError, httpx.HTTPError):
                    pass
                full = (await direct.post(server_url + "/api/chat", json={"message": prompt, "seed": i})).json()
                out[kind]["tokens_lost"] += full["tokens"] - len(got)
                out[kind]["complete"] += "".join(got) == full["content"]
                if kind == "resuming":
                    out[kind]["reconnects"] += reply.reconnects
    return out


async def tokens_after_leaving(app_url: str, model_stats_url: str, *, read_tokens: int = 5,
                               settle_timeout_s: float = 60.0,
                               prompt: str = "Why does time to first token matter?") -> dict:
    """Read a few tokens, hang up, and count what the *model* generated after that (money spent on
    nobody). ``model_stats_url`` is the model server's ``/lab/stats``.

    It waits until the model has no stream running any more (it finished the reply, or the app
    cancelled it), rather than for a fixed time: a busy machine slows the model down, and a fixed wait
    would then count a tutorial that never stops as one that stopped early. ``model_stream_cancelled``
    says which of the two ended it."""
    body = {"messages": [{"role": "user", "content": prompt}]}        # a body the tutorial's app reads too
    async with httpx.AsyncClient(timeout=30) as client:
        async def stats() -> dict:
            return (await client.get(model_stats_url)).json()

        before = await stats()
        async with client.stream("POST", app_url + "/api/chat/stream", json=body) as r:
            seen = 0
            async for line in r.aiter_lines():
                seen += line.startswith("data:")
                if seen >= read_tokens:
                    break
        at_leave = await stats()
        deadline = time.monotonic() + settle_timeout_s
        while (after := await stats())["model_streams_active"] > before["model_streams_active"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the model was still generating {settle_timeout_s:g} s after the client left")
            await asyncio.sleep(0.02)
    return {"tokens_before_leaving": at_leave["tokens_generated"] - before["tokens_generated"],
            "tokens_after_leaving": after["tokens_generated"] - at_leave["tokens_generated"],
            "model_stream_cancelled": after["model_streams_cancelled"] > before["model_streams_cancelled"]}


async def progressive_timeline(ws_url: str, prompt: str = "Why does time to first token matter?",
                               model: str | None = None) -> dict:
    """Ask over a progressive WebSocket, time every message, and replay them as the tutorial's browser
    code would show them (``showTypingIndicator(status)``, ``updateProgressBar(stage, progress)``)."""
    events = []
    t0 = time.perf_counter()
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "message", "content": prompt, **({"model": model} if model else {})}))
        while True:
            msg = json.loads(await ws.recv())
            t = time.perf_counter() - t0
            typing = msg.get("active", msg.get("status")) if msg["type"] == "typing" else None
            events.append({"t": t, "type": msg["type"], "typing": typing,
                           "stage": msg.get("stage"), "fraction": msg.get("fraction", msg.get("progress"))})
            if msg["type"] in ("complete", "error"):
                break
    typing_shown = False
    for e in events:                                  # what the page shows once the reply is complete
        if e["type"] == "typing":
            typing_shown = bool(e["typing"])
    first_token = next(e["t"] for e in events if e["type"] == "token")
    stages = []
    for e in events:
        if e["type"] == "progress" and (not stages or stages[-1][0] != e["stage"]):
            stages.append((e["stage"], e["t"]))
    return {"events": events, "ttft_s": first_token,
            "first_sign_s": next(e["t"] for e in events if e["type"] in ("typing", "progress")),
            "typing_left_on": typing_shown,
            "stages": [s for s, _ in stages],
            "progress_before_model_asked": [s for s, t in stages if t < first_token]}


async def join_while_ai_answers(ws_url: str, room: str, question: str = "Why does time to first token matter?",
                                join_after_s: float = 0.3, warm_up: bool = True) -> dict:
    """One member asks the room's AI; shortly after, a second member tries to join. How long until
    the newcomer gets the room's state? (On a server that blocks its event loop: the whole answer.)

    ``warm_up`` first does the same once in a room of its own with a short question, unmeasured: a
    server's first room, join and answer pay for its lazy imports and first connections, which is not
    what is measured."""
    if warm_up:
        await join_while_ai_answers(ws_url, f"{room}-warm-up", question="hi", join_after_s=join_after_s, warm_up=False)
    async with websockets.connect(f"{ws_url}/ws/room/{room}?name=ann") as ann:
        await ann.recv()                                            # room_state
        await ann.send(json.dumps({"type": "message", "content": question, "user_id": "ann"}))
        await asyncio.sleep(join_after_s)
        t0 = time.perf_counter()
        async with websockets.connect(f"{ws_url}/ws/room/{room}?name=ben", open_timeout=60) as ben:
            await asyncio.wait_for(ben.recv(), 60)
            join_s = time.perf_counter() - t0
        answer_done = None
        while answer_done is None:
            msg = json.loads(await asyncio.wait_for(ann.recv(), 60))
            if msg["type"] == "ai_complete":
                answer_done = time.perf_counter() - t0
    return {"join_s": join_s, "answer_done_after_join_s": answer_done}
