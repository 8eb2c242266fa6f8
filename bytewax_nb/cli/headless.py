"""`bytewax-nb run NOTEBOOK`: execute a notebook in a kernel and keep its swarms serving.

Cells run in order as in Jupyter, except `%swarm stop` cells: a headless run serves
until SIGINT or SIGTERM, then stops every swarm in the kernel (draining what is in
flight) and shuts the kernel down.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ..engine import state
from ..model.errors import BytewaxNBError
from ..model.settings import DECLARE

__all__ = ["detach", "read_declared", "run_log", "run_notebook"]

_WATCH_S = 1.0  # how often a serving run checks whether its swarms were stopped elsewhere
_STOP_CODE = "import bytewax_nb.swarm as _bytewax_nb_swarm\n_bytewax_nb_swarm.stop_all()"


def _print_outputs(cell: Any) -> None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            print(out.get("text", ""), end="", file=sys.stderr if out.get("name") == "stderr" else sys.stdout)


def _skipped(cell: Any) -> bool:
    return bool(cell.cell_type == "code" and cell.source.lstrip().startswith("%swarm stop"))


@contextlib.contextmanager
def _kernel(
    path: str, kernel: str | None, timeout: float, env: dict[str, str] | None = None
) -> Iterator[tuple[Any, NotebookClient, KernelManager]]:
    """The notebook, and a client running it in a kernel of its own from the notebook's
    folder; the kernel is shut down at the end. The kernel speaks over IPC sockets in a
    folder only this user reads (TCP would carry code and outputs in clear on loopback,
    and ipykernel says so on every start)."""
    if not os.path.exists(path):
        raise BytewaxNBError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    name = kernel or nb.metadata.get("kernelspec", {}).get("name", "python3")
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix="bytewax-nb-kernel-") as sockets:
        km = KernelManager(kernel_name=name, transport="ipc", ip=os.path.join(sockets, "kernel"))
        client = NotebookClient(nb, km=km, timeout=int(timeout), resources={"metadata": {"path": folder}})
        try:
            with client.setup_kernel(**({"env": {**os.environ, **env}} if env else {})):
                yield nb, client, km
        finally:
            if km.has_kernel:
                with contextlib.suppress(Exception):  # gone already: nothing to shut down
                    km.shutdown_kernel(now=False)
            km.cleanup_resources()


def run_notebook(
    path: str, *, kernel: str | None = None, timeout: float = 600, ready_fd: int | None = None
) -> int:
    """Execute the notebook; serve until SIGINT/SIGTERM; 1 if a cell failed.

    `ready_fd`, if given, gets a line once every cell has run (what `--detach` waits for).
    """
    code = _run_notebook(path, kernel, timeout, ready_fd)
    if ready_fd is not None and code == 0:  # a background run stopped: its log goes with it
        run_log(os.getpid()).unlink(missing_ok=True)  # (a failed run's stays, to say why)
    return code


def _run_notebook(path: str, kernel: str | None, timeout: float, ready_fd: int | None) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _kernel(path, kernel, timeout) as (nb, client, km):
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
        process = getattr(getattr(km, "provisioner", None), "process", None)
        owner = getattr(process, "pid", None)

        def own() -> list[state.Record]:
            return [r for r in state.read_all() if r.owner == owner]

        for r in own():
            for gateway, url in r.gateways.items():
                print(f"serving swarm {r.swarm!r}: gateway {gateway} at {url}", flush=True)
        print("serving until SIGINT or SIGTERM", flush=True)
        if ready_fd is not None:  # `--detach` prints what this run serves, and only that
            served = [[r.swarm, g, url] for r in own() for g, url in r.gateways.items()]
            os.write(ready_fd, json.dumps({"ready": served}).encode() + b"\n")
            os.close(ready_fd)
        # serve until told to stop, or until `bytewax-nb stop` has stopped every swarm here
        while not stop.wait(_WATCH_S):
            if not own():
                print("every swarm of the notebook was stopped", flush=True)
                return 0
        print("stopping: draining the swarms", flush=True)
        nb.cells.append(nbformat.v4.new_code_cell(_STOP_CODE))
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    return 0


def detach(path: str, *, kernel: str | None, timeout: float) -> int:
    """Run the notebook in a background process; return once all its cells have run.

    The background run logs to `<state dir>/run-<its pid>.log` and serves until it gets
    SIGTERM (or `bytewax-nb stop` stops its swarms); then its log goes with it (`gc`
    removes one whose run died).
    """
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "bytewax_nb.cli", "run", path, "--timeout", str(timeout)]
    command += ["--ready-fd", str(write_end)] + (["--kernel", kernel] if kernel else [])
    starting = state.state_dir() / f"run-starting-{os.getpid()}.log"
    with open(starting, "w") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_end,),
            start_new_session=True,  # outlives this command and the terminal's Ctrl-C
        )
    log_path = run_log(proc.pid)
    starting.rename(log_path)  # named after its writer, so a stopped run finds it (the file stays open)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        line = ready.readline()  # blocks until every cell ran, or the run died
    try:
        served = json.loads(line)["ready"]
    except (ValueError, KeyError, TypeError):
        proc.wait()
        tail = log_path.read_text().splitlines()[-20:]
        print("\n".join(tail), file=sys.stderr)
        return 1
    print(f"running in the background (pid {proc.pid}); log: {log_path}")
    for swarm, gateway, url in served:
        print(f"swarm {swarm!r}: gateway {gateway} at {url}")
    return 0


def run_log(pid: int) -> Path:
    """Where the background run `pid` (`run --detach`) writes its output."""
    return state.state_dir() / f"run-{pid}.log"


def read_declared(path: str, code: str, *, kernel: str | None = None, timeout: float = 600) -> str:
    """Execute the notebook's cells in a kernel where swarms are only declared (nothing
    starts: `engine.declared`), then `code` in the same kernel; return what `code`
    printed (what deploy and export do).

    A cell that would talk to the running swarm (a request, `%send`, its URL) is skipped
    where it does so, and so is a later cell that fails on a name such a cell would have
    made; each skip is said on stderr. Any other error raises BytewaxNBError in one line."""
    with _kernel(path, kernel, timeout, env={DECLARE.name: "1"}) as (nb, client, _):
        talked = False  # a cell was skipped: later ones may miss what it would have made
        for index, cell in enumerate(list(nb.cells)):
            if cell.cell_type != "code" or _skipped(cell):
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:  # its error in one line, not the coloured traceback
                if exc.ename == "NotRunningHere" or (
                    talked and exc.ename in ("NameError", "UnboundLocalError")
                ):
                    talked = True
                    print(f"cell {index} skipped: {exc.ename}: {exc.evalue}", file=sys.stderr, flush=True)
                    continue
                name = os.path.basename(path)
                raise BytewaxNBError(f"cell {index} of {name} failed: {exc.ename}: {exc.evalue}") from None
        last = nbformat.v4.new_code_cell(code)
        nb.cells.append(last)
        try:
            client.execute_cell(last, len(nb.cells) - 1)
        except CellExecutionError as exc:
            raise BytewaxNBError(f"{exc.ename}: {exc.evalue}") from None
    return "".join(
        out.get("text", "") for out in last.get("outputs", []) if out.get("output_type") == "stream"
    )
