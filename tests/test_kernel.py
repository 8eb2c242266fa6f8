"""The magics in a real Jupyter kernel: live output under the cell, and kernel exit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from bytewax_nb.engine import state

pytestmark = pytest.mark.slow


def _notebook(*sources: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_a_bee_prints_and_logs_live_under_its_cell(tmp_path: Path) -> None:
    nb = _notebook(
        "%load_ext bytewax_nb\n%swarm new live --runtime process\n%gateway in",
        "%%bee --input in\nimport logging\ndef talk(p):\n    print('said', p)\n"
        "    logging.getLogger('talk').info('logged %s', p)\n    return p",
        # fused with talk (one process): its lines still go under its own cell
        "%%bee --input talk\ndef answer(p):\n    print('answering', p)\n    return p",
        # more lines than the panel shows: it says so, and where the rest are
        "%%bee --input in\ndef chatty(p):\n    for i in range(100):\n        print('line', i)",
        '%send in "hi"',
        "from bytewax_nb.notebook.magics import live_output\n"
        "assert live_output().wait_shown('talk', 'logged hi')\n"
        "assert live_output().wait_shown('answer', 'answering hi')\n"
        "assert live_output().wait_shown('chatty', 'line 99')",
        "%swarm stop",
    )
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    panels = [[o for o in nb.cells[i].outputs if o.output_type == "display_data"] for i in (1, 2, 3)]
    assert [len(p) for p in panels] == [1, 1, 1]
    talk, answer, chatty = (p[0].data["text/plain"] for p in panels)
    shown = chatty.splitlines()
    assert shown[0] == "... 60 earlier lines not shown; `%bee logs chatty` has them"
    assert shown[1:] == [f"chatty/0 | line {i}" for i in range(60, 100)]
    assert "talk/0 | said hi" in talk
    assert "talk/0 | INFO talk: logged hi" in talk
    assert "answer/0 | answering hi" in answer
    assert "answering" not in talk and "said" not in answer


def _start_swarm(kc: Any) -> dict[str, Any]:
    kc.execute_interactive(
        "%load_ext bytewax_nb\n%swarm new owned --runtime process\n%gateway in", timeout=60
    )
    kc.execute_interactive("%%bee --input in --replicas 2\ndef echo(p):\n    return p", timeout=60)
    lines: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            lines.append(msg["content"]["text"])

    code = "import json\nfrom bytewax_nb import current_swarm as c\nprint(json.dumps(c().status()))"
    kc.execute_interactive(code, timeout=60, output_hook=keep)
    st: dict[str, Any] = json.loads("".join(lines))
    return st


def _pids(st: dict[str, Any]) -> list[int]:
    pids = [g["pid"] for g in st["gateways"].values()]
    return pids + [r["pid"] for b in st["bees"].values() for r in b["replicas"]]


@pytest.mark.parametrize("now", [False, True], ids=["shutdown", "killed"])
def test_kernel_exit_stops_everything_the_notebook_started(
    kernel: tuple[KernelManager, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, now: bool
) -> None:
    km, kc = kernel
    st = _start_swarm(kc)
    pids = _pids(st)
    assert len(pids) == 3
    monkeypatch.setenv("BYTEWAX_NB_STATE_DIR", str(tmp_path / "state"))
    assert [r.swarm for r in state.read_all()] == ["owned"]
    km.shutdown_kernel(now=now)  # a polite shutdown runs atexit; a kill closes the children's pipes
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=15)
    assert not alive
    if not now:
        assert state.read_all() == []  # a clean exit removes its record


def test_a_bee_traceback_names_its_cell_as_ipython_does(tmp_path: Path) -> None:
    nb = _notebook(
        "%load_ext bytewax_nb\n%swarm new named --runtime process\n%gateway in\n%gateway api",
        '%%bee --input in\ndef picky(payload):\n    value = payload["needed"]\n    return value',
        # a bee written in a plain cell, added by the API
        "from bytewax_nb import current_swarm\n\ndef strict(p):\n    return 1 / 0\n\n"
        "current_swarm().bee(strict, input='api')",
        '%send in {"other": 1}',
        "current_swarm().request('api', 1)",
        "from bytewax_nb.notebook.magics import live_output\n"
        "assert live_output().wait_shown('picky', 'KeyError')",
        "%swarm stop",
    )
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    picky_cell, strict_cell = nb.cells[1].execution_count, nb.cells[2].execution_count
    for at, where in (
        (3, f"Cell In[{picky_cell}], line 2, in picky"),
        (4, f"Cell In[{strict_cell}], line 4, in strict"),
    ):
        (error,) = [o for o in nb.cells[at].outputs if o.output_type == "error"]
        shown = "\n".join(error.traceback)
        assert error.ename == "RemoteError" and where in shown, shown
        assert "ipykernel_" not in shown, shown  # no kernel's file left anywhere in it
    assert [o for o in nb.cells[5].outputs if o.output_type == "error"] == []
    (panel,) = [o.data["text/plain"] for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert f"Cell In[{picky_cell}], line 2, in picky" in panel and "ipykernel_" not in panel, panel
