"""The `bytewax-nb` command: run a notebook headless, and watch, change or stop swarms.

Swarms started anywhere on this machine (a kernel, a script, `bytewax-nb run`) keep a
record, their logs and a control socket under $BYTEWAX_NB_STATE_DIR (by default the
user's state directory, e.g. ~/.local/state/bytewax-nb); the commands read those.
"""

from __future__ import annotations

import argparse
import signal
import sys

from ..model.errors import BytewaxNBError
from ..model.version import VERSION
from .commands import (
    cmd_gc,
    cmd_list,
    cmd_logs,
    cmd_restart,
    cmd_run,
    cmd_scale,
    cmd_send,
    cmd_status,
    cmd_stop,
)
from .deploying import cmd_deploy, cmd_export, cmd_undeploy

__all__ = ["main"]

_DEFAULT = " (default %(default)s)"  # argparse fills in the option's default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bytewax-nb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"bytewax-nb {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="execute a notebook headless; its swarms serve until SIGINT/SIGTERM")
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    p.add_argument("--timeout", type=float, default=600, help="seconds a cell may run" + _DEFAULT)
    p.add_argument("--detach", action="store_true", help="serve in the background, return once all cells ran")
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("list", help="swarms on this machine")
    p.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("status", help="readiness and counters of a swarm")
    p.add_argument("swarm", help="the swarm's name (see `bytewax-nb list`)")
    p.add_argument("--json", action="store_true", help="the whole status as JSON, for scripts")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("logs", help="a bee's output, crashed replicas included")
    p.add_argument("swarm", help="the swarm's name")
    p.add_argument("bee", help="the bee's name, or `hub` for the gateways'")
    p.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    p.set_defaults(fn=cmd_logs)

    p = sub.add_parser("send", help="send a JSON payload to a gateway and print the answer")
    p.add_argument("gateway", help="the gateway's name")
    p.add_argument("json", help="the payload, as JSON text")
    p.add_argument("--url", default=None, help="the gateway's URL (default: found by name)")
    p.add_argument("--swarm", default=None, help="the swarm, when several have that gateway")
    p.add_argument("--token-env", default=None, help="variable holding the bearer token")
    p.add_argument("--stream", action="store_true", help="print each chunk of a streamed answer as it comes")
    p.add_argument("--timeout", type=float, default=35, help="seconds to wait for the answer" + _DEFAULT)
    p.add_argument(
        "--wait",
        type=float,
        default=0,
        help="seconds to wait for the gateway to serve first" + _DEFAULT,
    )
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser("scale", help="run N replicas of a bee (no request lost)")
    p.add_argument("swarm", help="the swarm's name")
    p.add_argument("bee", help="the bee's name")
    p.add_argument("replicas", type=int, help="how many replicas")
    p.add_argument("--timeout", type=float, default=70, help="seconds to wait for them to serve" + _DEFAULT)
    p.set_defaults(fn=cmd_scale)

    p = sub.add_parser("restart", help="replace every replica of a bee (no request lost)")
    p.add_argument("swarm", help="the swarm's name")
    p.add_argument("bee", help="the bee's name")
    p.add_argument(
        "--timeout",
        type=float,
        default=70,
        help="seconds to wait for the new ones to serve" + _DEFAULT,
    )
    p.set_defaults(fn=cmd_restart)

    p = sub.add_parser("stop", help="drain and stop a swarm, wherever it runs")
    p.add_argument("swarm", help="the swarm's name")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for the drain" + _DEFAULT)
    p.set_defaults(fn=cmd_stop)

    for name, what in (
        ("deploy", "run a notebook's swarm as a stack on the Docker Swarm mode cluster"),
        ("export", "write a notebook's swarm as files for `docker stack deploy`"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("notebook", help="the .ipynb file (its cells run first, as `run` does)")
        p.add_argument("--stack", required=True, help="the stack's name")
        p.add_argument("--swarm", default=None, help="the notebook's swarm, if it has several")
        p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
        p.add_argument("--timeout", type=float, default=600, help="seconds a cell may run" + _DEFAULT)
        p.add_argument(
            "--no-overlay-encryption",
            action="store_true",
            help="a plain overlay network (for kernels without IPsec ESP; the bus stays encrypted)",
        )
        p.add_argument(
            "--registry",
            default=None,
            metavar="HOST[:PORT]",
            help="push the images to this registry and run them from there (nodes pull them)",
        )
        if name == "deploy":
            p.add_argument(
                "--keep-on-failure",
                action="store_true",
                help="leave a new stack that failed to start deployed, to look at (default: removed)",
            )
            p.add_argument(
                "--deploy-timeout",
                type=float,
                default=300,
                help="seconds to wait for the gateways to serve" + _DEFAULT,
            )
            p.set_defaults(fn=cmd_deploy)
        else:
            p.add_argument("-o", "--output", required=True, help="the folder to write")
            p.set_defaults(fn=cmd_export)

    p = sub.add_parser("undeploy", help="remove a deployed stack: everything it made, nothing else")
    p.add_argument("stack", help="the stack's name")
    p.set_defaults(fn=cmd_undeploy)

    p = sub.add_parser(
        "gc",
        help="remove what dead owners and older installs left behind",
        description="Remove what owners that died (a kernel killed, a crashed script) left: "
        "their records and log folders, bee processes and containers still carrying their "
        "mark, logs of background runs (`run --detach`) that ended, and bee images built by "
        "another bytewax-nb install. Nothing of a running swarm, and nothing of anyone "
        "else's, is touched; each removal is printed.",
    )
    p.set_defaults(fn=cmd_gc)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code: int = args.fn(args)
        return code
    except BytewaxNBError as exc:
        print(f"bytewax-nb: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
