"""The lab's own texts, at the bottom of the layers: what the speech set says and what the model knows.

Both the speech recogniser (its vocabulary) and the simulated model (its answers) need these, and
neither should reach into the other for them: the sentences live here and the knowledge file is read
here, from the package's data (:func:`labkit.resources.data_file`).
"""

from __future__ import annotations

import json
from functools import lru_cache

from .resources import data_file

__all__ = ["SENTENCES", "KNOWLEDGE_PATH", "knowledge"]

#: What the speakers say: sentences from the lab's own topics (chapter 05 also recognises them).
SENTENCES = (
    "Server-Sent Events stream tokens over plain HTTP.",
    "WebSockets carry messages in both directions.",
    "The first token arrived after two hundred milliseconds.",
    "Please stop talking when the assistant starts to answer.",
    "Voice activity detection decides when someone is speaking.",
    "Measure the latency at the ninety ninth percentile.",
    "The proxy was buffering the whole stream.",
    "Reconnect and resume from the last event identifier.",
    "Cancel the generation when the client goes away.",
    "Turn detection waits for half a second of silence.",
    "What is the weather like in the lab today?",
    "Streaming makes the answer feel much faster.",
    "Keep a little audio from before the speech begins.",
    "Two users joined the room and started typing.",
    "A synchronous call blocks the event loop for everyone.",
    "Send a heartbeat every fifteen seconds.",
    "The model answered with a short sentence.",
    "Use the asynchronous client inside the server.",
    "Noise in the room makes the threshold too low.",
    "Thank you, that was very helpful.",
    "Rate limits protect the service from bursts.",
    "The microphone records sixteen thousand samples per second.",
    "Interrupt the assistant and ask another question.",
    "Tokens per second should not include the first wait.",
)

#: The simulated model's topics, keywords and answers (see :mod:`labkit.model.responder`).
KNOWLEDGE_PATH = data_file("knowledge.json")


@lru_cache(maxsize=1)
def knowledge() -> dict:
    """``knowledge.json``, parsed once (shared: don't modify)."""
    return json.loads(KNOWLEDGE_PATH.read_text(encoding="utf-8"))
