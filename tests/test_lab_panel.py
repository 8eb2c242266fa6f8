"""JupyterLab's side panel for real: a swarm a script of this machine runs, a deployed
stack, JupyterLab with our extension, headless Chromium clicking the panel and typing
in the command palette, with the CPU loaded. What the panel asks of the server is
tested without a browser in test_labserver.

CI runs it; `--no-browser` or `--no-stack` skips it locally.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    dump_failure,
    free_port,
    front_end_command,
    need_browser,
    server,
    start_kernel,
)
from conftest import other_owner, swarm_manager

from bytewax_nb.client import request
from bytewax_nb.engine import state

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(420),
]

ROOT = Path(__file__).resolve().parents[1]
STACK = "bxnb-test-panel"

THEIRS = textwrap.dedent(
    """
    import sys
    from bytewax_nb import Swarm

    swarm = Swarm("theirs", runtime="process", on_log=None)
    swarm.gateway("in")

    @swarm.bee(input="in", max_replicas=2, idle_s=600)
    def hi(payload):
        print("hi saw", payload["name"])
        return "hi " + payload["name"]

    swarm.start()
    print(swarm.url("in"), flush=True)
    sys.stdin.read()  # until the test closes it
    swarm.stop()
    """
)


@pytest.fixture(scope="module")
def stack() -> Iterator[str]:
    """The hello tutorial deployed by the real command; removed at the end."""
    swarm_manager().close()  # an engine in Swarm mode, and a base image (or a skip)
    deploy = [
        sys.executable,
        "-m",
        "bytewax_nb.cli",
        "deploy",
        str(ROOT / "notebooks" / "01-hello-swarm.ipynb"),
    ]
    done = subprocess.run([*deploy, "--stack", STACK], capture_output=True, text=True, timeout=600)
    try:
        assert done.returncode == 0, done.stderr
        yield STACK
    finally:
        subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", STACK], capture_output=True)


@pytest.fixture
def theirs(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A swarm run by a script (not by a kernel of the JupyterLab under test)."""
    with other_owner(tmp_path, THEIRS) as (owner, url):
        assert url.startswith("http://"), url
        yield owner, url


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab with a notebook open in it (the one a stack is attached to)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('a notebook to attach')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "attach.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    cmd, env = front_end_command("lab", tmp_path, port, token)
    base = f"http://127.0.0.1:{port}"
    with server(cmd, tmp_path, f"{base}/api/status?token={token}", env):
        start_kernel(base, token, "attach.ipynb")
        yield f"{base}/lab/tree/attach.ipynb?token={token}", tmp_path


def _palette(page: Any, command: str) -> None:
    """Run a command by typing its name in JupyterLab's command palette (the focus
    first taken out of the graph, whose keys are its own)."""
    page.locator(".bxnb-lab-title").click()
    page.keyboard.press("Control+Shift+C")
    search = page.locator(".jp-ModalCommandPalette input")
    search.fill(command)
    page.locator(".jp-ModalCommandPalette .lm-CommandPalette-item", has_text=command).first.click()


def _choose(page: Any, title: str, option: str) -> None:
    """Pick `option` in the dialog titled `title` and accept it."""
    dialog = page.locator(".jp-Dialog", has_text=title)
    dialog.locator("select").select_option(label=option)
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached", timeout=10_000)


def test_the_side_panel_lists_opens_scales_reads_attaches_and_stops(
    stack: str, theirs: tuple[subprocess.Popen[str], str], jupyterlab: tuple[str, Path], busy_cpu: None
) -> None:
    sync_playwright = need_browser()
    owner, gateway = theirs
    url, tmp = jupyterlab
    sid = f"local/theirs.{owner.pid}"
    assert request(gateway, {"name": "Bee"}) == "hi Bee"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\bIdle\b")).wait_for(timeout=90_000)
            # the panel: the script's swarm and the stack, with their state, gateways and bees
            page.locator(".lm-TabBar-tab[data-id='bxnb-lab-swarms']").click()
            mine = page.locator(f".bxnb-lab-swarm[data-id='{sid}']")
            mine.locator(".bxnb-lab-state", has_text="ready").wait_for(timeout=60_000)
            mine.locator(".bxnb-lab-bees li[data-bee='hi']", has_text="1/1 replicas").wait_for(timeout=10_000)
            mine.locator(f".bxnb-lab-gateways a[href='{gateway}']").wait_for(timeout=10_000)
            deployed = page.locator(f".bxnb-lab-swarm[data-id='stack/{stack}']")
            deployed.locator(".bxnb-lab-state", has_text="ready").wait_for(timeout=60_000)
            deployed.locator(".bxnb-lab-bees li[data-bee='goodbye']").wait_for(timeout=10_000)

            # its live graph in a tab: the widget's view, fed by the server
            mine.locator(".bxnb-lab-open").click()
            graph = page.locator(f".bxnb-lab-graph[data-swarm='{sid}'] .bxnb-widget")
            for name in ("in", "hi"):
                graph.locator(f".react-flow__node[data-id='{name}']").wait_for(timeout=60_000)
            graph.locator(".react-flow__node[data-id='hi'] .bxnb-status", has_text="ready").wait_for(
                timeout=30_000
            )
            # an autoscaled bee's node shows its range (at most this machine's cores)
            scaled = graph.locator(".react-flow__node[data-id='hi'] .bxnb-autoscale")
            scaled.filter(has_text=re.compile("1\u2013[12] auto")).wait_for(timeout=30_000)  # a core, or two
            graph.locator(".react-flow__node[data-id='hi']").click()
            bee = graph.locator(".bxnb-panel[data-panel='bee']")
            bee.locator(".bxnb-logs", has_text="hi saw Bee").wait_for(timeout=30_000)
            bee.locator(".bxnb-replicas").fill("2")
            bee.locator(".bxnb-apply").click()
            graph.locator(".bxnb-message", has_text="done: hi: 2 replicas").wait_for(timeout=90_000)
            graph.locator(".react-flow__node[data-id='hi']", has_text="2/2 replicas").wait_for(timeout=30_000)
            mine.locator(".bxnb-lab-bees li[data-bee='hi']", has_text="2/2 replicas").wait_for(timeout=30_000)
            _screenshot(page)
            # taking a bee out is the owner's: refused in words, nothing changed
            bee.locator(".bxnb-remove-bee").click()
            refused = graph.locator(".bxnb-message.bxnb-error", has_text="only the notebook or script")
            refused.wait_for(timeout=30_000)
            assert request(gateway, {"name": "Again"}) == "hi Again"

            # a bee's logs, from the command palette
            _palette(page, "Open a bee's logs")
            _choose(page, "Open a bee's logs", f"theirs (owner {owner.pid})")
            _choose(page, "Logs of theirs", "hi")
            logs = page.locator(f".bxnb-lab-logs[data-swarm='{sid}'][data-bee='hi'] pre")
            logs.filter(has_text="hi saw Again").wait_for(timeout=30_000)

            # the notebook attached to the stack, from the command palette: a cell that
            # attaches, run in its kernel, draws the stack's graph under it
            page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="attach.ipynb").click()
            _palette(page, "Attach this notebook to a deployed stack")
            _choose(page, "Attach this notebook", f"{stack} (deployed stack)")
            attached = page.locator(".jp-Notebook .bxnb-widget")
            for name in ("hello-world", "hello", "goodbye"):
                attached.locator(f".react-flow__node[data-id='{name}']").wait_for(timeout=90_000)
            cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
            assert f'Swarm.attach("{stack}")' in cell.locator(".jp-InputArea").inner_text()

            # the stack's own graph in a tab, read from its controller through the server
            deployed.locator(".bxnb-lab-open").click()
            drawn = page.locator(f".bxnb-lab-graph[data-swarm='stack/{stack}'] .bxnb-widget")
            drawn.locator(".react-flow__node[data-id='hello-world']").wait_for(timeout=60_000)
            for name in ("hello", "goodbye"):
                node = drawn.locator(f".react-flow__node[data-id='{name}'] .bxnb-status", has_text="ready")
                node.wait_for(timeout=60_000)

            # stopped from the palette: its owner drains it, the panel and the tab say so
            _palette(page, "Stop a swarm")
            _choose(page, "Stop a swarm", f"theirs (owner {owner.pid})")
            page.locator(".jp-Dialog", has_text="Stop swarm theirs?").locator("button.jp-mod-accept").click()
            mine.wait_for(state="detached", timeout=90_000)
            page.locator(
                ".jp-toast-message, .Toastify__toast", has_text="swarm 'theirs' stopped"
            ).first.wait_for(timeout=30_000)
            assert not [r for r in state.read_all() if r.owner == owner.pid]
            deployed.locator(".bxnb-lab-state", has_text="ready").wait_for(timeout=10_000)
        except BaseException:
            dump_failure(page, tmp, "lab-panel")
            raise
        finally:
            browser.close()


def _screenshot(page: Any) -> None:
    """The docs' picture of the panel and a graph tab (scripts/screenshots.sh)."""
    folder = os.environ.get("BYTEWAX_NB_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / "lab-panel.png"))
