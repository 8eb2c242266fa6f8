"""The bus's encryption: CurveZMQ on every link and control socket of a swarm.

Signatures (see `wire`) already stop a forged frame from being acted on; encryption
stops a local process from reading payloads at all, or from connecting in the first
place. Each swarm makes two key pairs: one its servers (every ROUTER a replica, the
hub or the supervisor binds) present, one its clients (every DEALER) present. They
travel in the boot line, as the signing key does, never in argv, the environment or
an image. A ZAP handler in each process admits only the swarm's client key, so a
process without it fails the handshake.

`BYTEWAX_NB_ENCRYPT=0` turns it off for swarms run on one machine (the cost is in
docs/decisions.md, and what it gives up in docs/wire.md); a deployed stack, whose
network other machines share, is always encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import zmq

from ..model.settings import ENCRYPT

__all__ = ["BusKeys", "Curve"]


@dataclass(frozen=True)
class BusKeys:
    """A swarm's two CurveZMQ key pairs (Z85 text)."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def make(cls, *, local: bool = False) -> BusKeys | None:
        """Fresh keys; None when libzmq has no CURVE, or for a swarm on this machine
        (`local`) when `BYTEWAX_NB_ENCRYPT=0`."""
        if (local and ENCRYPT.get() == "0") or not zmq.has("curve"):
            return None
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public, server_secret, client_public, client_secret)

    def to_boot(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self.__dict__.items()}

    @classmethod
    def from_boot(cls, body: dict[str, str] | None) -> BusKeys | None:
        return None if not body else cls(**{k: v.encode() for k, v in body.items()})


class _OnlyOurs:
    """ZAP credentials: the swarm's client key, and nothing else."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self._key


class Curve:
    """Makes one process's sockets speak CurveZMQ with the swarm's keys (no-op without)."""

    def __init__(self, ctx: zmq.Context[Any], keys: BusKeys | None) -> None:
        self._ctx = ctx
        self.keys = keys
        self._auth: Any = None

    def server(self, sock: zmq.Socket[Any]) -> None:
        """Before bind: accept only clients holding the swarm's client key."""
        if self.keys is None:
            return
        if self._auth is None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve_callback("*", credentials_provider=_OnlyOurs(self.keys.client_public))
        sock.curve_secretkey = self.keys.server_secret
        sock.curve_publickey = self.keys.server_public
        sock.curve_server = True

    def client(self, sock: zmq.Socket[Any]) -> None:
        """Before connect: present the swarm's client key, expect its server key."""
        if self.keys is None:
            return
        sock.curve_serverkey = self.keys.server_public
        sock.curve_publickey = self.keys.client_public
        sock.curve_secretkey = self.keys.client_secret

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
