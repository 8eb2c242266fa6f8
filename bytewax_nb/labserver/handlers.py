"""The HTTP side of the JupyterLab panel: routes under the server's base URL, behind
its login (a request without the server's token or cookie is refused before these
run). Everything blocking (an owner's control socket, Docker, a drain) runs on this
extension's threads, never on the server's event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..model.errors import BytewaxNBError
from .catalog import Catalog, UnknownSwarm

__all__ = ["routes"]

_SID = r"((?:local|stack)/[^/]+)"
_LOG_LINES = 200  # lines the log tab shows, unless it asks for another number


class _Handler(APIHandler):
    catalog: Catalog
    pool: ThreadPoolExecutor

    def initialize(self, catalog: Catalog, pool: ThreadPoolExecutor) -> None:
        self.catalog, self.pool = catalog, pool

    async def _answer(self, fn: Callable[..., Any], *args: Any) -> None:
        """`fn(*args)` on a thread, its result as JSON; a refusal as {"error": ...}."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.pool, fn, *args)
        except UnknownSwarm as exc:
            self._refuse(404, str(exc))
        except (BytewaxNBError, ValueError) as exc:
            self._refuse(409, f"{type(exc).__name__}: {exc}")
        else:
            self.finish(json.dumps(result))

    def _refuse(self, status: int, why: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": why}))

    def _body(self) -> dict[str, Any] | None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._refuse(400, "the body must be a JSON object")
            return None
        return body


class ListHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._answer(self.catalog.listing)


class ViewHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, sid: str) -> None:
        await self._answer(self.catalog.view, sid, self.get_argument("selected", ""))


class EditHandler(_Handler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        body = self._body()
        if body is not None:
            await self._answer(self.catalog.edit, sid, body)


class ProbeHandler(_Handler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        body = self._body()
        if body is not None:
            gateway, payload = str(body.get("gateway", "")), str(body.get("payload", ""))
            await self._answer(self.catalog.probe, sid, gateway, payload)


class TracesHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, sid: str) -> None:
        await self._answer(self.catalog.traces, sid)


class LogsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, sid: str, bee: str) -> None:
        try:
            lines = int(self.get_argument("lines", str(_LOG_LINES)))
        except ValueError:
            self._refuse(400, "lines must be an integer")
            return
        await self._answer(lambda: {"lines": self.catalog.logs(sid, bee, lines)})


class StopHandler(_Handler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self._answer(self.catalog.stop, sid)


def routes(base_url: str) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The panel's routes under `base_url`, sharing one catalog and one pool of threads."""
    shared = {"catalog": Catalog(), "pool": ThreadPoolExecutor(8, thread_name_prefix="bytewax-nb-lab")}
    root = url_path_join(base_url, "bytewax-nb", "swarms")
    return [
        (root, ListHandler, shared),
        (url_path_join(root, _SID, "view"), ViewHandler, shared),
        (url_path_join(root, _SID, "edit"), EditHandler, shared),
        (url_path_join(root, _SID, "probe"), ProbeHandler, shared),
        (url_path_join(root, _SID, "traces"), TracesHandler, shared),
        (url_path_join(root, _SID, "logs", r"([^/]+)"), LogsHandler, shared),
        (url_path_join(root, _SID, "stop"), StopHandler, shared),
    ]
