"""What each process is told: its configuration when it says hello, then, whenever the
swarm changes, the producers it reads from (LINKS), the bees its topics go to (ROUTES)
and, once replaced, RETIRE.

Bee replicas are configured once the hub's link socket has an address (they dial it);
one that says hello earlier waits here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model.promises import gateway_contract
from ..model.protocol import BeeConfig, Contract, HubConfig, LinksBody, MemberState, Msg, Role, Up
from ..model.source import capture, imported_modules
from ..runtime.base import Launcher
from .book import Book
from .wiring import Member

__all__ = ["Configurator"]

Send = Callable[[Member, Msg, Any], None]


class Configurator:
    """Sends processes what they run and whom they talk to; keeps no socket itself."""

    def __init__(self, book: Book, launcher: Launcher, send: Send, journal: str, stack: bool) -> None:
        self._book = book
        self._launcher = launcher
        self._send = send
        self._journal = journal  # the hub's SQLite file of accepted submits
        self._stack = stack  # a stack's tasks: code in their images, the hub on the stack's network
        self._waiting: list[Member] = []  # bee replicas that said hello before the hub was up
        self._contracts: dict[str, Contract] | None = None  # what the hub was told last

    def hello(self, m: Member) -> None:
        hub = self._book.wiring.hub()
        if m.role == Role.BEE and (hub is None or hub.address is None):
            self._waiting.append(m)  # configured once the hub's address is known
        else:
            self.configure(m)

    def up(self, m: Member, body: Up) -> None:
        """Its link socket listens (the hub's: bees waiting for it are configured now)."""
        m.state = MemberState.UP
        m.address = body["address"]
        if m.role == Role.HUB:
            self._book.ports.update(body.get("ports", {}))
            waiting, self._waiting = self._waiting, []
            for w in waiting:
                if w.identity in self._book.wiring.members:
                    self.configure(w)

    def configure(self, m: Member) -> None:
        wiring = self._book.wiring
        self._send(m, Msg.CONFIG, self.config_for(m))
        m.routes_sent = wiring.routes_for(m)
        if m.role == Role.BEE:
            m.links_sent = self.links_for(m)
        m.state = MemberState.CONFIGURED

    def config_for(self, m: Member) -> HubConfig | BeeConfig:
        book = self._book
        routes = book.wiring.routes_for(m)
        if m.role == Role.HUB:
            # a restarted hub takes the same ports: URLs hold
            return HubConfig(
                gateways=list(book.topology.gateways.values()),
                bus_host=self._launcher.peer_host if self._stack else self._launcher.bind_host,
                ports=dict(book.ports),
                routes=routes,
                journal=self._journal,
                contracts=self._contracts_now(),
            )
        spec = book.units.bees[m.name]
        stages = spec.stages or (spec,)
        return BeeConfig(
            replica=m.replica,
            spec=spec,
            routes=routes,
            links=self.links_for(m),
            peer_host=self._launcher.peer_host,
            timeout=book.units.call_timeout(spec),
            # a stack's replica has its code in its image
            sources={} if self._stack else {s.name: capture(s.fn) for s in stages},
            imports=[] if self._stack else sorted(set().union(*(imported_modules(s.fn) for s in stages))),
        )

    def links_for(self, m: Member) -> LinksBody:
        """The LINKS body of a bee replica; the hub's address as this runtime's replicas dial it."""
        wiring = self._book.wiring
        body = wiring.links_for(m)
        hub = wiring.hub()
        if hub is not None and hub.identity in body["links"]:
            spec = self._book.units.bees.get(m.name)
            body["links"][hub.identity] = self._launcher.advertise(body["links"][hub.identity], spec)
        return body

    def _contracts_now(self) -> dict[str, Contract]:
        topology = self._book.topology
        self._contracts = {g: gateway_contract(topology, g) for g in topology.gateways}
        return self._contracts

    def rewire(self) -> None:
        """Tell every process what changed for it, and retire what is replaced."""
        wiring = self._book.wiring
        hub = wiring.hub()
        if hub is not None and hub.state == MemberState.UP:
            sent = self._contracts
            if self._contracts_now() != sent:  # a bee changed what its gateways promise
                self._send(hub, Msg.CONTRACTS, self._contracts)
        for m in list(wiring.members.values()):
            if m.state != MemberState.UP:
                continue
            routes = wiring.routes_for(m)
            # a replaced replica keeps its routes: what it still makes goes where it did
            # (after a regroup, the bees it fed may exist only inside the new group)
            if routes != m.routes_sent and not m.retiring:
                m.routes_sent = routes
                self._send(m, Msg.ROUTES, routes)
            if m.role == Role.BEE:
                links = self.links_for(m)
                if links != m.links_sent:
                    m.links_sent = links
                    self._send(m, Msg.LINKS, links)
        wiring.note_ready()
        for m in wiring.to_retire():
            m.retire_sent = True
            self._send(m, Msg.RETIRE, None)
