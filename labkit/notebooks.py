"""Keeping committed notebooks clean: no outputs, no execution counts, no machine paths."""

from __future__ import annotations

import nbformat

__all__ = ["clean_notebook", "clean_notebooks"]


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    nb.metadata.pop("widgets", None)
    return nb


def clean_notebooks(paths: list[str]) -> int:
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(clean_notebook(nb), path)
        print(f"cleaned {path}")
    return 0
