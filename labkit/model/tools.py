"""What the simulated model does with function tools and response schemas (pure, deterministic).

* **Whether to call a tool** (:func:`decide_tool_calls`): ``tool_choice`` ``"none"`` never calls;
  a named function is always called; ``"required"`` calls the best match (else the first tool);
  ``"auto"`` calls the tools whose name or description shares words with the user's last question
  (the best one, or every match when ``parallel_tool_calls`` is on), and none when the question
  matches nothing or when the conversation ends with tool results (it answers from them instead).
* **The arguments** always validate against the tool's JSON Schema: values come from the question
  where they fit (a number it mentions, an enum value it names, a proper noun), and are drawn from
  the seeded random generator otherwise (:mod:`labkit.model.schema_values`).
* **Answering from tool results** (:func:`answer_from_tool_results`): the reply reports what the
  tools returned, each by name.
* **Structured replies** (:func:`structured_reply`): ``json_object`` gives ``{"answer": ...}``;
  ``json_schema`` gives an instance of the schema whose text fields hold the answer.

Both API shapes of a tool are read: Chat Completions (``{"type": "function", "function": {...}}``)
and Realtime (``{"type": "function", "name": ..., "parameters": ...}``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from .schema_values import Context, value_for

__all__ = ["Tool", "ToolCall", "ToolSpecError", "parse_tools", "parse_tool_choice", "decide_tool_calls",
           "answer_from_tool_results", "structured_reply", "parse_response_format", "last_user_text"]

_WORD = re.compile(r"[a-z0-9]+")
_IGNORED = {"the", "a", "an", "and", "or", "of", "in", "on", "at", "for", "to", "from", "is", "are", "was", "be",
            "what", "how", "why", "when", "where", "which", "who", "me", "my", "i", "you", "your", "it", "its",
            "this", "that", "with", "by", "as", "can", "do", "does", "get", "set", "give", "tell", "please",
            "returns", "return", "current", "given", "use", "used", "call", "function", "tool", "value", "values",
            "some", "any", "all", "one", "about", "s", "t"}


class ToolSpecError(ValueError):
    """A malformed ``tools`` / ``tool_choice`` / ``response_format``; ``param`` names the culprit."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message, self.param = message, param


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})

    def words(self) -> tuple[set[str], set[str]]:
        """Significant words of the name (``get_weather``, ``lookupMeasurement``) and of the description."""
        spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", self.name).replace("_", " ").replace("-", " ")
        return _significant(spaced), _significant(self.description)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str              # JSON text, as the API sends it


def _significant(text: str) -> set[str]:
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _IGNORED or len(w) < 2:
            continue
        words.add(w)
        if w.endswith("s") and len(w) > 3:          # plural and singular meet
            words.add(w[:-1])
    return words


def parse_tools(raw: object, param: str = "tools") -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ToolSpecError(f"Invalid type for '{param}': expected an array of objects.", param)
    tools = []
    for i, spec in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(spec, dict):
            raise ToolSpecError(f"Invalid type for '{where}': expected an object.", where)
        if spec.get("type", "function") != "function":
            raise ToolSpecError(f"Invalid value for '{where}.type': the lab's simulated model supports 'function' "
                                f"tools only.", f"{where}.type")
        fn = spec.get("function", spec) if "function" in spec else spec
        inner = f"{where}.function" if "function" in spec else where
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ToolSpecError(f"Invalid '{inner}.name': expected a string of 1-64 letters, digits, '_' or '-'.",
                                f"{inner}.name")
        parameters = fn.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise ToolSpecError(f"Invalid type for '{inner}.parameters': expected an object.", f"{inner}.parameters")
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise ToolSpecError(f"Invalid type for '{inner}.description': expected a string.", f"{inner}.description")
        tools.append(Tool(name, description, parameters))
    return tuple(tools)


def parse_tool_choice(raw: object, tools: tuple[Tool, ...], param: str = "tool_choice") -> str:
    """``"auto"`` / ``"none"`` / ``"required"``, or the name of the function that must be called."""
    if raw is None:
        return "auto"
    if raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = (raw.get("function") or {}).get("name") if "function" in raw else raw.get("name")
        if any(t.name == name for t in tools):
            return name
        raise ToolSpecError(f"Invalid value for '{param}': no function named '{name}' in tools.", param)
    raise ToolSpecError(f"Invalid value for '{param}': expected 'none', 'auto', 'required' or a named function.",
                        param)


def last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("text"))
    return ""


def _ends_with_tool_results(messages: list[dict]) -> bool:
    return bool(messages) and messages[-1].get("role") == "tool"


def _score(tool: Tool, question: set[str]) -> int:
    name, description = tool.words()
    return 3 * len(name & question) + len(description & question)


def decide_tool_calls(messages: list[dict], tools: tuple[Tool, ...], tool_choice: str = "auto",
                      parallel: bool = True, rng: random.Random | None = None) -> tuple[ToolCall, ...]:
    """The calls the model makes now (empty: it answers in text instead)."""
    rng = rng or random.Random(0)
    if not tools or tool_choice == "none":
        return ()
    question = last_user_text(messages)
    words = _significant(question)
    scores = [(_score(t, words), -i, t) for i, t in enumerate(tools)]
    ranked = [t for s, _, t in sorted(scores, key=lambda x: (x[0], x[1]), reverse=True) if s > 0]
    if tool_choice not in ("auto", "required"):
        chosen = [next(t for t in tools if t.name == tool_choice)]
    elif tool_choice == "required":
        chosen = ranked[:1] or [tools[0]]
    elif _ends_with_tool_results(messages) or not ranked:
        return ()
    else:
        chosen = ranked if parallel else ranked[:1]
    calls = []
    for tool in chosen:
        name_words, description_words = tool.words()
        context = Context(question=question, rng=rng, topic=frozenset(name_words | description_words))
        arguments = value_for(tool.parameters, context)
        call_id = "call_" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                                    for _ in range(24))
        calls.append(ToolCall(call_id, tool.name, json.dumps(arguments, ensure_ascii=False)))
    return tuple(calls)


def _describe(content: object) -> str:
    if isinstance(content, list):                      # content parts
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = str(content).strip()
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_describe(json.dumps(v)) if isinstance(v, (dict, list)) else v}"
                         for k, v in value.items()) or "nothing"
    if isinstance(value, list):
        return ", ".join(_describe(json.dumps(v)) for v in value) or "nothing"
    return str(value)


def answer_from_tool_results(messages: list[dict]) -> str | None:
    """When the conversation ends with tool results, the answer built from them; else None."""
    if not _ends_with_tool_results(messages):
        return None
    names = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                names[call.get("id")] = (call.get("function") or {}).get("name", "the tool")
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    parts = [f"{names.get(m.get('tool_call_id'), 'the tool')} returned {_describe(m.get('content', ''))}"
             for m in reversed(results)]
    return "I looked it up: " + "; ".join(parts) + "."


def parse_response_format(raw: object, messages: list[dict]) -> dict | None:
    """None (plain text), ``{"type": "json_object"}``, or ``{"type": "json_schema", "schema": ..., "name": ...}``."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in ("text", "json_object", "json_schema"):
        raise ToolSpecError("Invalid value for 'response_format.type': supported values are 'text', 'json_object' "
                            "and 'json_schema'.", "response_format.type")
    if raw["type"] == "text":
        return None
    if raw["type"] == "json_object":
        said = " ".join(json.dumps(m.get("content", "")) for m in messages).lower()
        if "json" not in said:
            raise ToolSpecError("'messages' must contain the word 'json' in some form, to use 'response_format' of "
                                "type 'json_object'.", "messages")
        return {"type": "json_object"}
    spec = raw.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ToolSpecError("Missing required parameter: 'response_format.json_schema.name'.",
                            "response_format.json_schema.name")
    schema = spec.get("schema", {"type": "object", "properties": {}})
    if not isinstance(schema, dict):
        raise ToolSpecError("Invalid type for 'response_format.json_schema.schema': expected an object.",
                            "response_format.json_schema.schema")
    return {"type": "json_schema", "name": spec["name"], "schema": schema, "strict": bool(spec.get("strict"))}


def structured_reply(answer: str, response_format: dict, messages: list[dict], rng: random.Random) -> str:
    """The answer, as JSON in the requested format (always valid against the schema)."""
    if response_format["type"] == "json_object":
        return json.dumps({"answer": answer}, ensure_ascii=False)
    value = value_for(response_format["schema"], Context(question=last_user_text(messages), answer=answer, rng=rng))
    return json.dumps(value, ensure_ascii=False)
