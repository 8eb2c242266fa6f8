"""`bytewax-nb run NOTEBOOK`: execute a notebook in a kernel and keep its swarms serving.

Cells run in order as in Jupyter, except `%swarm stop` cells: a headless run serves
until SIGINT or SIGTERM, then stops every swarm in the kernel (draining what is in
flight) and shuts the kernel down.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from . import state
from .errors import BytewaxNBError

__all__ = ["run_notebook"]

_STOP_CODE = "import bytewax_nb.swarm as _bytewax_nb_swarm\n_bytewax_nb_swarm.stop_all()"


def _print_outputs(cell: Any) -> None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            print(out.get("text", ""), end="", file=sys.stderr if out.get("name") == "stderr" else sys.stdout)


def _skipped(cell: Any) -> bool:
    return bool(cell.cell_type == "code" and cell.source.lstrip().startswith("%swarm stop"))


def run_notebook(path: str, *, kernel: str | None = None, timeout: float = 600) -> int:
    if not os.path.exists(path):
        raise BytewaxNBError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    name = kernel or nb.metadata.get("kernelspec", {}).get("name", "python3")
    folder = os.path.dirname(os.path.abspath(path))
    client = NotebookClient(
        nb, timeout=int(timeout), kernel_name=name, resources={"metadata": {"path": folder}}
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if _skipped(cell):
                print(f"[cell {index}] skipped: {cell.source.strip()} (the swarm keeps serving)")
                continue
            if stop.is_set():
                break
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                print(f"[cell {index}] failed:\n{exc}", file=sys.stderr)
                return 1
            _print_outputs(cell)
        kernel_pid = getattr(getattr(client.km, "provisioner", None), "process", None)
        owner = getattr(kernel_pid, "pid", None)
        for r in state.read_all():
            if r.owner == owner:
                for gateway, url in r.gateways.items():
                    print(f"serving swarm {r.swarm!r}: gateway {gateway} at {url}", flush=True)
        print("serving until SIGINT or SIGTERM", flush=True)
        stop.wait()
        print("stopping: draining the swarms", flush=True)
        nb.cells.append(nbformat.v4.new_code_cell(_STOP_CODE))
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    return 0
