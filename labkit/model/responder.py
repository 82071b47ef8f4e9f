"""What the simulated model says: a small keyword responder over the lab's own topics.

It reads ``labkit/data/knowledge.json`` (:data:`labkit.corpus.KNOWLEDGE_PATH`) (topics with keywords and a few hand-written answers), scores each
topic by how many of its keywords occur in the last user message, and answers from the best one.
The choice among a topic's answers is made by the caller's random generator, so a seed fixes it;
``temperature == 0`` always takes the first answer, as a greedy decoder would.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..corpus import KNOWLEDGE_PATH
from .tools import last_user_text

__all__ = ["Responder", "default_responder", "KNOWLEDGE_PATH"]

_WORD = re.compile(r"[a-z0-9][a-z0-9\-]*")


@dataclass(frozen=True)
class Topic:
    name: str
    keywords: frozenset[str]
    answers: tuple[str, ...]


class Responder:
    def __init__(self, topics: list[Topic], fallback: tuple[str, ...]):
        if not fallback:
            raise ValueError("the responder needs at least one fallback answer")
        self.topics = topics
        self.fallback = fallback

    @classmethod
    def from_file(cls, path: Path = KNOWLEDGE_PATH) -> "Responder":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        topics = [
            Topic(t["name"], frozenset(k.lower() for k in t["keywords"]), tuple(t["answers"]))
            for t in raw["topics"]
        ]
        return cls(topics, tuple(raw["fallback"]))

    def topic_for(self, text: str) -> Topic | None:
        """The topic whose keywords best match ``text`` (ties go to the earlier topic), or None."""
        words = set(_WORD.findall(text.lower()))
        best, best_score = None, 0
        for topic in self.topics:
            score = len(words & topic.keywords)
            if score > best_score:
                best, best_score = topic, score
        return best

    def reply(self, messages: list[dict], rng: random.Random, temperature: float = 1.0) -> str:
        """The assistant's answer to a chat (only the last user message is read)."""
        text = last_user_text(messages)
        topic = self.topic_for(text)
        answers = topic.answers if topic else self.fallback
        if temperature == 0:
            return answers[0]
        return answers[rng.randrange(len(answers))]


@lru_cache(maxsize=1)
def default_responder() -> Responder:
    return Responder.from_file()
