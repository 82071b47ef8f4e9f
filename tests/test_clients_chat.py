"""Third-party chat clients against the local backend, unchanged: the official SDK's ``parse``,
langchain-openai, and the OpenAI Agents SDK's ``Runner`` (on Chat Completions, the API the lab serves).
Tool arguments and structured replies are checked with ``jsonschema``."""

from __future__ import annotations

import json

import jsonschema
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from wirecheck import checked_http_client

agents = pytest.importorskip("agents", reason="openai-agents is not installed")
langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")

agents.set_tracing_disabled(True)          # traces would go to OpenAI's servers


class Answer(BaseModel):
    topic: str
    explanation: str
    confidence: float = Field(ge=0, le=1)
    keywords: list[str]


def lookup_measurement(metric: str) -> str:
    """Look up a latency measurement the lab made, like time to first token."""
    return json.dumps({"metric": metric, "p50_ms": 212})


async def test_official_sdk_parse_gives_a_pydantic_object(server):
    http, checked = checked_http_client()
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-any", http_client=http)
    done = await client.chat.completions.parse(model="gpt-4o-mini", response_format=Answer, seed=4,
                                               messages=[{"role": "user", "content": "What is SSE?"}])
    answer = done.choices[0].message.parsed
    assert isinstance(answer, Answer) and 0 <= answer.confidence <= 1
    jsonschema.validate(json.loads(done.choices[0].message.content), Answer.model_json_schema())
    assert "SSE" in answer.explanation or "Server-Sent" in answer.explanation       # the answer it would give
    assert checked.completions == 1


async def test_langchain_bind_tools_structured_output_and_astream(server):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    http, checked = checked_http_client()
    llm = langchain_openai.ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="sk-any", seed=2,
                                      http_async_client=http)
    measure = tool(lookup_measurement)
    with_tools = llm.bind_tools([measure])
    question = HumanMessage("What was the time to first token?")
    first = await with_tools.ainvoke([question])
    (call,) = first.tool_calls
    assert call["name"] == "lookup_measurement"
    jsonschema.validate(call["args"], measure.args_schema.model_json_schema())
    result = ToolMessage(content=lookup_measurement(**call["args"]), tool_call_id=call["id"])
    final = await with_tools.ainvoke([question, first, result])
    assert "212" in final.content and not final.tool_calls

    chunks = [c async for c in with_tools.astream([question])]          # streamed tool call deltas
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert len(chunks) > 3 and merged.tool_calls[0]["name"] == "lookup_measurement"
    assert merged.tool_calls[0]["args"] == call["args"]                  # the same seed, the same call

    structured = await llm.with_structured_output(Answer).ainvoke("Explain WebSockets")
    assert isinstance(structured, Answer) and structured.keywords
    text = "".join([c.content async for c in llm.astream("What is SSE?")])
    assert "SSE" in text or "Server-Sent" in text
    assert checked.completions >= 3 and checked.chunks > 10


def _model(server, http):
    from agents import OpenAIChatCompletionsModel

    return OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=AsyncOpenAI(
        base_url=server.base_url, api_key="sk-any", http_client=http))


async def test_agents_runner_streams_a_function_tool_call(server):
    from agents import Agent, Runner, function_tool

    calls = []

    @function_tool
    def lookup(metric: str) -> str:
        """Look up a latency measurement the lab made, like time to first token."""
        calls.append(metric)
        return lookup_measurement(metric)

    http, checked = checked_http_client()
    agent = Agent(name="lab", instructions="Answer with measurements.", tools=[lookup], model=_model(server, http))
    run = Runner.run_streamed(agent, "What was the time to first token?")
    kinds = []
    async for event in run.stream_events():
        if event.type == "run_item_stream_event":
            kinds.append(event.item.type)
    assert calls and kinds[:2] == ["tool_call_item", "tool_call_output_item"]
    assert "212" in run.final_output and "lookup" in run.final_output
    assert checked.chunks > 5                   # both turns streamed, every chunk valid


async def test_agents_runner_with_an_output_type(server):
    from agents import Agent, Runner

    http, checked = checked_http_client()
    agent = Agent(name="lab", instructions="Explain.", output_type=Answer, model=_model(server, http))
    run = Runner.run_streamed(agent, "What is a WebSocket?")
    async for _ in run.stream_events():
        pass
    assert isinstance(run.final_output, Answer) and "WebSocket" in run.final_output.explanation
    assert checked.chunks > 5
