"""The Swarm widget for real: JupyterLab and Notebook 7 started here, headless Chromium
driven by Playwright, a notebook that builds a 3-bee swarm, and an edge dragged with the
mouse; and a marimo notebook showing the same widget.

CI runs it (`bash .ci/run` installs Chromium); `--no-browser` skips it locally. A failing
run leaves a screenshot in `test-artifacts/`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import sys
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
    run_cell,
    server,
    start_kernel,
)
from conftest import missing

pytestmark = [pytest.mark.browser, pytest.mark.slow]


SETUP = """\
from bytewax_nb import Swarm, SwarmWidget

swarm = Swarm("browser", runtime="process", on_log=None)
swarm.gateway("in")

def step(name):
    def bee(p):
        return {**p, "path": p["path"] + [name]}
    return bee

swarm.bee(step("a"), input="in", name="a")
swarm.bee(step("b"), input="a", name="b")

@swarm.bee(input="b")
def c(p):
    print("c saw", "/".join(p["path"]) or "gateway", p["n"])
    return p["path"] + ["c"]

swarm.start()
SwarmWidget.of(swarm)
"""

CHECK = """\
import json, time
print("INPUTS", json.dumps(list(swarm.topology.bees["c"].inputs)))
print("ANSWER", json.dumps(swarm.request("in", {"n": 42, "path": []})))
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not any("c saw gateway 42" in x for x in swarm.logs("c")):
    time.sleep(0.05)
print("FLOWED", any("c saw gateway 42" in x for x in swarm.logs("c")))
"""


# figures changing as fast as a busy swarm's, many times a second: every update hands
# React Flow new node objects, which must not lose their size (nodes hidden, edges gone)
STRESS = """\
import time
w = SwarmWidget.of(swarm)
for i in range(150):
    with w._sync_lock, w.hold_sync():
        w.nodes = [dict(n, rate=float(i)) for n in w.nodes]
    time.sleep(0.01)
print("STRESSED")
"""


@pytest.fixture(params=["lab", "notebook"], ids=["JupyterLab", "Notebook 7"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A JupyterLab (or Notebook 7) server on loopback serving `tmp_path`; stopped with
    its kernels. The widget is an anywidget: neither needs an extension of ours for it."""
    front_end = request.param
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell(CHECK),
        nbformat.v4.new_code_cell(STRESS),
        nbformat.v4.new_code_cell("swarm.stop()"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "widget.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    cmd, env = front_end_command(front_end, tmp_path, port, token)
    base = f"http://127.0.0.1:{port}"
    with server(cmd, tmp_path, f"{base}/api/status?token={token}", env):
        start_kernel(base, token, "widget.ipynb")
        where = "lab/tree" if front_end == "lab" else "notebooks"
        yield f"{base}/{where}/widget.ipynb?token={token}", tmp_path, front_end


def _drawn_or_failed(graph: Any, cell: Any) -> None:
    """Wait for the widget's first node, or fail at once with the cell's traceback."""
    stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    error = cell.locator(stderr, has_text="Traceback")
    first = graph.locator(".react-flow__node").first
    first.or_(error).first.wait_for(timeout=90_000)
    assert not error.is_visible(), f"the set-up cell failed:\n{error.inner_text()}"


def _center(locator: Any) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None, "element not laid out"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _drag_edge(page: Any, graph: Any, producer: str, bee: str) -> None:
    """Press on the producer's output handle, move like a hand would, release on the bee's input."""
    source = graph.locator(f".react-flow__node[data-id='{producer}'] .react-flow__handle.source")
    target = graph.locator(f".react-flow__node[data-id='{bee}'] .react-flow__handle.target")
    sx, sy = _center(source)
    tx, ty = _center(target)
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move((sx + tx) / 2, (sy + ty) / 2 + 40, steps=12)
    page.mouse.move(tx, ty, steps=12)
    page.mouse.up()


# counts every moment a node is hidden (React Flow hides a node it has not measured)
_WATCH_HIDDEN = """() => {
  window.__bxnbHidden = 0;
  const watch = new MutationObserver(records => {
    for (const r of records) {
      const el = r.target;
      if (el.classList && el.classList.contains('react-flow__node') && el.style.visibility === 'hidden') {
        window.__bxnbHidden += 1;
      }
    }
  });
  const root = document.querySelector('.bxnb-widget');
  watch.observe(root, { attributes: true, attributeFilter: ['style'], subtree: true });
}"""


def _all_shown(graph: Any, nodes: list[str], edges: list[str]) -> None:
    """Every node visible and every edge drawn (a node React Flow has not measured is
    hidden, and its edges are not drawn at all)."""
    graph.scroll_into_view_if_needed()
    for name in nodes:
        graph.locator(f".react-flow__node[data-id='{name}']").wait_for(state="visible", timeout=10_000)
    for edge in edges:  # attached: a straight edge's box has no height, which Playwright calls hidden
        path = graph.locator(f".react-flow__edge[data-id='{edge}'] path.react-flow__edge-path")
        path.wait_for(state="attached", timeout=10_000)
        assert path.get_attribute("d"), f"edge {edge} has no path"


def _screenshot(graph: Any, front_end: str) -> None:
    """The docs' pictures of the widget, from the real front-ends (scripts/screenshots.sh
    sets the folder)."""
    folder = os.environ.get("BYTEWAX_NB_SCREENSHOTS")
    if folder:
        graph.screenshot(path=str(Path(folder) / f"widget-{front_end}.png"))


def test_dragging_an_edge_in_jupyterlab_rewires_the_running_swarm(
    lab: tuple[str, Path, str], busy_cpu: None
) -> None:
    sync_playwright = need_browser()
    url, tmp, front_end = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            # the kernel idle: Lab's status bar says so, Notebook 7's kernel indicator too;
            # or JupyterLab asks which kernel to start (the notebook's: accepted)
            idle = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\bIdle\b"))
            idle = idle.or_(page.locator(".jp-NotebookKernelStatus-idle, [data-status='idle']"))
            ask = page.locator(".jp-Dialog", has_text="Select Kernel")
            idle.or_(ask).first.wait_for(timeout=90_000)  # _run_cell answers the question
            setup = run_cell(page, 0)
            graph = page.locator(".bxnb-widget")
            _drawn_or_failed(graph, setup)
            for name in ("in", "a", "b", "c"):
                graph.locator(f".react-flow__node[data-id='{name}']").wait_for(timeout=90_000)
            c_status = graph.locator(".react-flow__node[data-id='c'] .bxnb-status")
            c_status.filter(has_text="ready").wait_for(timeout=60_000)
            # a chain of bees with the same settings is fused: a frame says they share a process
            graph.locator(".bxnb-frame[data-bees='a b c']").wait_for(timeout=30_000)

            # an edge that would close a cycle is refused on the spot, and nothing changes
            _drag_edge(page, graph, "c", "a")
            refusal = graph.locator(".bxnb-message.bxnb-error", has_text="cycle: a -> b -> c -> a")
            refusal.wait_for(timeout=10_000)

            _drag_edge(page, graph, "in", "c")
            graph.locator(".bxnb-message", has_text="done: connect in -> c").wait_for(timeout=60_000)
            graph.locator(".react-flow__edge[data-id='in->c']").wait_for(state="attached", timeout=10_000)
            # c reads two inputs now: it leaves the chain, the frame holds a and b only
            graph.locator(".bxnb-frame[data-bees='a b']").wait_for(timeout=30_000)
            graph.locator(".bxnb-frame[data-bees='a b c']").wait_for(state="detached", timeout=10_000)

            cell = run_cell(page, 1)
            out = cell.locator(".jp-OutputArea-output", has_text="FLOWED")
            out.wait_for(timeout=60_000)
            text = cell.locator(".jp-OutputArea").inner_text()
            assert 'INPUTS ["b", "in"]' in text
            assert "FLOWED True" in text
            assert re.search(r'ANSWER \[("c"|"a", "b", "c")\]', text), text

            page.evaluate(_WATCH_HIDDEN)
            run_cell(page, 2).locator(".jp-OutputArea-output", has_text="STRESSED").wait_for(timeout=60_000)
            _all_shown(graph, ["in", "a", "b", "c"], ["in->a", "a->b", "b->c", "in->c"])
            # each node draws its last minutes inside it (its rate, at least, once sampled twice)
            for name in ("in", "a", "b", "c"):
                spark = graph.locator(f".react-flow__node[data-id='{name}'] .bxnb-spark")
                spark.locator("polyline[data-series='rate']").wait_for(state="attached", timeout=10_000)
            assert page.evaluate("window.__bxnbHidden") == 0, "nodes were hidden by a figures update"

            # a click on the gateway opens its panel: a test payload sent traced, and the
            # waterfall of where its time went; a typing mistake answered there
            graph.locator(".react-flow__node[data-id='in']").click()
            gpanel = graph.locator(".bxnb-panel[data-panel='gateway']")
            gpanel.locator(".bxnb-probe-payload").fill('{"n": 5, "path": []}')
            gpanel.locator(".bxnb-probe-send").click()
            gpanel.locator(".bxnb-probe-answer", has_text='"c"').wait_for(timeout=60_000)
            gpanel.locator(".bxnb-span[data-kind='running'][data-bee='c']").wait_for(timeout=10_000)
            _screenshot(graph, f"{front_end}-trace")
            gpanel.locator(".bxnb-probe-payload").fill("{oops")
            gpanel.locator(".bxnb-probe-send").click()
            gpanel.locator(".bxnb-probe-error", has_text="not JSON").wait_for(timeout=30_000)
            gpanel.locator(".bxnb-kept-load").click()
            gpanel.locator(".bxnb-kept[data-kept='slowest'] .bxnb-kept-item").first.click(timeout=30_000)
            gpanel.locator(".bxnb-waterfall .bxnb-span[data-kind='request']").wait_for(timeout=10_000)

            # a click on a bee opens its panel: its log lines, and its replica count to edit
            graph.locator(".react-flow__node[data-id='c']").click()
            panel = graph.locator(".bxnb-panel[data-panel='bee']")
            panel.locator(".bxnb-logs", has_text="c saw gateway 42").wait_for(timeout=30_000)
            # its last minutes (rate, p50/p99, errors) as charts, its replicas as a table
            panel.locator(".bxnb-chart canvas").nth(2).wait_for(timeout=30_000)
            panel.locator(".bxnb-replica-table tr[data-replica='0']", has_text="handled").wait_for(
                timeout=30_000
            )
            panel.locator(".bxnb-replicas").fill("2")
            panel.locator(".bxnb-apply").click()
            graph.locator(".bxnb-message", has_text="done: c: 2 replicas").wait_for(timeout=60_000)
            graph.locator(".react-flow__node[data-id='c']", has_text="2/2 replicas").wait_for(timeout=30_000)
            panel.locator(".bxnb-replica-table tr[data-replica='1']").wait_for(timeout=30_000)
            _screenshot(graph, front_end)

            # a click on an edge selects it; its panel removes it from the running swarm
            graph.locator(".react-flow__edge[data-id='b->c'] .react-flow__edge-interaction").click()
            graph.locator(".bxnb-panel[data-panel='edge'] .bxnb-remove-edge").click()
            graph.locator(".bxnb-message", has_text="done: disconnect b -> c").wait_for(timeout=60_000)
            graph.locator(".react-flow__edge[data-id='b->c']").wait_for(state="detached", timeout=10_000)

            # a bee's panel takes it out of the running swarm
            graph.locator(".react-flow__node[data-id='c']").click()
            graph.locator(".bxnb-panel[data-panel='bee'] .bxnb-remove-bee").click()
            graph.locator(".bxnb-message", has_text="done: remove bee c").wait_for(timeout=60_000)
            graph.locator(".react-flow__node[data-id='c']").wait_for(state="detached", timeout=10_000)

            run_cell(page, 3)
            graph.locator(".bxnb-swarm-state", has_text="stopped").wait_for(timeout=30_000)
        except BaseException:
            dump_failure(page, tmp, f"widget-{front_end}")
            raise
        finally:
            browser.close()


MARIMO_APP = """\
import marimo

app = marimo.App()


@app.cell
def _():
    from bytewax_nb import Swarm, SwarmWidget

    swarm = Swarm("marimo", runtime="process", on_log=None)
    swarm.gateway("in")

    def step(name):
        def bee(p):
            return {**p, "path": p["path"] + [name]}

        return bee

    swarm.bee(step("a"), input="in", name="a")
    swarm.bee(step("b"), input="a", name="b")
    swarm.bee(step("c"), input="b", name="c")
    swarm.start()
    widget = SwarmWidget.of(swarm)
    widget
    return swarm, widget
"""


@pytest.fixture
def marimo_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`marimo run` of a notebook whose cell shows a swarm's widget; stopped with the swarm."""
    if importlib.util.find_spec("marimo") is None:
        missing("marimo is not installed", 'pip install -e ".[dev]"', "--no-browser")
    (tmp_path / "app.py").write_text(MARIMO_APP)
    port = free_port()
    cmd = [sys.executable, "-m", "marimo", "run", "app.py", "--headless", "--host", "127.0.0.1"]
    base = f"http://127.0.0.1:{port}"
    with server([*cmd, "--port", str(port)], tmp_path, f"{base}/health"):
        yield base, tmp_path


def test_the_widget_draws_and_edits_a_swarm_in_marimo(marimo_app: tuple[str, Path], busy_cpu: None) -> None:
    sync_playwright = need_browser()
    url, tmp = marimo_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            graph = page.locator(".bxnb-widget")
            for name in ("in", "a", "b", "c"):
                graph.locator(f".react-flow__node[data-id='{name}']").wait_for(timeout=90_000)
            # figures come from the kernel's poller thread: the bees turn ready
            graph.locator(".react-flow__node[data-id='c'] .bxnb-status", has_text="ready").wait_for(
                timeout=60_000
            )
            assert "not supported in marimo" not in page.content()
            # an edit goes to the kernel as a message and comes back as the swarm's new graph
            _drag_edge(page, graph, "in", "c")
            graph.locator(".bxnb-message", has_text="done: connect in -> c").wait_for(timeout=60_000)
            graph.locator(".react-flow__edge[data-id='in->c']").wait_for(state="attached", timeout=10_000)
            graph.locator(".bxnb-frame[data-bees='a b']").wait_for(timeout=30_000)
            _screenshot(graph, "marimo")
        except BaseException:
            dump_failure(page, tmp, "widget-marimo")
            raise
        finally:
            browser.close()
