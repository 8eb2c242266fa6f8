"""What the benches share: free ports, waiting for a server, and wrk (a C load
generator) driving a closed loop of POSTs, its figures parsed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

__all__ = ["free_port", "post_script", "wait_port", "wrk"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def post_script(folder: str, body: str) -> str:
    """A wrk script POSTing `body` (JSON text), written into `folder`; its path."""
    script = os.path.join(folder, "post.lua")
    with open(script, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
    return script


def _latency(text: str, pct: str) -> float:
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, concurrency: int, seconds: float, script: str) -> tuple[float, float, float, int]:
    """(req/s, p50 ms, p99 ms, non-2xx answers) of `concurrency` callers for `seconds`."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, _latency(out, "50"), _latency(out, "99"), int(bad.group(1)) if bad else 0
