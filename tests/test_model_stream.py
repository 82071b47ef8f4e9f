"""The model server's cheap streams (issue #18) send exactly the bytes they sent before.

* a token's chunk rendered from the stream's template is byte for byte ``encode_event(json.dumps(
  content_chunk(...)))``, for any text (quotes, backslashes, control characters, non-ASCII, emoji);
* a whole stream (role, tokens, finish, usage, ``[DONE]``; function calls; the teaching fault; an
  empty reply) is the concatenation of the chunks built the plain way, however it is cut into writes;
* over a real server's ``/v1`` the body on the wire is those bytes, with the server's id and time;
* :class:`TokenClock` never runs a callback before its time, runs all of one millisecond from one
  timer, and forgets a cancelled one; :class:`ScheduledStream` waits for a slow write and sends what
  fell due meanwhile in the next one, counts a stream closed early as cancelled, and reports a write
  that fails.
"""

from __future__ import annotations

import asyncio
import json
import random

import httpx

from labkit.model import CompletionPlan, plan_completion, plan_tool_calls, resolve_model
from labkit.model.tools import ToolCall
from labkit.protocol import openai_chat as oc
from labkit.protocol.sse import encode_event
from labkit.server.modelstream import ChunkSchedule, ScheduledStream, TokenClock
from labkit.server.state import ServerStats
from waiting import until

PROMPT = [{"role": "user", "content": "How do Server-Sent Events work?"}]


def _frame(obj: dict) -> bytes:
    """A chunk the plain way (what the model server wrote before the template)."""
    return encode_event(json.dumps(obj, separators=(",", ":")))


def _plain_stream(plan, model: str, cid: str, created: int, include_usage: bool, fail_after=None) -> bytes:
    out = []
    if plan.tool_calls:
        for i, token in enumerate(plan.tokens):
            k = plan.call_of_token[i]
            if i == 0 or plan.call_of_token[i - 1] != k:
                out.append(_frame(oc.tool_call_start_chunk(cid, created, model, k, plan.tool_calls[k], i == 0)))
            out.append(_frame(oc.tool_call_arguments_chunk(cid, created, model, k, token)))
    else:
        out.append(_frame(oc.role_chunk(cid, created, model)))
        for i, token in enumerate(plan.tokens):
            if fail_after is not None and i >= fail_after:
                out.append(_frame(oc.error_body("The model failed while generating (a fault injected by "
                                                "fail_after_tokens).", type="server_error", code="model_failure")))
                return b"".join(out)
            out.append(_frame(oc.content_chunk(cid, created, model, token)))
    out.append(_frame(oc.finish_chunk(cid, created, model, plan.finish_reason)))
    if include_usage:
        out.append(_frame(oc.usage_chunk(cid, created, model, plan.usage)))
    out.append(oc.DONE)
    return b"".join(out)


def test_a_token_chunk_from_the_template_is_the_plain_chunks_bytes():
    rng = random.Random(11)
    alphabet = ["a", " ", '"', "\\", "é", "\u2028", "\x00", "\x1f", "\t", "\n", "\r", "😀", "<", "}", "/", "'",
                "\ud7ff", "ß", "{", ":", ","]
    for model, cid, created in (("gpt-4o-mini", "chatcmpl-abc", 0), ("gpt-4o", oc.completion_id(), 1_765_000_000),
                                ("slow-large", "chatcmpl-x\"y", 7)):
        plan = plan_completion(PROMPT, resolve_model("gpt-4o-mini"), seed=1, max_tokens=3)
        schedule = ChunkSchedule(plan, model, cid, created)
        for _ in range(300):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
            assert schedule.content_frame(text) == _frame(oc.content_chunk(cid, created, model, text)), text


def _taken(schedule: ChunkSchedule, rng: random.Random) -> list[bytes]:
    """Take the whole stream at random moments (each take gets the next part and whatever is due)."""
    writes, elapsed = [], -1.0
    while (due := schedule.next_due()) is not None:
        elapsed = max(elapsed, due) + rng.choice([0.0, 0.0, 0.001, 0.05, 1.0])
        data, _ = schedule.take(elapsed)
        writes.append(data)
    return writes


def test_every_kind_of_stream_is_the_plain_chunks_in_any_cut():
    rng = random.Random(5)
    profile = resolve_model("gpt-4o-mini").scaled(0.01)
    text = plan_completion(PROMPT, profile, seed=3, max_tokens=14)
    empty = plan_completion(PROMPT, profile, seed=3, max_tokens=0)
    calls = (ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
             ToolCall(id="call_2", name="get_time", arguments='{"zone": "CET"}'))
    tools = plan_tool_calls(calls, PROMPT, profile, seed=2)
    assert len(text.tokens) == 14 and not empty.tokens and len(tools.tokens) > 4
    cases = [(text, True, None), (text, False, None), (text, True, 5), (text, True, 0), (text, False, 99),
             (empty, True, None), (tools, True, None), (tools, False, 2)]
    for plan, usage, fail_after in cases:
        want = _plain_stream(plan, "gpt-4o-mini", "chatcmpl-1", 3, usage, fail_after)
        for _ in range(20):
            schedule = ChunkSchedule(plan, "gpt-4o-mini", "chatcmpl-1", 3, usage, fail_after)
            writes = _taken(schedule, rng)
            assert b"".join(writes) == want and schedule.ended
        late = ChunkSchedule(plan, "gpt-4o-mini", "chatcmpl-1", 3, usage, fail_after)
        assert late.take(1e9)[0] == want and late.next_due() is None        # all due: one write


def test_the_v1_stream_on_the_wire_is_the_plain_chunks(server):
    body = {"model": "gpt-4o-mini", "messages": PROMPT, "stream": True, "seed": 9, "max_tokens": 12,
            "stream_options": {"include_usage": True}}
    with httpx.Client(timeout=30) as http, http.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
        raw = b"".join(r.iter_raw())
    first = json.loads(raw.split(b"\n\n", 1)[0].removeprefix(b"data: "))
    req = oc.parse_chat_request(json.dumps(body).encode())
    plan = plan_completion(req.messages, resolve_model("gpt-4o-mini").scaled(server.config.time_scale), seed=9,
                           temperature=req.temperature, max_tokens=12)
    assert raw == _plain_stream(plan, "gpt-4o-mini", first["id"], first["created"], True)


async def test_the_clock_runs_each_callback_at_or_after_its_time_one_timer_per_tick():
    loop = asyncio.get_running_loop()
    timers = []

    class CountingLoop:                     # the real loop, its timers counted
        def call_at(self, when, *args):
            timers.append(when)
            return loop.call_at(when, *args)

    clock = TokenClock(CountingLoop())
    ran: list[tuple[str, float, float]] = []
    done = asyncio.Event()
    base = loop.time() + 0.05
    for name, at in (("a", base), ("b", base + 0.0002), ("c", base + 0.0004), ("d", base + 0.02)):
        clock.call_at(at, lambda name=name, at=at: ran.append((name, at, loop.time())))
    gone = clock.call_at(base + 0.01, lambda: ran.append(("cancelled", 0, 0)))
    clock.cancel(gone)
    clock.call_at(base + 0.03, done.set)
    await asyncio.wait_for(done.wait(), 10)
    assert [name for name, _, _ in ran] == ["a", "b", "c", "d"]
    assert all(when >= at for _, at, when in ran)                    # never early on the loop's clock
    assert len(timers) <= 5                 # a, b and c share one or two milliseconds: fewer timers than callbacks
    assert clock.pending() == 0


class _Writer:
    """A response's body writes: each one finishes at once, or waits until released when ``slow``
    (every write) or from write number ``hold_from`` on (counting from 0)."""

    def __init__(self, fail_on: int | None = None, hold_from: int | None = None):
        self.writes: list[bytes] = []
        self.slow = False
        self.release = asyncio.Event()
        self.fail_on = fail_on
        self.hold_from = hold_from

    async def __call__(self, chunk: bytes) -> bool:
        if self.fail_on is not None and len(self.writes) == self.fail_on:
            raise ConnectionError("the socket broke")
        self.writes.append(chunk)
        if self.slow or (self.hold_from is not None and len(self.writes) > self.hold_from):
            await self.release.wait()
        return True


async def test_a_slow_write_holds_the_stream_and_what_fell_due_goes_out_together():
    loop = asyncio.get_running_loop()
    # the first token now, the others a second later: they fall due while the first write waits
    plan = CompletionPlan(tokens=("One", " two", " three", " four"), due_s=(0.0, 1.0, 1.01, 1.02),
                          finish_reason="stop", prompt_tokens=15)
    stats, write = ServerStats(), _Writer()
    write.slow = True                        # the first write (role + first token) waits for the reader
    stream = ScheduledStream(ChunkSchedule(plan, "gpt-4o-mini", "c", 0, True), loop.time(), write,
                             TokenClock(loop), stats)
    while not write.writes:
        await asyncio.sleep(0.001)
    await asyncio.sleep(plan.due_s[-1] + 0.05)          # every later token falls due meanwhile
    assert len(write.writes) == 1 and stats.model_streams_active == 1 and not stream.done.done()
    write.slow = False
    write.release.set()
    await asyncio.wait_for(stream.done, 10)
    assert len(write.writes) == 2                      # the rest in one write, the same bytes
    assert b"".join(write.writes) == _plain_stream(plan, "gpt-4o-mini", "c", 0, True)
    stream.close()
    assert stats.model_streams_active == 0 and stats.model_streams_cancelled == 0 and stats.tokens_generated == 4


async def test_a_stream_closed_early_is_cancelled_and_a_failed_write_is_reported():
    loop = asyncio.get_running_loop()
    # The client leaves while the second write is still on its way (held until released), so the
    # stream is still running at the close whatever the shared machine's pauses: with the writes
    # finishing at once, a 0.5 s stall once let the whole stream out before the close.
    plan = CompletionPlan(tokens=("One", " two", " three", " four", " five"), due_s=(0.0, 0.005, 0.05, 0.06, 0.07),
                          finish_reason="stop", prompt_tokens=15)
    stats, clock = ServerStats(), TokenClock(loop)
    write = _Writer(hold_from=1)
    stream = ScheduledStream(ChunkSchedule(plan, "gpt-4o-mini", "c", 0), loop.time(), write, clock, stats)
    await until(lambda: len(write.writes) == 2, 10)
    stream.close()
    stream.close()                                      # twice is harmless
    write.release.set()                                 # the held write finishes after the close
    await asyncio.sleep(plan.due_s[-1] + 0.05)          # every later token has fallen due meanwhile
    assert len(write.writes) == 2 and not stream.done.done()         # nothing more after the close
    assert stats.model_streams_active == 0 and stats.model_streams_cancelled == 1
    broken = _Writer(fail_on=1)
    failing = ScheduledStream(ChunkSchedule(plan, "gpt-4o-mini", "c", 0), loop.time(), broken, clock, stats)
    try:
        await asyncio.wait_for(failing.done, 10)
        raise AssertionError("the failed write was not reported")
    except ConnectionError:
        pass
    failing.close()
    assert stats.model_streams_cancelled == 2 and stats.model_streams_active == 0
