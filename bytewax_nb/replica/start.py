"""How a bee replica's process starts: its boot (stdin, or a stack's secret), its
configuration (a stack's task has its code in its image), the modules its code imports
checked before it says UP, then the loop (`runner`)."""

from __future__ import annotations

import importlib
import logging
import pickle
import signal
import sys
from collections.abc import Iterable
from typing import cast

from ..bus.child import Child, read_boot
from ..model.protocol import BeeConfig
from ..model.spec import BeeSpec
from ..model.stagelog import Tagger
from .runner import Replica

__all__ = ["main"]

BUNDLE = "/opt/bytewax-nb/bee.pkl"  # in a stack's bee image: the bee's code (see `bytewax_nb.stack`)


def _check_imports(bee: str, modules: Iterable[str]) -> None:
    """Import what the bee's code imports, before saying UP: a module missing here fails
    the start (or the redeploy, which is rolled back), not the bee's first caller."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SystemExit(
                f"bytewax-nb: bee {bee!r} imports {module!r}, which this replica cannot import "
                f"({type(exc).__name__}: {exc}); add the package to the bee's requirements=[...]"
            ) from None


def _from_image(config: BeeConfig) -> BeeConfig:
    """A stack's replica runs the code its image holds (the controller has none to send):
    the image is what the deployer built, trusted as any code in it."""
    with open(BUNDLE, "rb") as f:
        bundle = pickle.load(f)
    spec: BeeSpec = bundle["spec"]
    if spec.name != config["spec"].name:
        raise SystemExit(f"bytewax-nb: this image runs bee {spec.name!r}, not {config['spec'].name!r}")
    return BeeConfig(
        replica=config["replica"],
        spec=spec,
        routes=config["routes"],
        links=config["links"],
        peer_host=config["peer_host"],
        timeout=config["timeout"],
        sources=bundle["sources"],
        imports=bundle["imports"],
    )


def main() -> None:
    child = Child(read_boot())
    try:
        config = cast(BeeConfig, child.recv_config())
        if child.boot.stack:
            config = _from_image(config)
        if config["spec"].stages:  # a fused group: each line says which bee printed it
            sys.stdout, sys.stderr = Tagger(sys.stdout), Tagger(sys.stderr)
        # a bee's logging goes where its prints go: the owner's live output and `logs`
        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout
        )
        _check_imports(config["spec"].name, config["imports"])
        replica = Replica(child, config)
        if child.boot.stack:  # the engine stops a task (scale down, update) with SIGTERM
            signal.signal(signal.SIGTERM, lambda *_: setattr(replica, "leaving", True))
        try:
            replica.run()
        finally:
            replica.intake.close()
    finally:
        child.close()
