"""The simulated model's tool decisions, arguments and structured replies (pure), checked with a
real JSON Schema validator (``jsonschema``); then Chat Completions on the wire, validated strictly
against the SDK's models."""

from __future__ import annotations

import json
import random
from typing import Literal, Optional

import httpx
import jsonschema
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, Field

from labkit.model import PROFILES, plan_completion
from labkit.model.tools import (ToolSpecError, answer_from_tool_results, decide_tool_calls, parse_response_format,
                                parse_tool_choice, parse_tools, structured_reply)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.", "strict": True,
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit", "days"],
                   "properties": {"city": {"type": "string"},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                  "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
MEASUREMENT = {"type": "function", "function": {
    "name": "lookup_measurement", "description": "Look up a latency measurement the lab made, like time to first token.",
    "parameters": {"type": "object", "required": ["metric"], "properties": {"metric": {"type": "string"}}}}}
TOOLS = parse_tools([WEATHER, MEASUREMENT])
SCHEMA = {t.name: t.parameters for t in TOOLS}


class Step(BaseModel):
    explanation: str
    output: str


class Report(BaseModel):
    title: str
    steps: list[Step] = Field(min_length=1, max_length=3)
    confidence: float = Field(ge=0, le=1)
    verdict: Literal["good", "bad"]
    tags: list[str]
    note: Optional[str]
    count: int = Field(multiple_of=5, ge=10)


def user(text):
    return [{"role": "user", "content": text}]


def check(calls):
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), SCHEMA[call.name])
    return calls


@pytest.mark.parametrize("choice, question, names", [
    ("auto", "What's the weather in Paris for 3 days, in fahrenheit?", ["get_weather"]),
    ("auto", "What was the time to first token?", ["lookup_measurement"]),
    ("auto", "Hello there!", []),
    ("none", "What's the weather in Paris?", []),
    ("required", "Hello there!", ["get_weather"]),
    ("lookup_measurement", "What's the weather in Paris?", ["lookup_measurement"]),
])
def test_the_decision_follows_tool_choice_and_the_question(choice, question, names):
    calls = check(decide_tool_calls(user(question), TOOLS, choice, True, random.Random(1)))
    assert [c.name for c in calls] == names


def test_arguments_come_from_the_question_and_are_seeded():
    (call,) = decide_tool_calls(user("What's the weather in Paris for 3 days, in fahrenheit?"), TOOLS,
                                "auto", True, random.Random(7))
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "fahrenheit", "days": 3}
    a = decide_tool_calls(user("Hi"), TOOLS, "required", True, random.Random(5))
    assert a == decide_tool_calls(user("Hi"), TOOLS, "required", True, random.Random(5))
    assert a[0].id.startswith("call_")


def test_parallel_calls_and_their_switch():
    question = user("Weather in Oslo, and the time to first token measurement?")
    assert [c.name for c in check(decide_tool_calls(question, TOOLS, "auto", True))] == ["lookup_measurement",
                                                                                         "get_weather"]
    assert len(decide_tool_calls(question, TOOLS, "auto", False)) == 1


@pytest.mark.parametrize("seed", range(20))
def test_arguments_always_validate_even_for_awkward_schemas(seed):
    schema = Report.model_json_schema()
    tool = parse_tools([{"type": "function", "name": "file_report", "parameters": schema}])   # Realtime shape
    (call,) = decide_tool_calls(user("file a report"), tool, "required", True, random.Random(seed))
    jsonschema.validate(json.loads(call.arguments), schema)
    Report.model_validate_json(call.arguments)


def test_after_tool_results_the_model_answers_from_them():
    messages = user("What's the weather in Paris?") + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"temperature_c": 21, "sky": "clear"})}]
    assert decide_tool_calls(messages, TOOLS, "auto") == ()
    answer = answer_from_tool_results(messages)
    assert "get_weather" in answer and "21" in answer and "clear" in answer
    plan = plan_completion(messages, PROFILES["instant"], seed=1, tools=TOOLS)
    assert plan.finish_reason == "stop" and plan.text == answer


@pytest.mark.parametrize("seed", range(10))
def test_structured_replies_validate(seed):
    fmt = parse_response_format({"type": "json_schema", "json_schema": {
        "name": "report", "strict": True, "schema": Report.model_json_schema()}}, user("Report on SSE"))
    reply = structured_reply("SSE streams tokens. Browsers reconnect by themselves.", fmt, user("Report on SSE"),
                             random.Random(seed))
    jsonschema.validate(json.loads(reply), Report.model_json_schema())
    report = Report.model_validate_json(reply)
    assert report.steps[0].explanation.startswith("SSE streams tokens")


def test_json_object_needs_the_word_json_and_bad_specs_name_their_parameter():
    assert parse_response_format({"type": "json_object"}, user("answer in JSON")) == {"type": "json_object"}
    with pytest.raises(ToolSpecError) as e:
        parse_response_format({"type": "json_object"}, user("answer"))
    assert e.value.param == "messages"
    with pytest.raises(ToolSpecError) as e:
        parse_tools([{"type": "function", "function": {"name": "has space"}}])
    assert e.value.param == "tools[0].function.name"
    with pytest.raises(ToolSpecError):
        parse_tool_choice({"type": "function", "function": {"name": "nope"}}, TOOLS)


# ------------------------------------------------------------------------------------------ on the wire

def _post(server, **body):
    return httpx.post(server.base_url + "/chat/completions", json={"model": "gpt-4o-mini", **body}, timeout=30)


def _stream(server, **body):
    chunks = []
    with httpx.stream("POST", server.base_url + "/chat/completions", timeout=30,
                      json={"model": "gpt-4o-mini", "stream": True, **body}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(ChatCompletionChunk.model_validate_json(line[6:], strict=True))
    return chunks


def test_streamed_tool_call_deltas_on_the_wire(server):
    chunks = _stream(server, seed=3, tools=[WEATHER, MEASUREMENT],
                     messages=user("Weather in Oslo, and the time to first token measurement?"))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    assert first.tool_calls[0].index == 0 and first.tool_calls[0].id.startswith("call_")
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(d.index, {"name": None, "arguments": ""})
            if d.function.name:
                entry["name"] = d.function.name
            entry["arguments"] += d.function.arguments or ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert sorted(c["name"] for c in calls.values()) == ["get_weather", "lookup_measurement"]
    for c in calls.values():
        jsonschema.validate(json.loads(c["arguments"]), SCHEMA[c["name"]])
    # the same seed, the same calls
    again = _stream(server, seed=3, tools=[WEATHER, MEASUREMENT],
                    messages=user("Weather in Oslo, and the time to first token measurement?"))
    assert [c.model_dump() for c in again[:-1]][0]["choices"] == [c.model_dump() for c in chunks[:-1]][0]["choices"]


def test_whole_completion_with_a_forced_tool_then_a_tool_message(server):
    r = _post(server, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
              messages=user("Hi"), parallel_tool_calls=False)
    whole = ChatCompletion.model_validate_json(r.text, strict=True)
    assert whole.choices[0].finish_reason == "tool_calls"
    (call,) = whole.choices[0].message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), SCHEMA["get_weather"])
    follow = user("Hi") + [whole.choices[0].message.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees"}]
    answer = ChatCompletion.model_validate_json(_post(server, tools=[WEATHER], messages=follow).text, strict=True)
    assert answer.choices[0].finish_reason == "stop" and "Sunny, 24 degrees" in answer.choices[0].message.content
    bad = _post(server, tools=[WEATHER], tool_choice="always", messages=user("Hi"))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tool_choice"


def test_json_object_and_json_schema_replies_on_the_wire(server):
    whole = ChatCompletion.model_validate_json(_post(server, seed=1, response_format={"type": "json_object"},
                                                     messages=user("What is SSE? Answer in JSON.")).text, strict=True)
    assert "answer" in json.loads(whole.choices[0].message.content)
    schema = Report.model_json_schema()
    chunks = _stream(server, seed=2, messages=user("Report on SSE"), response_format={
        "type": "json_schema", "json_schema": {"name": "report", "strict": True, "schema": schema}})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), schema)
    refused = _post(server, response_format={"type": "json_object"}, messages=user("What is SSE?"))
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages"


def test_a_pattern_nothing_matches_is_a_clear_client_error_and_a_catastrophic_one_is_bounded(server):
    """The model takes values from the conversation: a `pattern` it cannot meet is the request's fault
    (400 naming the schema, not a 500), and a pattern built to backtrack forever costs a bounded time."""
    from labkit.model.schema_values import PATTERN_BUDGET_S, Context, UnsatisfiableSchema, value_for

    def ask(pattern, question="look up the zip code", n=1):
        props = {f"p{k}": {"type": "string", "pattern": pattern} for k in range(n)}
        tool = {"type": "function", "function": {"name": "zip", "description": "zip code lookup", "parameters": {
            "type": "object", "properties": props, "required": list(props)}}}
        return httpx.post(server.base_url + "/chat/completions", timeout=30, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}],
            "tools": [tool], "tool_choice": "required"})

    r = ask("^[0-9]{5}$")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schema", r.text
    assert "pattern" in r.json()["error"]["message"] and r.json()["error"]["param"] == "tools"
    r = ask("^[0-9]{5}$", "look up the zip code 94110")
    assert r.status_code == 200
    assert json.loads(r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"p0": "94110"}
    assert ask("([").status_code == 400                                         # not a regular expression at all
    # (a|aa)+$ against a long run of a's backtracks exponentially: each of 50 fields first meets that
    # token (a timeout), then "b" fits; the fields share one budget, so once it is spent nothing matches
    evil = "^(a|aa)+$|^b$"
    ctx = Context(question="a" * 40 + "b " * 3)
    with pytest.raises(UnsatisfiableSchema):
        value_for({"type": "object", "properties": {f"p{k}": {"type": "string", "pattern": evil} for k in range(50)},
                   "required": [f"p{k}" for k in range(50)]}, ctx)
    assert ctx.budget.seconds <= 0 < PATTERN_BUDGET_S                            # spent, and then no more
