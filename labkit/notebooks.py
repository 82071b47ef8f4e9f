"""Notebook maintenance: execute the chapters offline and store their outputs, or strip them.

The committed notebooks keep their outputs, because nbval checks a cell marked
``# NBVAL_CHECK_OUTPUT`` against its stored output (an unexecuted cell is never compared), and so a
reader sees the plots without running anything. ``execute`` produces those outputs the way CI
would: the local backend only (any ``OPENAI_API_KEY`` is removed from the kernel's environment),
and it refuses to save output that holds a machine path or something that looks like a key.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["clean_notebook", "clean_notebooks", "execute_notebooks", "find_leaks", "WIDGET_NOTE"]

_LEAKS = re.compile(r"sk-[A-Za-z0-9_-]{16,}|/work/|/tmp/[a-z]|/root/|/home/[a-z]")


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def clean_notebooks(paths: list[str]) -> int:
    for path in paths:
        nbformat.write(clean_notebook(nbformat.read(path, as_version=4)), path)
        print(f"cleaned {path}")
    return 0


WIDGET_NOTE = "(a live widget: run the notebook to see it)"
_WIDGET = "application/vnd.jupyter.widget-view+json"


def _quiet_widgets(cell: nbformat.NotebookNode) -> None:
    """A stored widget output is only a reference to state that is not saved; its text/plain fallback is the
    widget tree's repr (long, and it may hold what the widget showed, such as a join link with a token).
    Keep the reference, replace the fallback with a note."""
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if _WIDGET in data:
            data["text/plain"] = WIDGET_NOTE


def find_leaks(nb: nbformat.NotebookNode) -> list[str]:
    """Output text that shows a machine path or a secret (what must never be committed)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = str(out)
            for match in _LEAKS.finditer(text):
                found.append(f"cell {i}: {match.group()!r}")
    return found


def execute_notebooks(paths: list[str], timeout_s: int = 300) -> int:
    from nbclient import NotebookClient

    env_key = os.environ.pop("OPENAI_API_KEY", None)      # outputs come from the local backend only
    try:
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            clean_notebook(nb)
            NotebookClient(nb, timeout=timeout_s, kernel_name="python3", store_widget_state=False,
                           resources={"metadata": {"path": str(Path(path).parent)}}).execute()
            for cell in nb.cells:
                cell.metadata.pop("execution", None)
                _quiet_widgets(cell)
            leaks = find_leaks(nb)
            if leaks:
                print(f"NOT saved {path}: its output shows {', '.join(leaks[:5])}", file=sys.stderr)
                return 1
            nbformat.write(nb, path)
            print(f"executed {path}")
    finally:
        if env_key is not None:
            os.environ["OPENAI_API_KEY"] = env_key
    return 0
