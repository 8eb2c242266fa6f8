"""Whose output a line is, when several bees share a process.

A fused group's process prints for all of its bees, through one stdout and one stderr.
Every line is prefixed with a mark naming the bee whose code runs (or ran last: what
the replica prints about a call, its error or its timeout, is that bee's too);
the owner reads the mark off (`untag`) and files the line under that bee: its cell, its
`%bee logs`, its log file. A bee alone in its process needs no marks.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TextIO

__all__ = ["Tagger", "tag", "untag"]

_START, _END = "\x02", "\x03"  # start and end of text: never in a bee's name, nor line breaks


def tag(bee: str) -> str:
    return f"{_START}{bee}{_END}"


def untag(line: str) -> tuple[str | None, str]:
    """(the bee a line belongs to, or None for the process's own lines; the line)."""
    if line.startswith(_START):
        end = line.find(_END, 1)
        if end > 0:
            return line[1:end], line[end + 1 :]
    return None, line


class Tagger(io.TextIOBase):
    """A text stream that marks each line it starts with the name `who()` gives, asked
    only when something is printed (nothing is done per call of a bee)."""

    def __init__(self, raw: TextIO, who: Callable[[], str | None] = lambda: None) -> None:
        self.raw = raw
        self.who = who
        self._at_start = True

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not s:
            return 0
        bee = self.who()
        if bee is None:
            self.raw.write(s)
        else:
            mark = tag(bee)
            parts = s.split("\n")
            for i, part in enumerate(parts):
                if part and (i > 0 or self._at_start):
                    parts[i] = mark + part
            self.raw.write("\n".join(parts))
        self._at_start = s.endswith("\n")
        return len(s)

    def flush(self) -> None:
        self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw.encoding
