"""What a local attacker can try on a running swarm's sockets, with the bus not encrypted
(`BYTEWAX_NB_ENCRYPT=0`, where any local user can connect to them): it changes nothing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import zmq
from conftest import Load, wait_until

from bytewax_nb.model.protocol import Role


@pytest.mark.slow
def test_guessed_identities_take_over_no_link_and_read_nothing_without_encryption(
    make_swarm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BYTEWAX_NB_ENCRYPT", "0")
    swarm = make_swarm(fuse=False)  # two bees: links from the hub and between them
    swarm.gateway("in")

    @swarm.bee(input="in")
    def a(payload: int) -> int:
        return payload + 1

    @swarm.bee(input="a", replicas=2)
    def b(payload: int) -> int:
        return payload * 2

    swarm.start()
    supervisor = swarm._supervisor
    members = list(supervisor.book.wiring.members.values())
    links = [m.address for m in members if m.address]
    control = supervisor.channel.address
    # identities as the old scheme made them (role:name:replica:launch): what an attacker
    # would guess, with every launch number up to well past those in use
    guesses = [
        f"{role}:{name}:{r}:{n}"
        for (role, name), r, n in itertools.product(
            [(Role.HUB, "hub"), (Role.BEE, "a"), (Role.BEE, "b")], range(2), range(1, 12)
        )
    ]
    ctx = zmq.Context()
    intruders = []
    try:
        for address in [*links, control]:
            for identity in guesses:
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.IDENTITY, identity.encode())
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(address)
                sock.send_multipart([b"hello", b"x" * 32, b"j", b"{}"])  # unsigned: dropped
                intruders.append(sock)
        with Load(swarm.url(), callers=4) as load:
            wait_until(lambda: len(load.outcomes) > 500, timeout=60, what="500 requests")
        poller = zmq.Poller()
        for sock in intruders:
            poller.register(sock, zmq.POLLIN)
        received = poller.poll(200)  # anything queued for them is there by now: nothing must be
    finally:
        for sock in intruders:
            sock.close(linger=0)
        ctx.destroy(linger=0)
    assert not received, f"{len(received)} intruder sockets received frames"
    assert [o for o in load.outcomes if o[1] != 200 or o[2] != (o[3] + 1) * 2] == []
    assert swarm.status()["ready"]
