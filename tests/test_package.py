"""labkit as a package: its wheel ships the data, the static pages and ``py.typed``, declares its
dependencies with the ``notebooks`` and ``test`` extras and an SPDX licence, and an installed wheel
finds its data through importlib.resources (not through the source tree)."""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import labkit
from labkit import speechsets
from labkit.services import ServiceUnavailable, find_binary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # offline: the venv's own setuptools (requirements.txt), no download of a build environment
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--disable-pip-version-check", "-w", str(out), str(ROOT)], check=True, capture_output=True,
                   env={**os.environ, "PIP_NO_INDEX": "1"}, timeout=300)
    (built,) = out.glob("labkit-*.whl")
    return built


def test_the_wheel_ships_data_static_files_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("labkit/py.typed", "labkit/data/knowledge.json", "labkit/data/speech/clean.wav",
                   "labkit/data/speech/labels.json", "labkit/server/static/index.html",
                   "labkit/server/static/voice-worklets.js",
                   *(f"labkit/data/speech/{speechsets.packaged_path(n).name}" for n in ("tuning", "heldout"))):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "notebooks/", "data/")) for n in names)


def test_the_wheel_declares_its_licence_dependencies_and_extras(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = email.message_from_bytes(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))))
    assert meta["License-Expression"] == "MIT"
    assert set(meta.get_all("Provides-Extra")) == {"notebooks", "test"}
    requires = meta.get_all("Requires-Dist")
    runtime = {re.split(r"[\[<>=;! ]", r)[0] for r in requires if "extra ==" not in r}
    assert {"fastapi", "uvicorn", "openai", "httpx", "websockets", "numpy", "pocketsphinx"} <= runtime
    assert {"sse-starlette", "psutil"} <= runtime          # `labkit bench load` / `--concurrency` import them
    assert any(r.startswith("jupyterlab") and 'extra == "notebooks"' in r for r in requires)
    assert any(r.startswith("pytest") and 'extra == "test"' in r for r in requires)


def test_an_installed_wheel_reads_its_data_from_inside_the_package(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                    "--disable-pip-version-check", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    probe = ("import labkit, labkit.corpus as c, labkit.speechdata as sd; "
             "print(labkit.__file__); print(c.KNOWLEDGE_PATH); print(len(c.knowledge()['topics'])); "
             "print(sd.load_clean()[0].size)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path)
    where, knowledge, topics, samples = done.stdout.split()
    assert Path(where).is_relative_to(target) and Path(knowledge).is_relative_to(target)
    assert int(topics) > 0 and int(samples) > 16_000


def test_library_code_finds_binaries_and_never_installs_them(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("library code ran a command"))
    with pytest.raises(ServiceUnavailable, match=r"sudo apt-get install no-such-package"):
        find_binary("no-such-binary-here", "no-such-package")
    source = "\n".join(p.read_text() for p in Path(labkit.__file__).parent.rglob("*.py"))
    assert '"apt-get"' not in source and "parents[" not in source


def test_a_server_starts_without_the_sdks_realtime_models():
    """``labkit.realtime.validate`` (the tests' event checker) imports hundreds of the SDK's pydantic
    models: measured under load, importing the server fell from ~4.9 s to ~2.9 s once it stopped
    importing them. Importing the server must not pull it in; asking for it still works."""
    probe = ("import sys, labkit.server.app; "
             "print('labkit.realtime.validate' in sys.modules, 'openai.types.beta.realtime' in sys.modules); "
             "from labkit.realtime import validate_server_event; print(validate_server_event.__module__)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "False", "labkit.realtime.validate"], done.stdout


def test_a_server_starts_without_aiortc():
    """aiortc and PyAV (about 0.45 s to import) are imported by the first WebRTC call
    (:mod:`labkit.server.webrtc_call`), not by the server's start-up."""
    probe = ("import sys, labkit.server.app; print('aiortc' in sys.modules, 'av' in sys.modules); "
             "import labkit.server.webrtc_call; print('aiortc' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "False", "True"], done.stdout
