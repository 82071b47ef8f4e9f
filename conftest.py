"""After each chapter has run top to bottom under nbval (as *Run All* does), run its exercises again,
in the same kernel, with the reference answers, and require them to pass.

That is the learner's path: run everything, then scroll back and answer. A chapter that stopped its
server in its last cell, or left a widget dead, fails here. Reference answers come from
``notebooks/solutions/exercise_answers.py`` and, for the capstone, from its solution notebook.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))
import services as test_services  # noqa: E402  (tests/services.py: installs Chromium, nginx, Redis for the run)
from reference_answers import reference_answers  # noqa: E402
SOLUTIONS = ROOT / "notebooks" / "solutions"
_CHECK = re.compile(r"""^check\(\s*["'](?P<name>[0-9]{2}\.\w+)["']""", re.M)
_STEP = re.compile(r"^results\[(?P<step>\d)\] = await check_step\(", re.M)
_BLANK = re.compile(r"^(?P<indent>\s*)(?P<target>\w+ = )?\.\.\.(?P<comment>\s*#.*)?$", re.M)


def answered(source: str, answer: str) -> str:
    """The exercise cell ``source`` with its ``...`` replaced by ``answer``, asserting that it passes."""
    blank = _BLANK.search(source)
    if blank is None:
        raise ValueError(f"no `...` to replace in:\n{source}")
    if blank["target"]:
        filled = f"{blank['indent']}{blank['target']}{answer}"
    else:
        filled = "\n".join(blank["indent"] + line for line in answer.splitlines())
    source = source[:blank.start()] + filled + source[blank.end():]
    check = _CHECK.search(source)
    return (source[:check.start()] + "_labkit_result = " + source[check.start():] +
            "\nassert _labkit_result.ok is True, _labkit_result._repr_markdown_()")


def _reference_cells(path: Path, cells) -> list[tuple[str, str]]:
    """(label, source) of the cells to run after the chapter: every exercise, answered."""
    extra = []
    if path.name == "09_capstone.ipynb":
        solution = nbformat.read(SOLUTIONS / "09_capstone_solution.ipynb", as_version=4)
        # a scratch scorecard: the reference run must not fill in the learner's own
        extra.append(("scratch scorecard", 'import tempfile, os\n'
                      'results = Scorecard(os.path.join(tempfile.mkdtemp(), "scorecard.json"))'))
        for i, cell in enumerate(cells):
            step = _STEP.search(cell.source)
            if step:
                defining = re.search(r"^(async )?def (\w+)\(", cells[i - 1].source, re.M)[2]
                reference = next(c.source for c in solution.cells if re.search(rf"^(async )?def {defining}\(", c.source, re.M))
                extra.append((f"step {step['step']} solution", reference))
                extra.append((f"step {step['step']} check", cell.source +
                              f"\nassert results[{step['step']}].ok is True, results[{step['step']}].message"))
        return extra
    answers = reference_answers()
    for cell in cells:
        found = _CHECK.search(cell.source)
        if found:
            extra.append((found["name"], answered(cell.source, answers[found["name"]])))
    return extra


def pytest_sessionstart(session):
    """Missing service binaries start installing now, in the background (see tests/services.py)."""
    test_services.start_installing()


_NEEDS: dict[Path, bool] = {}


def pytest_runtest_setup(item):
    """A test file or notebook that starts a service waits for the installer first."""
    path = Path(item.path)
    if path not in _NEEDS:
        text = path.read_text(errors="replace") if path.is_file() else ""
        _NEEDS[path] = any(needle in text for needle in test_services.NEEDLES)
    if _NEEDS[path]:
        test_services.wait_for_services()


def pytest_collection_modifyitems(session, config, items):
    try:
        from nbval.plugin import IPyNbCell, IPyNbFile
    except ImportError:
        return
    by_file = defaultdict(list)
    for index, item in enumerate(items):
        if isinstance(item, IPyNbCell) and isinstance(item.parent, IPyNbFile):
            by_file[item.parent].append(index)
    for parent, indexes in sorted(by_file.items(), key=lambda kv: -kv[1][-1]):   # insert from the end
        path = Path(str(parent.fspath))
        if path.parent.name == "solutions":
            continue
        cells = [c for c in parent.nb.cells if c.cell_type == "code"]
        new = []
        for n, (label, source) in enumerate(_reference_cells(path, cells)):
            cell = nbformat.v4.new_code_cell(source)
            new.append(IPyNbCell.from_parent(parent, name=f"after Run All {n}: {label}", cell_num=len(cells) + n,
                                             cell=cell, options=defaultdict(bool, check=False)))
        items[indexes[-1] + 1:indexes[-1] + 1] = new
