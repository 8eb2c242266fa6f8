"""Accepted submits (`?mode=submit`): journaled before the 202, kept until every bee that
listens to their gateway has handled them, so a hub that dies and restarts sends them
again (see `journal`). One whose replicas died past its retries is said failed."""

from __future__ import annotations

from .journal import Journal

__all__ = ["Submits"]


class Submits:
    """Submits by request id, and how many bees have yet to handle each."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._left: dict[str, int] = {}

    def __contains__(self, rid: str) -> bool:
        return rid in self._left

    def add(self, rid: str, bees: int) -> None:
        self._left[rid] = bees

    def taken(self, rid: str) -> bool:
        """A bee handled it; True once every bee has (it leaves the journal then)."""
        left = self._left.get(rid)
        if left is None:
            return False
        if left > 1:
            self._left[rid] = left - 1
            return False
        del self._left[rid]
        self.journal.taken(rid)
        return True
