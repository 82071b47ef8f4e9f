"""A value that validates against a JSON Schema, taken from the conversation where it fits (pure).

The simulated model uses this for tool-call arguments (values from the user's question: a number
the question mentions, an enum value it names, a proper noun for a ``city``) and for structured
replies (string fields filled with the answer it would have given). Where nothing fits, a value is
drawn from the caller's random generator, so a seed fixes it. The supported subset covers what
function tools and ``response_format`` schemas use in practice: ``type`` (and type lists),
``properties``/``required``/``additionalProperties``, ``items``/``minItems``/``maxItems``/
``uniqueItems``, ``enum``, ``const``, ``anyOf``/``oneOf``/``allOf``, ``$ref`` into ``$defs``/
``definitions``, string ``minLength``/``maxLength``/``format``/``pattern`` (a candidate must match
it), and number bounds and ``multipleOf``.
"""

from __future__ import annotations

import random
import re
import time

import regex
from dataclasses import dataclass, field

__all__ = ["Context", "value_for", "UnsatisfiableSchema", "PATTERN_TIMEOUT_S"]

#: A schema's ``pattern`` comes from the client: matching it is bounded in time (the ``regex``
#: package's timeout), per candidate value and in all for one schema, so a catastrophic pattern (or
#: thousands of them) costs at most this much, never a frozen server.
PATTERN_TIMEOUT_S = 0.02
PATTERN_BUDGET_S = 0.2


@dataclass
class PatternBudget:
    """Seconds of pattern matching left for one schema (shared by every value made from it)."""
    seconds: float = PATTERN_BUDGET_S


class UnsatisfiableSchema(ValueError):
    """No value the simulated model can produce validates against the schema (say, a ``pattern`` that
    nothing in the conversation matches). Servers answer it as a client error, naming the schema."""


def _matches(pattern: str, value: str, budget: PatternBudget) -> bool:
    if budget.seconds <= 0:
        return False
    t0 = time.perf_counter()
    try:
        return regex.search(pattern, value, timeout=min(PATTERN_TIMEOUT_S, budget.seconds)) is not None
    except TimeoutError:
        return False
    except regex.error as e:
        raise UnsatisfiableSchema(f"invalid 'pattern' {pattern[:80]!r}: {e}") from None
    finally:
        budget.seconds -= time.perf_counter() - t0

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_TOKEN = re.compile(r"[^\s,;:!?()\[\]{}\"'“”]+")
_QUOTED = re.compile(r"[\"“']([^\"”']{1,80})[\"”']")
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_FORMATS = {"date": "2026-01-15", "date-time": "2026-01-15T09:30:00Z", "time": "09:30:00", "email": "learner@example.com",
            "uri": "https://example.com/", "url": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000",
            "hostname": "example.com", "ipv4": "127.0.0.1"}
_ANSWER_FIELDS = {"answer", "text", "response", "reply", "content", "summary", "explanation", "message", "reason",
                  "reasoning", "description", "output", "result", "final_answer", "details"}
_QUESTION_FIELDS = {"query", "question", "q", "prompt", "search", "input", "request", "topic", "subject", "keywords"}
_SMALL = {"the", "a", "an", "and", "or", "of", "in", "on", "at", "for", "to", "from", "is", "are", "was", "what",
          "whats", "what's", "how", "why", "when", "where", "which", "who", "me", "my", "i", "you", "your", "please",
          "tell", "about", "can", "could", "would", "do", "does", "did", "it", "its", "this", "that", "with", "be",
          "get", "give", "show", "find", "look", "up", "lookup", "now", "today", "there", "here", "much", "many"}


@dataclass
class Context:
    """Where values come from: the user's question, and (structured replies) the answer's text."""
    question: str = ""
    answer: str | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    _numbers: list[float] | None = None
    #: words the value is about (a tool's name and description): the question's words among them come first
    topic: frozenset[str] = frozenset()
    budget: PatternBudget = field(default_factory=PatternBudget)

    def numbers(self) -> list[float]:
        if self._numbers is None:
            self._numbers = [float(n) for n in _NUMBER.findall(self.question)]
        return self._numbers

    def proper_nouns(self) -> list[str]:
        """Capitalised words not at a sentence start, joined when adjacent ("New York")."""
        out, run, previous_end = [], [], ""
        for m in re.finditer(r"\S+", self.question):
            token = m.group().strip(",.;:!?()\"'")
            starts_sentence = previous_end == "" or previous_end[-1] in ".!?"
            if token[:1].isupper() and token.lower() not in _SMALL and not starts_sentence and token.isalpha():
                run.append(token)
            else:
                if run:
                    out.append(" ".join(run))
                run = []
            previous_end = m.group()
        if run:
            out.append(" ".join(run))
        return out

    def key_words(self) -> list[str]:
        return [w for w in _WORD.findall(self.question) if w.lower() not in _SMALL]


def _resolve(schema: dict, root: dict, depth: int = 0) -> dict:
    while isinstance(schema, dict) and "$ref" in schema and depth < 32:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"unsupported $ref {ref!r} (only local references)")
        target = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest}
        depth += 1
    return schema


def value_for(schema: object, ctx: Context, *, root: dict | None = None, name: str = "") -> object:
    """A value valid under ``schema`` (``name`` is the property it is for: a hint of what it means)."""
    if schema is True or schema == {} or schema is None:
        return _string({}, ctx, name)
    if not isinstance(schema, dict):
        raise ValueError("a JSON Schema is an object")
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _enum(schema["enum"], ctx)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(o, root) for o in schema[key]]
            usable = [o for o in options if o.get("type") != "null"] or options
            merged = {**{k: v for k, v in schema.items() if k != key}, **usable[0]}
            return value_for(merged, ctx, root=root, name=name)
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(_resolve(part, root))
        return value_for(merged, ctx, root=root, name=name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, ctx, root)
    if kind == "array":
        return _array(schema, ctx, root, name)
    if kind in ("integer", "number"):
        return _number(schema, ctx, integer=kind == "integer")
    if kind == "boolean":
        lowered = ctx.question.lower()
        if re.search(r"\b(yes|true|enable|on)\b", lowered):
            return True
        if re.search(r"\b(no|false|disable|off)\b", lowered):
            return False
        return ctx.rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, ctx, name)


def _enum(options: list, ctx: Context):
    lowered = ctx.question.lower()
    for option in options:
        if isinstance(option, str) and re.search(rf"\b{re.escape(option.lower())}\b", lowered):
            return option
    return options[ctx.rng.randrange(len(options))]


def _object(schema: dict, ctx: Context, root: dict) -> dict:
    properties = schema.get("properties") or {}
    required = schema.get("required")
    names = list(properties) if required is None and schema.get("additionalProperties") is False else (required or [])
    out = {}
    for prop in names:
        out[prop] = value_for(properties.get(prop, {}), ctx, root=root, name=prop)
    min_props = schema.get("minProperties", 0)
    for prop in properties:
        if len(out) >= min_props:
            break
        out.setdefault(prop, value_for(properties[prop], ctx, root=root, name=prop))
    return out


def _array(schema: dict, ctx: Context, root: dict, name: str) -> list:
    items = schema.get("items", {})
    lo, hi = schema.get("minItems", 0), schema.get("maxItems")
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", ctx.answer.strip()) if s] if ctx.answer else []
    item_schema = _resolve(items, root) if isinstance(items, dict) else {}
    want = max(lo, 1)
    if sentences and item_schema.get("type") == "string":      # a list of strings: one sentence each
        want = max(want, min(len(sentences), 3))
    if hi is not None:
        want = min(want, hi)
    out: list = []
    for i in range(want):
        sub = Context(ctx.question, sentences[i] if i < len(sentences) else ctx.answer, ctx.rng, ctx._numbers,
                      ctx.topic, ctx.budget)
        value = value_for(items, sub, root=root, name=name)
        tries = 0
        while schema.get("uniqueItems") and value in out and tries < 20:
            tries += 1
            value = _distinct(items, sub, root, name, i + tries)
        out.append(value)
    return out


def _distinct(items, ctx: Context, root: dict, name: str, k: int):
    value = value_for(items, ctx, root=root, name=name)
    if isinstance(value, str):
        return f"{value} {k}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value + k
    return value


def _number(schema: dict, ctx: Context, *, integer: bool):
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        lo = schema["exclusiveMinimum"] + (1 if integer else 1e-6)
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        hi = schema["exclusiveMaximum"] - (1 if integer else 1e-6)
    step = schema.get("multipleOf")

    def fits(x: float) -> bool:
        if integer and x != int(x):
            return False
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            return False
        return step is None or abs(x / step - round(x / step)) < 1e-9

    numbers = ctx.numbers()
    for i, x in enumerate(numbers):
        if fits(x):
            numbers.pop(i)                 # each number of the question fills one field
            return int(x) if integer else x
    a = lo if lo is not None else (0 if hi is None or hi >= 0 else hi - 100)
    b = hi if hi is not None else a + 100
    if step:
        k_lo, k_hi = int(-(-a // step)), int(b // step)
        x = step * ctx.rng.randint(k_lo, max(k_lo, k_hi))
        return int(x) if integer else x
    if integer:
        return ctx.rng.randint(int(-(-a // 1)), int(b // 1))
    return round(ctx.rng.uniform(a, b), 2)


def _string(schema: dict, ctx: Context, name: str) -> str:
    fmt = schema.get("format")
    pattern = schema.get("pattern")
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    candidates: list[str] = []
    if fmt in _FORMATS:
        candidates.append(_FORMATS[fmt])
    if ctx.answer is not None:
        if words and words[-1] in ("title", "name", "label", "heading"):
            candidates.append(" ".join(ctx.answer.split()[:6]).rstrip(".,;:"))
        candidates.append(ctx.answer)
    quoted = _QUOTED.findall(ctx.question)
    nouns = ctx.proper_nouns()
    keys = ctx.key_words()
    if set(words) & _QUESTION_FIELDS:
        candidates += quoted + [" ".join(keys) or ctx.question.strip()]
    candidates += quoted + nouns
    # the question's words that the tool is about ("first token" for a latency lookup), then all of its
    # significant words without the field's own name
    about = [w for w in keys if w.lower() in ctx.topic and w.lower() not in set(words)]
    if about:
        candidates.append(" ".join(about[:6]))
    subject = [w for w in keys if w.lower() not in set(words)]
    if subject:
        candidates.append(" ".join(subject[:6]))
    candidates += keys
    candidates.append(name.replace("_", " ") if name else "example")
    if pattern is not None:                  # any token of the question may be the one that fits (a zip code)
        candidates += _TOKEN.findall(ctx.question)[:200]
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    for value in candidates:
        value = value.strip()
        if hi is not None:
            value = value[:hi]
        if len(value) < lo:
            value = value + "x" * (lo - len(value))
        if pattern is not None and not _matches(pattern, value, ctx.budget):
            continue
        if value or lo == 0:
            return value
    if pattern is not None:
        raise UnsatisfiableSchema(f"the simulated model found no value for {name or 'a string'!r} that matches "
                                  f"the pattern {pattern[:80]!r}: it takes values from the conversation, so "
                                  f"mention one in the question")
    return "x" * lo
