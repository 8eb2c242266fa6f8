"""A replica's shard steps as pure logic: which requests it takes after widen and narrow."""

from __future__ import annotations

import zlib
from types import SimpleNamespace
from typing import Any

from bytewax_nb.runner import Replica
from bytewax_nb.wire import Header, Kind, Signer, topic_of

SIGNER = Signer(b"k" * 32)


class _Child:
    boot = SimpleNamespace(identity="me")

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, kind: str, body: Any) -> None:
        self.sent.append((kind, body))


def _replica() -> Replica:
    r = object.__new__(Replica)  # no sockets: only the shard bookkeeping is exercised
    r.child = _Child()  # type: ignore[assignment]
    r.shares, r.earlier, r.narrowed_at, r.take_all = frozenset([(1, 0)]), frozenset(), 0.0, True
    return r


def _step(r: Replica, members: list[str], widen: bool, since: float = 0.0) -> None:
    r._shard({"members": members, "version": 1, "widen": widen, "since": since})


def _takes(r: Replica, rid: str, t0: float) -> bool:
    frame0 = SIGNER.frames(topic_of("gw"), Header(Kind.DATA, rid, "gw", "gw", t0), b"1")[0]
    return r.take_all or r._mine(frame0, rid.encode())


def _rid(n: int, pos: int) -> str:
    return next(rid for i in range(1000) if zlib.crc32((rid := f"r{i}").encode()) % n == pos)


def test_widen_adds_narrow_keeps_the_old_share_for_requests_taken_before() -> None:
    r = _replica()
    _step(r, ["me", "other"], widen=True)
    assert r.shares == {(1, 0), (2, 0)} and r.take_all
    _step(r, ["me", "other"], widen=False, since=100.0)
    assert r.shares == {(2, 0)} and not r.take_all
    theirs = _rid(2, 1)
    assert _takes(r, theirs, t0=99.0)  # taken by the gateway before the narrow: maybe only here
    assert not _takes(r, theirs, t0=101.0)
    assert _takes(r, _rid(2, 0), t0=101.0)
    assert [body["widen"] for _, body in r.child.sent] == [True, False]  # type: ignore[attr-defined]


def test_back_to_back_narrows_keep_both_earlier_shares_and_a_later_one_forgets() -> None:
    r = _replica()
    _step(r, ["me", "other"], widen=True)
    _step(r, ["me", "other"], widen=False, since=100.0)
    _step(r, ["me", "b", "c"], widen=True)
    _step(r, ["me", "b", "c"], widen=False, since=100.004)
    assert r.shares == {(3, 0)} and r.earlier == {(1, 0), (2, 0), (3, 0)}
    assert _takes(r, _rid(3, 1), t0=99.9)  # the first narrow's share (1, 0) still covers it
    _step(r, ["me", "b"], widen=True)
    _step(r, ["me", "b"], widen=False, since=300.0)  # minutes later: older requests are long gone
    assert r.earlier == {(3, 0), (2, 0)}
