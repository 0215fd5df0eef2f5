"""JupyterLab really serves the course notebooks and renders their widgets in a browser.

Starts ``jupyter lab`` from this venv on 127.0.0.1 (free port, empty token, FAST mode in the kernel's
environment), opens ``08_visualizing_alignment.ipynb`` in headless Debian chromium driven by the PyPI
``playwright`` package (never ``playwright install``), runs all cells from the Run menu and waits for
the explorer's IntSlider to be drawn. Autosave is off and the notebook file is checked to be untouched.

Skipped, with the reason, when ``/usr/bin/chromium`` (``make browser``) or playwright is missing.

Why it must stay, and why in a browser: the course's widgets only exist in a browser talking to a live
kernel; nbval runs the cells but never draws them, so only this test catches a widget that JupyterLab cannot
render. Starting JupyterLab and running notebook 08 takes a minute or more, so ``make test`` runs this after
the unit tests (``make test-e2e``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NOTEBOOK = "08_visualizing_alignment.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDGET_TIMEOUT_S = 480  # running 08 up to its explorer cell in FAST mode: ~30 s idle, minutes on a busy CPU

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _skip(reason: str) -> None:
    print(f"skipping the JupyterLab browser test: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}; log:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    tail = log.read_text()[-3000:]
    raise RuntimeError(f"jupyter lab did not answer at {url} within {timeout:.0f} s; log:\n{tail}")


@pytest.fixture
def lab_server(tmp_path):
    """A JupyterLab server on a free port, rooted at notebooks/; yields its base URL, stops it after."""
    if not CHROMIUM.exists():
        _skip(f"{CHROMIUM} not found (run `make browser`, i.e. apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        _skip(f"playwright is not importable ({err}); install the 'test' extra")
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        _skip(f"{jupyter} not found; install the 'notebooks' extra")
    settings = tmp_path / "lab-settings"
    for plugin, values in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},  # never write to the repo's notebook
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = _free_port()
    env = dict(os.environ, T2VLAD_FAST="1", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    log = tmp_path / "jupyter-lab.log"
    cmd = [
        str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={NOTEBOOKS}",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}",  # not notebooks/.ipynb_checkpoints
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
        cmd.append("--allow-root")
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_notebook_08_widget_renders_in_jupyterlab(lab_server, tmp_path):
    from playwright.sync_api import sync_playwright

    source = NOTEBOOKS / NOTEBOOK
    before = source.read_bytes()
    had_checkpoints = (NOTEBOOKS / ".ipynb_checkpoints").exists()
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab_server}/lab/tree/{NOTEBOOK}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # the kernel must be started and idle (status bar "Python 3 (...) | Idle") before Run All
            page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=180_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            try:
                slider = page.wait_for_selector(".widget-slider", timeout=WIDGET_TIMEOUT_S * 1000)
            except Exception:
                page.screenshot(path=str(tmp_path / "jupyterlab-08-timeout.png"))
                raise
            slider.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "jupyterlab-08-explorer.png"))
            explorer = page.locator(".jp-CodeCell", has_text="# EXPLORER")
            assert explorer.count() == 1, "the explorer cell (# EXPLORER) was not found in the notebook"
            assert explorer.locator(".widget-slider").count() >= 1, "no slider in the explorer's output"
            assert explorer.locator(".widget-dropdown").count() >= 1, "the query dropdown was not drawn"
        finally:
            browser.close()
    print(f"JupyterLab drew the explorer widget {time.monotonic() - t0:.0f} s after opening {NOTEBOOK}; "
          f"screenshot: {tmp_path / 'jupyterlab-08-explorer.png'}")
    assert source.read_bytes() == before, f"{source} was modified while JupyterLab had it open"
    new_checkpoints = not had_checkpoints and (NOTEBOOKS / ".ipynb_checkpoints").exists()
    assert not new_checkpoints, "JupyterLab wrote checkpoints into notebooks/"
