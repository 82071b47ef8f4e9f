"""``json.loads`` for input from the network: nesting bounded, never a ``RecursionError``.

Python's parser recurses once per nesting level, so ``[[[[…]]]]`` a few thousand deep raises
``RecursionError``, which is not a ``ValueError``: code that catches bad JSON misses it, and the
request dies with a 500 (or a WebSocket with its connection). Here too-deep input is an ordinary
:class:`ValueError` (:class:`JSONTooDeep`) at a depth no real client needs.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads", "JSONTooDeep", "MAX_DEPTH"]

#: Deeper than any request of the OpenAI API or the lab's protocols (they nest < 10 levels).
MAX_DEPTH = 64


class JSONTooDeep(ValueError):
    def __init__(self, max_depth: int):
        super().__init__(f"The JSON is nested more than {max_depth} levels deep.")
        self.max_depth = max_depth


def loads(raw: str | bytes | bytearray, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; raise ``ValueError`` (``JSONTooDeep`` for too much nesting) on bad input."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JSONTooDeep(max_depth) from None
    if isinstance(value, (dict, list)):
        _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    """Iterative (a recursive walk would fail the same way the parser did)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise JSONTooDeep(max_depth)
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)) and child:
                stack.append((child, depth + 1))
            elif isinstance(child, (dict, list)) and depth + 1 > max_depth:
                raise JSONTooDeep(max_depth)
