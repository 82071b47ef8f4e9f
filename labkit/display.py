"""Small display helpers for notebooks: tables that render as Markdown and read well as plain text."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Table", "table"]


class Table:
    def __init__(self, rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 3):
        self.columns = list(columns or (rows[0].keys() if rows else []))
        self.cells = [[_fmt(row.get(c), digits) for c in self.columns] for row in rows]

    def _repr_markdown_(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in self.cells])

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.cells)) if self.cells else len(c)
                  for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in self.cells]
        return "\n".join(line.rstrip() for line in lines)


def _fmt(value, digits: int) -> str:
    if isinstance(value, float):
        if value and abs(value) < 1e-3:
            return f"{value:.{digits or 1}g}"
        text = f"{value:,.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text     # never strip a whole number's zeros
    return "" if value is None else str(value)


def table(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 3) -> Table:
    """``table([{"a": 1, "b": 2.5}, ...])`` shows as a Markdown table in a notebook."""
    return Table(rows, columns, digits)
