"""`deploy`, `export` and `undeploy`: a notebook's swarm as a stack, read from the
notebook's declaration (nothing of it starts on this machine: see `headless.read_declared`)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..model.errors import BytewaxNBError

__all__ = ["cmd_deploy", "cmd_export", "cmd_undeploy"]


def _in_kernel(args: argparse.Namespace, action: str, options: dict[str, Any]) -> dict[str, Any]:
    """Read the notebook in a kernel (its swarm only declared: nothing of it starts here),
    then deploy or export that swarm from the kernel, where its bees' code is."""
    from .headless import read_declared
    from .inkernel import MARK

    call = f"run({action!r}, {args.stack!r}, {args.swarm!r}, {options!r})"
    code = f"from bytewax_nb.cli.inkernel import run\n{call}"
    printed = read_declared(args.notebook, code, kernel=args.kernel, timeout=args.timeout)
    for line in printed.splitlines():
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK) :])
            return result
        print(line)
    raise BytewaxNBError(f"{action} printed no result")


def cmd_deploy(args: argparse.Namespace) -> int:
    options = {
        "encrypt_overlay": not args.no_overlay_encryption,
        "registry": args.registry,
        "timeout": args.deploy_timeout,
        "keep_on_failure": args.keep_on_failure,
    }
    try:
        result = _in_kernel(args, "deploy", options)
    except BytewaxNBError as exc:
        raise BytewaxNBError(f"deploy of stack {args.stack!r} failed: {exc}") from None
    print(f"stack {args.stack!r} serving ({result['seconds']} s):")
    for gateway, url in result["urls"].items():
        print(f"  gateway {gateway} at {url}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    options = {
        "encrypt_overlay": not args.no_overlay_encryption,
        "registry": args.registry,
        "folder": os.path.abspath(args.output),
    }
    result = _in_kernel(args, "export", options)
    folder = result["folder"]
    print(f"wrote {folder}: deploy with `docker stack deploy -c {folder}/compose.yaml {args.stack}`")
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    from ..stack.deploy import undeploy

    removed = undeploy(args.stack)
    print(f"removed stack {args.stack!r}: {', '.join(removed)}")
    return 0
