"""The hub's journal of accepted submits: work promised with a 202 is kept until a bee
has taken it, so neither a replica's death nor the hub's loses it.

SQLite in WAL mode, synchronous=NORMAL: a commit survives the death of the process
(what the journal is for) without an fsync per request; a power cut may lose the last
commits. An entry is written before the caller hears 202, deleted once every bee that
listens to its gateway has handled it, and replayed by a restarted hub. A message
handled just before the hub died, whose acknowledgement had not reached it yet, is
replayed too: submits are processed at least once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["Journal"]


class Journal:
    """Accepted submits not yet taken by a bee: (request id, gateway, body, receive time)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # autocommit: each statement is its own transaction (one per accepted submit)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS submits (rid TEXT PRIMARY KEY, gateway TEXT, body BLOB, t0 REAL)"
        )

    def add(self, rid: str, gateway: str, body: bytes, t0: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO submits VALUES (?, ?, ?, ?)", (rid, gateway, body, t0))

    def taken(self, rid: str) -> None:
        self._db.execute("DELETE FROM submits WHERE rid = ?", (rid,))

    def pending(self) -> list[tuple[str, str, bytes, float]]:
        """What a restarted hub sends again, oldest first."""
        rows = self._db.execute("SELECT rid, gateway, body, t0 FROM submits ORDER BY t0").fetchall()
        return [(str(r), str(g), bytes(b), float(t)) for r, g, b, t in rows]

    def __len__(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM submits").fetchone()
        return int(n)

    def close(self) -> None:
        self._db.close()
