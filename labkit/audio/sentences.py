"""Cut a reply into sentences for streaming synthesis: the first sentence is spoken while the rest
is still being synthesized, so the first audio never waits for the whole answer."""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each sentence's end (``.!?`` then white space); each piece keeps its trailing
    white space, so the pieces join back to ``text`` exactly. No empty pieces; ``""`` gives ``[]``."""
    pieces, start = [], 0
    for match in _END.finditer(text):
        pieces.append(text[start:match.end()])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in pieces if p]
