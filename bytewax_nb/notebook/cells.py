"""A cell's file named as IPython names it.

IPython compiles each cell under a file of the kernel's (`/tmp/ipykernel_7/2981.py`)
and shows it as `Cell In[3], line 4`. A bee's traceback is made in a replica, which
knows only the file; here, in the kernel, it gets the cell's name back, under the cell
(the live output) and in a `RemoteError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["as_in_ipython", "cell_namer", "name_cells"]

_FILE = re.compile(r'File "([^"]+)", line (\d+)')


def name_cells(text: str, name_of: Callable[[str], str | None]) -> str:
    """`text` with each `File "F", line N` whose F is a cell's file as `Cell In[K], line N`."""

    def rename(m: re.Match[str]) -> str:
        name = name_of(m.group(1))
        return f"{name}, line {m.group(2)}" if name else m.group(0)

    return _FILE.sub(rename, text) if 'File "' in text else text


def cell_namer() -> Callable[[str], str | None] | None:
    """The running IPython's names for its cells' files (None outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    compiler = getattr(get_ipython(), "compile", None)
    label = getattr(compiler, "format_code_name", None)  # IPython >= 8: ("Cell", "In[3]")
    if label is None:
        return None

    def name_of(filename: str) -> str | None:
        said = label(filename)
        return f"{said[0]} {said[1]}" if said else None

    return name_of


def as_in_ipython(text: str) -> str:
    """`text` as the kernel's IPython would name its files (unchanged outside it)."""
    name_of = cell_namer()
    return name_cells(text, name_of) if name_of is not None else text
