"""Processes come and go: launching them, reaping those that ended, telling the others
one died (what it held is sent again, or its callers hear how), and starting a
replacement after a back-off (`policy`). A stack's controller launches nothing (the
engine does) but counts deaths the same way.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from ..model import fusion
from ..model.protocol import Lost, MemberState, Msg, Role
from ..runtime.base import Handle, Launcher, NeverStarted
from .book import Book
from .changes import Change
from .channel import ControlChannel
from .logbook import LogBook
from .policy import RESTARTS
from .wiring import NO_HEARTBEAT, Member, death_error, describe, exit_cause

__all__ = ["Lifecycle"]


class Lifecycle:
    """Launches and restarts one swarm's processes (on the supervisor's thread)."""

    def __init__(
        self,
        book: Book,
        channel: ControlChannel,
        launcher: Launcher,
        logs: LogBook,
        after_change: Callable[[], None],
        launches: bool = True,
    ) -> None:
        self._book = book
        self._channel = channel
        self._launcher = launcher
        self._logs = logs
        self._after_change = after_change  # the swarm changed: rewire, report
        self._launches_processes = launches  # False in a stack's controller
        self._launched = 0  # processes launched so far: the launch part of each identity

    def launch_all(self) -> None:
        for key in self._book.wiring.want():
            self.launch(*key)

    def launch(self, role: Role, name: str, replica: int) -> None:
        book = self._book
        slot = book.wiring.slots[(role, name, replica)]
        # never reused within the swarm, even by a slot made again after a scale down:
        # every process remembers the sequence numbers it saw from each identity, and a
        # newcomer under an old name would be taken for a replay of it. Unguessable: the
        # sockets hand an identity over to whoever dials with it (a replica that dials
        # again takes its place back), so a local process that guessed one could take a
        # replica's place on its links and control channel when the bus is not encrypted
        self._launched += 1
        slot.generation = self._launched
        identity = f"{role}:{name}:{replica}:{self._launched}.{secrets.token_hex(8)}"
        spec = book.units.bees[name] if role == Role.BEE else None
        control = self._launcher.advertise(self._channel.address, spec)
        boot = self._channel.boot(identity, control)
        module = "bytewax_nb.replica" if role == Role.BEE else "bytewax_nb.gateway"  # the hub
        env = spec.env if spec is not None else {}
        handle: Handle
        try:
            handle = self._launcher.launch(identity, module, boot, env, self._logs.add, spec)
        except Exception as exc:  # noqa: BLE001 - a launch that fails is a replica that died
            self._logs.add(identity, f"bytewax-nb: could not launch: {type(exc).__name__}: {exc}")
            handle = NeverStarted(identity)
        group = tuple(fusion.members(spec)) if spec is not None and spec.stages else ()
        book.wiring.add(Member(identity, role, name, replica, handle, group=group))

    def reap(self) -> list[tuple[Member, int]]:
        """The processes that ended since the last look, with their exit codes (forgotten now)."""
        ended = []
        wiring = self._book.wiring
        for m in list(wiring.members.values()):
            code = m.handle.exit_code() if m.handle is not None else None
            if code is None:
                continue
            wiring.remove(m.identity)
            if m.handle is not None:
                m.handle.close()
            ended.append((m, code))
        return ended

    def died(self, m: Member, code: int, now: float, change: Change | None) -> None:
        """A process ended: the others hear it; unless it was replaced on purpose, its slot
        counts a failure and restarts after a back-off, and a change it was part of fails
        once it keeps dying before it ever served."""
        book = self._book
        clean = m.retiring and m.retire_sent and code == 0  # retired, drained, gone as asked
        self.tell_lost(m, code, clean)
        # replaced and stopped on purpose, or dying on its way out; a stack's task that went
        # silent died unasked, whatever it was doing (one that drains says BYE)
        if m.retiring and not (code == NO_HEARTBEAT and m.role == Role.BEE):
            self._after_change()
            return
        slot = book.wiring.slots.get(m.slot_key)
        if slot is None:  # a slot removed by a redeploy with fewer replicas
            return
        slot.last_exit = code
        slot.failures += 1  # back to 0 once a replica of the slot is wired again
        slot.restart_at = now + RESTARTS.delay(slot.failures)
        if m.role == Role.HUB:
            book.hub_restarts += 1
        else:
            how = death_error(list(m.bees), m.replica, exit_cause(code), self._logs.tail(m))
            book.wiring.note_death(m, how)
        self._logs.add(m.identity, f"bytewax-nb: process exited with code {code}; restarting")
        if change is not None and RESTARTS.gives_up(slot.failures, slot.ever_ready):
            change.error = (
                f"{m.role} {m.name!r} replica {m.replica} exited {slot.failures} times (last code {code})"
            )
            if change.undo is not None:
                change.undo()
            change.done.set()
        self._after_change()

    def died_unseen(self, identity: str) -> None:
        """A stack's task that died while no controller ran: counted as the engine
        restarted it, and what it held, if anything, is sent again."""
        book = self._book
        role, name, replica, _ = identity.split(":")
        self._logs.add(identity, "bytewax-nb: died while no controller ran")
        if role == Role.HUB:
            book.hub_restarts += 1
            return
        if name not in book.units.bees:
            return
        m = Member(identity, Role.BEE, name, int(replica), group=tuple(book.wiring.bees_of(name)))
        book.wiring.note_death(m, death_error(list(m.bees), m.replica, exit_cause(NO_HEARTBEAT), []))
        self.tell_lost(m, NO_HEARTBEAT, clean=False)
        self._after_change()

    def tell_lost(self, m: Member, code: int, clean: bool) -> None:
        """Every process that may have sent it work hears it died: what it held is sent
        again elsewhere, or its callers are told how it died."""
        book = self._book
        spec = book.units.bees.get(m.name) if m.role == Role.BEE else None
        body = Lost(
            identity=m.identity,
            bee=m.name,
            message=f"replica {m.replica} of {describe(list(m.bees))} {exit_cause(code)}",
            tail=self._logs.tail(m),
            clean=clean,
            retries=spec.retries if spec is not None else 0,
        )
        for other in book.wiring.members.values():
            if other.state in (MemberState.UP, MemberState.STOPPING) and other.identity != m.identity:
                self._channel.send(other.identity, Msg.LOST, body)

    def refill(self, now: float, change: Change | None) -> None:
        """Launch a process for every empty slot whose back-off has passed (not while a
        start that failed is being undone, nor in a stack, whose engine fills its slots)."""
        if not self._launches_processes:
            return
        if change is not None and change.error is not None and change.what == "start":
            return
        wiring = self._book.wiring
        filled = {m.slot_key for m in wiring.members.values() if not m.retiring}
        for key, slot in wiring.slots.items():
            if key not in filled and slot.restart_at <= now:
                self.launch(*key)

    @staticmethod
    def kill(members: list[Member]) -> None:
        for m in members:
            if m.handle is not None:
                m.handle.kill()
