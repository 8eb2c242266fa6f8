"""Entry point of a hub process: `python -m bytewax_nb.gateway` (boot line on stdin)."""

from __future__ import annotations

import asyncio
from typing import cast

from ..bus.child import Child, read_boot
from ..model.protocol import HubConfig
from .hub import Hub


async def _serve(child: Child, config: HubConfig) -> None:
    await Hub(child, config).run()


def main() -> None:
    child = Child(read_boot())
    try:
        config = cast(HubConfig, child.recv_config())
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(_serve(child, config))
        else:
            uvloop.run(_serve(child, config))
    finally:
        child.close()


if __name__ == "__main__":
    main()
