"""Timelines that stay readable: labelled moments whose labels never overlap, and a progressive reply
(typing, progress, tokens) drawn as lanes.

Labels are placed greedily, measured with the figure's own renderer: each goes on the highest row
where its box clears every label placed before it. ``overlapping(texts)`` is the check (the
notebooks assert it; ``tests/test_timeline.py`` too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.text import Text
from matplotlib.transforms import blended_transform_factory

__all__ = ["place_labels", "mark_times", "overlapping", "progressive_lanes"]


def place_labels(ax, items: Sequence[tuple[float, str, str]], *, top: float = 0.97, step: float = 0.11,
                 fontsize: float = 8) -> list[Text]:
    """Write each ``(x, text, colour)`` at data ``x``, on the highest row (rows go down from ``top``,
    in axes fractions) where it overlaps no label already placed."""
    renderer = ax.figure.canvas.get_renderer()
    where = blended_transform_factory(ax.transData, ax.transAxes)
    placed: list[Text] = []
    for x, label, colour in items:
        row = 0
        while True:
            text = ax.text(x, top - step * row, " " + label, transform=where, color=colour, fontsize=fontsize,
                           va="top", ha="left", clip_on=False)
            box = text.get_window_extent(renderer).expanded(1.02, 1.1)
            if not any(box.overlaps(other.get_window_extent(renderer)) for other in placed) or row > 20:
                break
            text.remove()
            row += 1
        placed.append(text)
    return placed


def mark_times(ax, marks: Mapping[str, float], *, colours: Sequence[str] | None = None, **options) -> list[Text]:
    """A dashed vertical line at each named time, labelled without overlaps (set the x limits first)."""
    colours = colours or [f"C{k + 1}" for k in range(len(marks))]
    for (name, at), colour in zip(marks.items(), colours):
        ax.axvline(at, color=colour, ls="--", lw=1)
    return place_labels(ax, [(at, name, colour) for (name, at), colour in zip(marks.items(), colours)], **options)


def overlapping(texts: Sequence[Text]) -> list[tuple[str, str]]:
    """The pairs of labels whose drawn boxes overlap (empty when the picture is readable)."""
    renderer = texts[0].figure.canvas.get_renderer() if texts else None
    boxes = [(t.get_text().strip(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


def progressive_lanes(ax, run: Mapping, title: str, *, end_ms: float | None = None) -> list[Text]:
    """One progressive reply (``labkit.gotchas.progressive_timeline``) as three lanes over time in ms:
    *typing…* shown (a bar; hatched and marked when it is never switched off), the progress bar's
    fraction with each stage named where it starts, and one tick per token. Returns the stage labels."""
    events = run["events"]
    end_ms = end_ms or 1000 * events[-1]["t"] * 1.05
    lanes = {"typing…": 2, "progress": 1, "tokens": 0}
    shown, since = False, 0.0
    spans = []
    for e in events:
        if e["type"] == "typing" and bool(e["typing"]) != shown:
            if shown:
                spans.append((since, 1000 * e["t"] - since))
            shown, since = bool(e["typing"]), 1000 * e["t"]
    ax.broken_barh(spans, (lanes["typing…"] - 0.3, 0.6), color="tab:orange")
    if shown:                                  # never switched off: it stays on screen
        ax.broken_barh([(since, end_ms - since)], (lanes["typing…"] - 0.3, 0.6), facecolor="none",
                       edgecolor="tab:red", hatch="///")
        ax.text(end_ms, lanes["typing…"], "still on ", color="tab:red", ha="right", va="center", fontsize=8)
    progress = [(1000 * e["t"], e["fraction"] or 0.0, e["stage"]) for e in events if e["type"] == "progress"]
    if progress:
        xs = [0.0] + [t for t, _, _ in progress] + [end_ms]
        ys = [0.0] + [f for _, f, _ in progress] + [progress[-1][1]]
        ax.step(xs, [lanes["progress"] - 0.3 + 0.6 * y for y in ys], where="post", color="tab:blue")
    tokens = [1000 * e["t"] for e in events if e["type"] == "token"]
    ax.vlines(tokens, lanes["tokens"] - 0.3, lanes["tokens"] + 0.3, color="tab:green", lw=0.8)
    ax.axvline(1000 * run["ttft_s"], color="0.3", ls=":", lw=1)
    ax.set(xlim=(0, end_ms), ylim=(-0.6, 3.6), yticks=list(lanes.values()), yticklabels=list(lanes))
    ax.set_title(title, fontsize=9, loc="left")
    starts, last = [], None
    for t, _, stage in progress:
        if stage != last:
            starts.append((t, stage, "tab:blue"))
            last = stage
    return place_labels(ax, starts, top=0.99, step=0.1, fontsize=7)
