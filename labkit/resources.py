"""Where labkit's files live: data shipped inside the package, and a cache for what it generates.

Shipped data (the simulated model's knowledge, the labelled speech set) is read through
:mod:`importlib.resources` from ``labkit/data/``, so it is found the same way in a checkout, an
editable install and a wheel; so are the packaged tuning and held-out speech sets, one generation
for every machine (:mod:`labkit.speechsets`). Generated files (noisy speech mixes, a speech set
whose recipe has no packaged generation) go to the user's cache directory, ``$XDG_CACHE_HOME/labkit``
(``~/.cache/labkit``), never into the installed package; ``speechsets.package``, a maintainer's
step after a recipe change, is the one writer into ``labkit/data``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["data_file", "package_file", "cache_dir"]


def package_file(*parts: str) -> Path:
    """A file shipped inside the ``labkit`` package (e.g. ``package_file("server", "static", "app.js")``).

    labkit is installed as files (a wheel unpacks into site-packages), so the resource is a real path
    that ``open``, ``wave`` and NumPy can read.
    """
    return Path(str(resources.files("labkit").joinpath(*parts)))


def data_file(*parts: str) -> Path:
    """A file shipped in ``labkit/data`` (e.g. ``data_file("speech", "clean.wav")``)."""
    return package_file("data", *parts)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/labkit`` (default ``~/.cache/labkit``); created by whoever writes to it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "labkit"
