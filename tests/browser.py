"""What the browser tests share: Chromium through Playwright, a front-end's server
started and stopped with everything it started, and a notebook's cells run by hand."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from conftest import missing, wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need_browser() -> Any:
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "playwright is not installed"
    if why is None and not os.path.exists(CHROMIUM):
        why = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if why is not None:
        missing(
            why, "pip install playwright; apt-get install chromium (bash .ci/run does both)", "--no-browser"
        )
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(cmd: list[str], folder: Path, health: str, env: dict[str, str] | None = None) -> Iterator[None]:
    """A front-end's server started in `folder` (its log there), up once `health`
    answers 200; stopped at the end with everything it started (kernels, swarms)."""
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:

        def answers() -> bool:
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    return r.status == 200
            except OSError:
                return server.poll() is not None  # died: fail below with its log

        wait_until(answers, timeout=60, what=f"{cmd[2]} answering")
        assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
        yield
    finally:
        kids = psutil.Process(server.pid).children(recursive=True) if server.poll() is None else []
        server.terminate()  # shuts its kernels down; a kernel's exit stops its swarm
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        _gone, alive = psutil.wait_procs(kids, timeout=20)
        for p in alive:
            p.kill()
        assert not alive, f"processes left behind by {cmd[2]}: {alive}"


def front_end_command(
    front_end: str, folder: Path, port: int, token: str
) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) of JupyterLab ("lab") or Notebook 7 ("notebook")
    on loopback serving `folder`, its state kept there."""
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab" if front_end == "lab" else "notebook",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        "--allow-root",
        f"--ServerApp.root_dir={folder}",
    ]
    if front_end == "lab":
        cmd += [
            f"--LabApp.workspaces_dir={folder / 'workspaces'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    return cmd, env


def start_kernel(base: str, token: str, path: str) -> None:
    """The notebook's kernel started through the server's REST API before the
    page opens: the front-end joins that session, instead of racing its own kernel-spec
    fetch (which, on a busy machine, can end in a "Select Kernel" question). The page's
    kernel indicator says when it is idle."""
    new = {"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}}
    req = urllib.request.Request(f"{base}/api/sessions?token={token}", data=json.dumps(new).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        session = json.loads(r.read())
    assert session["kernel"]["name"] == "python3", session


def run_cell(page: Any, index: int) -> Any:
    """Run one cell with the toolbar button; retry when the click is lost (it can be)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    ask = page.locator(".jp-Dialog", has_text="Select Kernel")
    for _ in range(4):
        if ask.is_visible():  # JupyterLab may ask which kernel to start even once idle
            ask.locator("button.jp-mod-accept").click()
            ask.wait_for(state="detached", timeout=30_000)
        prompt.click()
        page.locator("[data-command='notebook:run-cell-and-select-next']").first.click()
        try:
            prompt.filter(has_text=re.compile(r"\[(\*|\d+)\]")).wait_for(timeout=10_000)
            return cell
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"cell {index} never started running")


def dump_failure(page: Any, folder: Path, name: str) -> None:
    """What a failed browser test saw, in its own output (a CI machine's files are gone
    with it): a screenshot in test-artifacts/, every notebook cell's output, open
    dialogs, and the end of the front-end server's log."""
    import shutil
    import time

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}-{int(time.time())}.png"
    page.screenshot(path=str(shot), full_page=True)
    log = folder / "server.log"
    if log.exists():
        shutil.copy(log, ARTIFACTS / f"{name}.log")
    print(f"screenshot of the failure: {shot}")
    for i, text in enumerate(page.locator(".jp-Notebook .jp-Cell .jp-OutputArea").all_inner_texts()):
        print(f"--- output of cell {i}:\n{text[-2000:]}")
    for text in page.locator(".jp-Dialog").all_inner_texts():
        print(f"--- dialog open:\n{text}")
    if log.exists():
        print("--- server log (end):\n" + log.read_text()[-3000:])
