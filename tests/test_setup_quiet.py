"""First install shows a learner only what they need: no setuptools deprecation or editable-install boxes."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"          # a TOML table here is deprecated: a boxed warning on every install


def test_installing_labkit_the_makefile_way_prints_nothing():
    """The Makefile's own install line for labkit (the one that builds it), run again: silent."""
    makefile = (ROOT / "Makefile").read_text()
    line = next(row.strip().lstrip("@") for row in makefile.splitlines() if "pip install" in row and " -e ." in row)
    command = line.replace("$(BIN)/python", sys.executable)
    assert "$(" not in command, command
    out = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    shown = (out.stdout + out.stderr).strip()
    assert not re.search(r"\*{20}|Warning|deprecat", shown, re.I), shown
    assert shown == "", shown
