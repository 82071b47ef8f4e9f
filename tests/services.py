"""The test setup installs the programs the lab's optional services need (Chromium, nginx, Redis).

Library code only *finds* them (:func:`labkit.services.find_binary`); installing is done here, for the
test run: when a binary is missing and the run is root with Debian's ``apt-get`` (as CI is), its
package is installed, in a background thread started with the session so other tests go on meanwhile.
A test (or a notebook run under nbval) that needs one waits for that thread first (root conftest.py:
``pytest_runtest_setup``). A file lock makes the xdist workers install one after the other (the
second then finds everything in place). What cannot be had is recorded, and the test skips with that
reason, as before.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import threading

from labkit.services import BINARIES, ServiceUnavailable, find_binary

__all__ = ["start_installing", "wait_for_services", "install_failures", "NEEDLES"]

#: Words in a test file or notebook that mean it starts one of these services.
NEEDLES = ("RedisServer", "NginxProxy", "ensure_nginx", "chromium", "talk_in_the_page", "redis_url")

_LOCK = os.path.join(tempfile.gettempdir(), "labkit-test-apt.lock")
_thread: threading.Thread | None = None
_failures: dict[str, str] = {}


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceUnavailable(f"{package} is not installed, and installing it needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quick = ["-o", "Acquire::http::Timeout=20", "-o", "Acquire::https::Timeout=20", "-o", "Acquire::Retries=1"]
    for cmd in (["apt-get", *quick, "update", "-qq"],
                ["apt-get", *quick, "install", "-y", "-qq", "--no-install-recommends", package]):
        try:      # bounded: a blocked network must cost a skip, not the whole CI budget
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        except subprocess.TimeoutExpired:
            raise ServiceUnavailable(f"installing {package} timed out: {' '.join(cmd)}") from None
        if done.returncode != 0:
            raise ServiceUnavailable(f"installing {package} failed: {' '.join(cmd)}: {done.stderr.strip()[-300:]}")


def _missing() -> list[str]:
    missing = []
    for name, (package, candidates) in BINARIES.items():
        try:
            find_binary(name, package, candidates)
        except ServiceUnavailable:
            missing.append(name)
    return missing


def _install_missing() -> None:
    if not _missing():
        return
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # the other worker may be installing: wait, then look again
        missing = _missing()
        for name in missing:
            try:
                _apt_install(BINARIES[name][0])
            except ServiceUnavailable as e:
                _failures[name] = str(e)


def start_installing() -> None:
    """Begin installing what is missing, in the background (idempotent)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_install_missing, name="labkit-test-services", daemon=True)
        _thread.start()


def wait_for_services(timeout_s: float = 900) -> None:
    """Block until the installer is done (at once when nothing was missing)."""
    start_installing()
    _thread.join(timeout_s)


def install_failures() -> dict[str, str]:
    """binary name -> why it could not be installed (empty when all are there)."""
    return dict(_failures)
