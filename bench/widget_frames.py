"""The widget's cost in the browser: frame times of a real JupyterLab page (headless
Chromium, Playwright) drawing a swarm's widget, idle and while wrk drives its gateway.

A notebook cell starts a 3-bee swarm and shows its widget; the page records every
animation frame's interval (requestAnimationFrame) for a span, with a Playwright trace
of the same span saved for a closer look (`playwright show-trace <file>`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
from loadgen import free_port, post_script

__all__ = ["frame_times"]

CHROMIUM = "/usr/bin/chromium"
_CELL = """\
from bytewax_nb import Swarm, SwarmWidget
swarm = Swarm("bench-frames", runtime="process", on_log=None)
swarm.gateway("in")
for name, src in (("a", "in"), ("b", "a"), ("c", "b")):
    swarm.bee(lambda p: p, input=src, name=name)
swarm.start()
print("URL", swarm.url("in"))
SwarmWidget.of(swarm)
"""
# every frame's interval, for `ms` milliseconds
_FRAMES = """ms => new Promise(done => {
  const gaps = []; let last = performance.now(); const end = last + ms;
  const tick = now => { gaps.push(now - last); last = now;
    if (now < end) { requestAnimationFrame(tick); } else { done(gaps); } };
  requestAnimationFrame(tick);
})"""


def _figures(gaps: list[float]) -> dict[str, float]:
    gaps = sorted(gaps)
    return {
        "frames": len(gaps),
        "p50_ms": statistics.median(gaps),
        "p99_ms": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))],
        "max_ms": gaps[-1],
        "long": sum(g > 50 for g in gaps),  # frames a user would see stutter
    }


def frame_times(seconds: float, callers: int) -> dict[str, Any] | str:
    """{"idle": figures, "load": figures, "rps": ..., "trace": path}, or why not measured."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "playwright is not installed"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM}"
    folder = Path(tempfile.mkdtemp(prefix="bench-frames-"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(_CELL), nbformat.v4.new_code_cell("swarm.stop()")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "frames.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "runtime")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    cmd += [f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={folder}"]
    cmd += [f"--LabApp.workspaces_dir={folder / 'workspaces'}"]
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait(f"{base}/api/status?token={token}")
        session = {"path": "frames.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
        req = urllib.request.Request(f"{base}/api/sessions?token={token}", data=json.dumps(session).encode())
        urllib.request.urlopen(req, timeout=30).close()  # the page joins this kernel
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{base}/lab/tree/frames.ipynb?token={token}")
            page.locator(".jp-NotebookKernelStatus-idle, #jp-main-statusbar >> text=Idle").first.wait_for(
                timeout=120_000
            )
            page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click()
            page.keyboard.press("Shift+Enter")
            page.locator(".bxnb-widget .react-flow__node[data-id='c']").wait_for(timeout=120_000)
            out = page.locator(".jp-OutputArea-output", has_text="URL").first
            out.wait_for(timeout=60_000)
            url = re.search(r"URL (\S+)", out.inner_text()).group(1)  # type: ignore[union-attr]
            ms = int(seconds * 1000)
            idle = page.evaluate(_FRAMES, ms)
            trace = folder / "frames-trace.zip"
            context.tracing.start(screenshots=False, snapshots=False)
            script = post_script(str(folder), '{"n": 1}')
            load = subprocess.Popen(
                ["wrk", "-t1", f"-c{callers}", f"-d{max(1, round(seconds + 2))}s", "-s", script, url],
                stdout=subprocess.PIPE,
                text=True,
            )
            busy = page.evaluate(_FRAMES, ms)
            context.tracing.stop(path=str(trace))
            text = load.communicate(timeout=seconds + 30)[0]
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
            page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt").click()
            page.keyboard.press("Shift+Enter")
            page.locator(".bxnb-swarm-state", has_text="stopped").wait_for(timeout=60_000)
            browser.close()
        kept = Path(tempfile.gettempdir()) / "bytewax-nb-widget-frames-trace.zip"
        shutil.copy(trace, kept)
        return {"idle": _figures(idle), "load": _figures(busy), "rps": rps, "trace": str(kept)}
    finally:
        server.terminate()  # shuts its kernel down, and the kernel's exit stops the swarm
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":  # a quick look: python bench/widget_frames.py
    print(frame_times(5, 1))
