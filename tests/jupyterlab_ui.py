"""Real JupyterLab, driven by a real headless Chromium through Playwright: the learner's path.

:func:`jupyterlab` starts JupyterLab from this venv on a free port with a random token, serving a
scratch copy of the notebooks (JupyterLab saves what it runs: the repository's copies stay untouched),
with its own settings (the notebook renders every cell, no windowing, so every cell can be inspected).
:class:`Lab` opens a notebook, runs *Run → Run All Cells* from the menu and waits for every cell.
A failing step leaves a screenshot in ``test-artifacts/`` (ignored by git).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat

from labkit.services import CHROMIUM_ARGS, free_port, spawn, stop_process

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@contextlib.contextmanager
def jupyterlab(tmp: Path, notebooks: list[str], timeout_s: float = 60):
    """Yield ``(base_url, token)`` of a JupyterLab serving copies of ``notebooks`` (names in notebooks/)."""
    root = tmp / "notebooks"
    root.mkdir()
    for name in notebooks:                      # without stored outputs: every prompt seen later is from this run
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, root / name)
    settings = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    announcements = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    announcements.mkdir(parents=True)
    (announcements / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp / "config")}
    log = open(tmp / "jupyterlab.log", "w")
    proc = spawn([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                  "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                  f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                  "--ServerApp.log_level=WARN"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(tmp / 'jupyterlab.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer within {timeout_s:.0f} s")
            time.sleep(0.1)
        assert httpx.get(f"{url}/api/status", timeout=2).status_code == 403, "JupyterLab must require its token"
        yield url, token
    finally:
        stop_process(proc)
        log.close()


def shut_down_kernels(url: str, token: str) -> None:
    """End every kernel of this JupyterLab (and with it whatever its notebook started): the next test
    then has the CPU to itself."""
    for session in httpx.get(f"{url}/api/sessions", params={"token": token}, timeout=10).json():
        httpx.delete(f"{url}/api/sessions/{session['id']}", params={"token": token}, timeout=30)


class Lab:
    """One notebook open in JupyterLab in a Playwright page (async API)."""

    def __init__(self, page, url: str, token: str):
        self.page, self.url, self.token = page, url, token

    async def open(self, name: str) -> None:
        """Open ``name`` alone, in a fresh workspace of its own (one JupyterLab serves several tests:
        without it, the last test's tabs reopen too), and wait for its kernel."""
        workspace = Path(name).stem.replace(".", "-")
        await self.page.goto(f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}")
        await self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=180_000)
        await self.page.wait_for_function(
            """() => {
                const dialog = document.querySelector('.jp-Dialog');
                const accept = dialog && dialog.querySelector('.jp-Dialog-button.jp-mod-accept');
                if (accept && /Select Kernel/.test(dialog.textContent)) { accept.click(); return false; }
                return !dialog && /\\| Idle/.test(document.getElementById('jp-main-statusbar').textContent);
            }""", timeout=180_000, polling=250)

    async def menu(self, menu: str, item: str) -> None:
        await self.page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
        await self.page.click(f".lm-Menu-itemLabel:text-is('{item}')")

    async def run_all(self, timeout_s: float = 240) -> None:
        """Run → Run All Cells, then wait until every code cell has an execution count."""
        await self.menu("Run", "Run All Cells")
        await self.page.wait_for_function(
            """() => {
                const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
            }""", timeout=timeout_s * 1000, polling=250)
        await self.page.wait_for_function(
            "() => /\\| Idle/.test(document.getElementById('jp-main-statusbar').textContent)", timeout=60_000)

    async def tracebacks(self) -> list[str]:
        """Text of every error output (JupyterLab renders tracebacks as stderr)."""
        return [t for t in await self.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                .all_inner_texts() if "Traceback" in t or "Error" in t]

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@contextlib.asynccontextmanager
async def lab_page(chromium_path: str, url: str, token: str, name: str):
    """A browser page on JupyterLab; on failure, a screenshot in test-artifacts/<name>.png."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1000})
        lab = Lab(page, url, token)
        try:
            yield lab
        except BaseException:
            with contextlib.suppress(Exception):
                print("screenshot:", await lab.screenshot(name))
            raise
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def ran_all(chromium_path: str, url: str, token: str, notebook: str, timeout_s: float = 240):
    """What every chapter test starts with: ``notebook`` opened in a page of its own, *Run All Cells*
    done, and no traceback in any output. Yields the :class:`Lab` for the chapter's own steps (a
    failure there leaves a screenshot named after the notebook)."""
    async with lab_page(chromium_path, url, token, "chapter" + notebook[:2]) as lab:
        await lab.open(notebook)
        await lab.run_all(timeout_s=timeout_s)
        tracebacks = await lab.tracebacks()
        # said in full: pytest rewrites the asserts of test files only, and this is a helper module
        assert tracebacks == [], f"Run All of {notebook} left tracebacks:\n" + "\n\n".join(tracebacks)
        yield lab
