"""The exception hierarchy users catch; remote errors travel as data, not pickles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "BeeNotPicklable",
    "BytewaxNBError",
    "GatewayError",
    "NotReady",
    "NotRunningHere",
    "RemoteError",
    "RequestTimeout",
    "StartError",
    "TopologyError",
]


class BytewaxNBError(Exception):
    """Base class of every error bytewax-nb raises on purpose."""


class TopologyError(BytewaxNBError, ValueError):
    """The swarm's graph is invalid: unknown input, cycle, duplicate name, bad option."""


class BeeNotPicklable(TopologyError, TypeError):
    """A bee captures a value that cannot be pickled, so it cannot reach a replica."""


class StartError(BytewaxNBError, RuntimeError):
    """A swarm could not become ready; the message carries the failing replicas' logs."""


class NotRunningHere(BytewaxNBError):
    """The swarm is only declared in this kernel (deploy or export reads the notebook),
    so what needs it running (a request, its URL) cannot be done here."""


class GatewayError(BytewaxNBError):
    """The gateway answered with an error status that has no more specific class."""

    def __init__(self, status: int, message: str, request_id: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.request_id = request_id


class NotReady(GatewayError):
    """503: the swarm has a bee with no ready replica."""


class RequestTimeout(GatewayError, TimeoutError):
    """504, or no HTTP answer in time: no bee responded before the gateway's timeout."""


class BadRequest(BytewaxNBError):
    """Raise it in a bee to answer the caller 400 with this message: the request, not the
    bee, is at fault (not counted as the bee's error, no traceback logged)."""

    status = 400


class RemoteError(BytewaxNBError):
    """A bee raised; carries the bee's name and the remote exception and traceback.

    IPython calls `_render_traceback_` instead of printing a local traceback, so the
    user sees where the bee failed, not where the client waited.
    """

    def __init__(
        self,
        bee: str,
        ename: str,
        evalue: str,
        traceback: str = "",
        request_id: str | None = None,
        status: int = 500,
    ) -> None:
        super().__init__(f"bee {bee!r} raised {ename}: {evalue}")
        self.bee = bee
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.request_id = request_id
        self.status = status  # 400 when the bee raised BadRequest

    @classmethod
    def from_body(cls, body: dict[str, Any], status: int = 500) -> RemoteError:
        """Rebuild from the gateway's 500 (or BadRequest's 400) JSON body."""
        return cls(
            bee=str(body.get("bee", "?")),
            ename=str(body.get("type", "Exception")),
            evalue=str(body.get("error", "")),
            traceback=str(body.get("traceback", "")),
            request_id=body.get("request_id"),
            status=status,
        )

    # set by the package in a kernel: a cell's file named as IPython names it (`Cell In[3]`)
    name_files: ClassVar[Callable[[str], str] | None] = None

    def _render_traceback_(self) -> list[str]:
        head = f"RemoteError in bee {self.bee!r} (request {self.request_id}):"
        text = RemoteError.name_files(self.traceback) if RemoteError.name_files else self.traceback
        lines = text.rstrip("\n").splitlines() if text else []
        return [head, *lines] if lines else [head, f"{self.ename}: {self.evalue}"]
