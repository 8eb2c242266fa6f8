"""Keep a bee's source visible in a replica's tracebacks.

cloudpickle (3.x) rewrites the file name of code it pickles by value to
"<dynamic-code>", and a replica has no copy of a notebook cell anyway. So the owner
ships, with the bee, the file name and source lines of every function the bee
reaches; the replica puts the names back and fills `linecache`, and a traceback
shows the user's own lines.
"""

from __future__ import annotations

import dis
import linecache
import os
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["capture", "functions", "imported_modules", "restore", "user_traceback"]

Captured = dict[str, Any]  # {"files": {name: lines}, "codes": {(code name, first line): name}}
# bytewax-nb's own code: what tracebacks and stacks shown to users leave out, and what
# every bee image carries
PACKAGE_PATH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = PACKAGE_PATH + os.sep  # as a prefix of file names


def functions(fn: Callable[..., Any]) -> Iterator[types.FunctionType]:
    """The function and the user functions it reaches through closures and globals."""
    seen: set[int] = set()
    todo = [fn]
    while todo:
        f = todo.pop()
        if not isinstance(f, types.FunctionType) or id(f) in seen:
            continue
        seen.add(id(f))
        yield f
        for cell in f.__closure__ or ():
            try:
                todo.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        for name in _names(f.__code__):
            value = f.__globals__.get(name)
            if isinstance(value, types.FunctionType):
                todo.append(value)


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def capture(fn: Callable[..., Any]) -> Captured:
    """File names and source lines of the code `fn` runs, keyed for `restore`."""
    files: dict[str, list[str]] = {}
    codes: dict[tuple[str, int], str] = {}
    for f in functions(fn):
        for code in _codes(f.__code__):
            name = code.co_filename
            codes[(code.co_name, code.co_firstlineno)] = name
            if name not in files:
                lines = linecache.getlines(name)
                if lines:
                    files[name] = lines
    return {"files": files, "codes": codes}


def _renamed(code: types.CodeType, codes: dict[tuple[str, int], str]) -> types.CodeType:
    consts = tuple(_renamed(c, codes) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    name = codes.get((code.co_name, code.co_firstlineno), code.co_filename)
    return code.replace(co_filename=name, co_consts=consts)


def restore(fn: Callable[..., Any], captured: Captured) -> None:
    """Give the unpickled code its file names back and make its lines readable."""
    for name, lines in captured.get("files", {}).items():
        linecache.cache[name] = (sum(map(len, lines)), None, lines, name)
    codes = captured.get("codes", {})
    for f in functions(fn):
        f.__code__ = _renamed(f.__code__, codes)


def user_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """Skip the leading frames that belong to bytewax-nb itself."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
        tb = tb.tb_next
    return tb


def imported_modules(fn: Callable[..., Any]) -> set[str]:
    """Top-level modules the bee's code imports in its own body (`import numpy as np`
    inside the function): no captured value shows them, the code does. Imports under
    a `try` (or any other handler) count as optional and are left out."""
    tops: set[str] = set()
    for f in functions(fn):
        todo = [f.__code__]
        while todo:
            code = todo.pop()
            todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            listing = dis.Bytecode(code)
            guarded = [(e.start, e.end) for e in getattr(listing, "exception_entries", ())]
            for ins in listing:
                if ins.opname != "IMPORT_NAME" or not isinstance(ins.argval, str) or not ins.argval:
                    continue
                if not any(start <= ins.offset < end for start, end in guarded):
                    tops.add(ins.argval.split(".")[0])
    return tops
