"""Whose output a line is, when several bees share a process.

A fused group's process prints for all of its bees, through one stdout and one stderr.
While a bee's code runs, every line it starts is prefixed with a mark naming the bee;
the owner reads the mark off (`untag`) and files the line under that bee: its cell, its
`%bee logs`, its log file. A bee alone in its process needs no marks.
"""

from __future__ import annotations

import io
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
    """A text stream that marks the lines started while `bee` is set."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw
        self.bee: str | None = None
        self._at_start = True

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not s:
            return 0
        bee = self.bee
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
