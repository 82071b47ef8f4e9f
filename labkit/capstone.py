"""The capstone's checks (chapter 09): each runs the learner's function against real servers and real audio.

The source chapter's practice exercise asks for a realtime AI application: WebSockets both ways, voice
activity detection, streamed replies with latency metrics, typing and progress, several users at once,
and graceful errors. Chapter 09 builds it in six steps; each step is a function the learner writes, and
``await check_step(n, their_function, server)`` exercises it the way the finished app would:

1. ``ask_over_websocket(ws_url, prompt, seed) -> list[dict]``: the token messages of one reply.
2. ``cut_turns(samples, sample_rate) -> list[(start_s, end_s)]``: speech turns in a recording.
3. ``reply_metrics(arrivals) -> {"ttft_s": ..., "tpot_s": ...}``: from token arrival times.
4. ``indicator_states(messages) -> list[bool]``: is "typing…" shown after each progressive message?
5. ``share_a_room(ws_url, room) -> (transcript_a, transcript_b)``: two users, one room, one AI.
6. ``ask_resuming(base_url, prompt, seed) -> str``: a reply that survives a dropped connection.

A check never raises: it returns a :class:`~labkit.exercises.Result` (✅, ❌ with the reason, or ✏️ when
the function is still ``...``). ``notebooks/solutions/09_capstone_solution.ipynb`` passes all six, and
``tests/test_capstone.py`` holds the checks to passing it and failing the starter.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
from collections.abc import MutableMapping
from pathlib import Path

import httpx
import websockets

from .exercises import Result, is_unwritten_function
from .latency.metrics import request_metrics
from .netem import NetemProxy
from .speechdata import load_clean

__all__ = ["check_step", "STEPS", "scorecard", "Scorecard"]

STEPS = {1: "ask over WebSocket", 2: "cut voice into turns", 3: "TTFT and TPOT",
         4: "typing indicator", 5: "two users, one room", 6: "survive a disconnect"}
PROMPT = "Why does time to first token matter?"


async def check_step(step: int, answer, server) -> Result:
    """Run step ``step``'s check on the learner's function ``answer`` against ``server`` (a LabServer)."""
    if answer is ... or is_unwritten_function(answer):
        return Result(None, f"Step {step} ({STEPS[step]}): not attempted yet. Fill in the function and run the cell.")
    try:
        ok, message = await _CHECKS[step](answer, server)
    except Exception as e:            # the learner's code may raise anything: report it, never crash
        ok, message = False, f"your function raised {e.__class__.__name__}: {e}"
    return Result(ok, f"Step {step} ({STEPS[step]}): {message}")


async def _call(fn, *args):
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result


async def _http_reply(server, prompt: str, seed: int) -> dict:
    async with httpx.AsyncClient(timeout=60) as client:
        return (await client.post(server.url + "/api/chat", json={"message": prompt, "seed": seed})).json()


async def _step1(fn, server) -> tuple[bool, str]:
    seed = random.randrange(1000)
    tokens = await asyncio.wait_for(_call(fn, server.ws_url, PROMPT, seed), 60)
    expected = await _http_reply(server, PROMPT, seed)
    if not isinstance(tokens, list) or not all(isinstance(t, dict) and "content" in t for t in tokens):
        return False, "return the list of token messages (dicts with 'seq' and 'content') you received"
    if [t.get("seq") for t in tokens] != list(range(len(tokens))):
        return False, "the tokens' seq should run 0, 1, 2, …: did you keep only the 'token' messages, in order?"
    text = "".join(t["content"] for t in tokens)
    if text != expected["content"]:
        return False, f"the text differs from the server's answer ({len(text)} vs {len(expected['content'])} characters)"
    return True, f"{len(tokens)} tokens, the same reply the server gives over HTTP."


async def _step2(fn, server) -> tuple[bool, str]:
    samples, utterances = load_clean()
    turns = await _call(fn, samples.copy(), 16_000)
    turns = [(float(a), float(b)) for a, b in turns]
    truth = [(u.start_s, u.end_s) for u in utterances]
    matched = sum(any(abs(a - s) < 0.3 and abs(b - e) < 0.6 for a, b in turns) for s, e in truth)
    if not turns:
        return False, "no turns found: feed the samples to a VoiceActivityDetector and collect the SpeechEnd events"
    precision, recall = matched / len(turns), matched / len(truth)
    if recall < 0.9 or precision < 0.9:
        return False, (f"{len(turns)} turns found, {matched} of the {len(truth)} real ones matched "
                       f"(start within 0.3 s, end within 0.6 s). Check the units: seconds, not samples.")
    return True, f"{matched} of {len(truth)} utterances found, {len(turns) - matched} false turns."


async def _step3(fn, server) -> tuple[bool, str]:
    rng = random.Random(3)
    for _ in range(5):
        arrivals = sorted(rng.uniform(0.1, 0.5) + i * rng.uniform(0.01, 0.05) for i in range(rng.randint(3, 40)))
        got = await _call(fn, arrivals)
        m = request_metrics(arrivals)
        for key, want in (("ttft_s", m.ttft_s), ("tpot_s", m.tpot_s)):
            if not isinstance(got, dict) or key not in got:
                return False, "return a dict with 'ttft_s' and 'tpot_s'"
            if abs(got[key] - want) > 1e-9 + 1e-6 * want:
                hint = (" TPOT leaves TTFT out: (last − first) / (n − 1)." if key == "tpot_s" else "")
                return False, f"{key} is {got[key]:.4f} for arrivals {arrivals[:3]}…, expected {want:.4f}.{hint}"
    return True, "TTFT and TPOT match the lab's definitions."


async def _step4(fn, server) -> tuple[bool, str]:
    messages = []
    async with websockets.connect(server.ws_url + "/ws/chat/progressive") as ws:
        await ws.send(json.dumps({"type": "message", "content": PROMPT, "model": "slow-large", "max_tokens": 20}))
        while True:
            messages.append(json.loads(await ws.recv()))
            if messages[-1]["type"] in ("complete", "error"):
                break
    states = await _call(fn, messages)
    if not isinstance(states, list) or len(states) != len(messages):
        return False, "return one True/False per message: is the indicator shown after it?"
    first_token = next(i for i, m in enumerate(messages) if m["type"] == "token")
    if not any(states[:first_token]):
        return False, "the indicator should show while the model thinks (before the first token)"
    if any(states[first_token:]):
        return False, "the indicator should be hidden from the first token on, and after the reply"
    return True, "typing shows while the model thinks and hides when it speaks."


async def _step5(fn, server) -> tuple[bool, str]:
    room = f"capstone-{random.randrange(10**6)}"
    a, b = await asyncio.wait_for(_call(fn, server.ws_url, room), 60)
    if not a or a != b:
        return False, "both users should end with the same transcript (one list of lines each)"
    ai = [line for line in a if line.startswith("AI:")]
    users = [line for line in a if not line.startswith("AI:")]
    if len(users) < 2 or len(ai) < len(users):
        return False, f"expected both users' messages and an AI answer to each; got {len(users)} messages, {len(ai)} answers"
    return True, f"both users saw the same {len(a)} lines: {len(users)} messages, {len(ai)} answers."


async def _step6(fn, server) -> tuple[bool, str]:
    seed = random.randrange(1000)
    async with NetemProxy(server.port) as proxy:
        async def cut_twice() -> None:
            for delay in (0.06, 0.08):
                await asyncio.sleep(delay)
                proxy.drop_all()

        cutter = asyncio.create_task(cut_twice())
        text = await asyncio.wait_for(_call(fn, proxy.url, PROMPT, seed), 60)
        await cutter
    expected = await _http_reply(server, PROMPT, seed)
    if proxy.drops == 0:
        return False, "the connection was never cut: did the reply finish too fast? (run the check again)"
    if text != expected["content"]:
        return False, (f"after {proxy.drops} dropped connection(s) you had {len(text or '')} of "
                       f"{len(expected['content'])} characters: reconnect and resume from the last token")
    return True, f"the connection was cut {proxy.drops} time(s); the reply arrived whole, nothing twice."


_CHECKS = {1: _step1, 2: _step2, 3: _step3, 4: _step4, 5: _step5, 6: _step6}


class Scorecard(MutableMapping):
    """The capstone's ``results`` (step → :class:`Result`), kept in a small JSON file beside the notebook,
    so restarting the kernel (or the server) does not forget the steps already passed.

    Each check's latest result is saved as soon as it is stored; "not attempted yet" is not saved, so
    it never hides an earlier pass. The file holds only the outcome and message of each step.
    """

    def __init__(self, path: str | os.PathLike = "09_capstone.scorecard.json"):
        self.path = Path(path)
        self._results: dict[int, Result] = {}
        try:
            saved = json.loads(self.path.read_text())
            self._results = {int(k): Result(v["ok"], v["message"]) for k, v in saved.items() if int(k) in STEPS}
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError):   # a damaged file: start afresh, say so
            print(f"{self.path.name} could not be read; starting a fresh scorecard")

    def __getitem__(self, step: int) -> Result:
        return self._results[step]

    def __setitem__(self, step: int, result: Result) -> None:
        if step not in STEPS:
            raise KeyError(f"the capstone has steps {min(STEPS)} to {max(STEPS)}, not {step!r}")
        if result.ok is None and step in self._results:
            return                                     # "not attempted" never overwrites a real result
        self._results[step] = result
        self._save()

    def __delitem__(self, step: int) -> None:
        del self._results[step]
        self._save()

    def __iter__(self):
        return iter(sorted(self._results))

    def __len__(self) -> int:
        return len(self._results)

    def _save(self) -> None:
        data = {str(k): {"ok": r.ok, "message": r.message} for k, r in sorted(self._results.items()) if r.ok is not None}
        if not data and not self.path.exists():
            return                                     # nothing attempted yet: no file
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)                    # never a half-written file

    def __repr__(self) -> str:
        return f"<Scorecard {self.path.name}: {sum(1 for r in self._results.values() if r.ok)} of {len(STEPS)} pass>"


def scorecard(results: dict[int, Result], measured: dict | None = None) -> str:
    """A markdown scorecard: each step ✅/❌/✏️, then the learner's numbers beside the lab's."""
    lines = ["| step | | result |", "|---|---|---|"]
    for step, name in STEPS.items():
        r = results.get(step)
        icon = {True: "✅", False: "❌", None: "✏️"}[r.ok if r is not None else None]
        lines.append(f"| {step} | {name} | {icon} |")
    done = sum(1 for step in STEPS if results.get(step) is not None and results.get(step).ok)
    lines.append(f"\n**{done} of {len(STEPS)} steps pass.**")
    if measured:
        lines += ["", "| measure | yours | the lab's client |", "|---|---|---|"]
        for key, (yours, theirs) in measured.items():
            lines.append(f"| {key} | {yours:.1f} | {theirs:.1f} |")
    return "\n".join(lines)
