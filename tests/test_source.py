"""A bee pickled by value still shows its own source lines in a traceback."""

from __future__ import annotations

import linecache
import pickle
import traceback
from typing import Any

import cloudpickle

from bytewax_nb.model.source import capture, restore

_CELL = """\
def helper(p):
    return p["missing"]

def bee(payload):
    total = 1
    return helper(payload) + total
"""


def test_restored_function_reports_the_cell_file_and_lines() -> None:
    name = "/tmp/ipykernel_0/cell-42.py"  # as a notebook kernel names a cell
    linecache.cache[name] = (len(_CELL), None, _CELL.splitlines(True), name)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(_CELL, name, "exec"), namespace)
    bee = namespace["bee"]
    shipped = capture(bee)
    assert set(shipped["files"]) == {name}
    blob = cloudpickle.dumps(bee)
    del linecache.cache[name]  # the replica has no copy of the cell

    remote = pickle.loads(blob)
    restore(remote, pickle.loads(pickle.dumps(shipped)))
    try:
        remote({})
    except KeyError as exc:
        text = "".join(traceback.format_exception(exc))
    assert f'File "{name}", line 6, in bee' in text
    assert "return helper(payload) + total" in text
    assert f'File "{name}", line 2, in helper' in text
    assert 'return p["missing"]' in text
